"""Ingest benchmark: Synthea patients cloned with fresh ids, posted as transaction Bundles over HTTP.

    python bench/ingest.py --patients 1000 --clients 1 4 [--workers 2] [--profile]

For each client count: a fresh store, a server (``infirmary serve``), and ``--patients`` transaction Bundles posted
by that many concurrent clients (keep-alive HTTP/1.1).  Every Bundle is durably committed and indexed for search
before its 200 comes back, so resources/s is what a client sees.  Prints resources/s, Bundle latency p50/p90/p99,
the server's peak RSS, and checks that the store holds exactly what was sent (per-type counts).  ``--profile``
samples the server with py-spy during the run and prints where the time goes (own time per function).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._server import serve
from bench.synthea import clones


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render(patients: int, out: Path) -> tuple[list[Path], collections.Counter[str]]:
    """The Bundles as files (so the client threads only read bytes), and the resources per type they hold."""
    out.mkdir(parents=True, exist_ok=True)
    files, counts = [], collections.Counter[str]()
    for n, bundle in enumerate(clones(patients)):
        for entry in bundle["entry"]:
            counts[entry["resource"]["resourceType"]] += 1
        path = out / f"{n:06d}.json"
        path.write_bytes(json.dumps(bundle, separators=(",", ":")).encode())
        files.append(path)
    return files, counts


def tree_rss_peak_kb(pid: int) -> int:
    """Peak RSS (VmHWM) of the server process and its children."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def start_server(data_dir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    # auth off (loopback only): this measures ingest, not token checks (bench/auth_overhead.py does those)
    return serve(data_dir, port, workers=workers)


def post_all(port: int, files: list[Path], clients: int) -> tuple[list[float], int, list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    resources = 0
    lock = threading.Lock()
    queue = list(reversed(files))

    def worker() -> None:
        nonlocal resources
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while True:
            with lock:
                if not queue:
                    return
                path = queue.pop()
            body = path.read_bytes()
            started = time.perf_counter()
            conn.request("POST", "/fhir", body=body, headers={"Content-Type": "application/fhir+json"})
            response = conn.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - started
            with lock:
                if response.status == 200:
                    latencies.append(elapsed)
                    resources += len(json.loads(data)["entry"])
                else:
                    errors.append(f"{path.name}: {response.status} {data[:300]!r}")

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, resources, errors


def check_counts(port: int, expected: collections.Counter[str]) -> list[str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    wrong = []
    for rtype, count in sorted(expected.items()):
        conn.request("GET", f"/fhir/{rtype}?_summary=count&_total=accurate")
        total = json.loads(conn.getresponse().read())["total"]
        if total != count:
            wrong.append(f"{rtype}: stored {total}, sent {count}")
    return wrong


def profile_summary(raw: Path, top: int = 25) -> str:
    """py-spy's collapsed stacks → the functions with the most samples as the innermost frame ('own time'), and
    the share of samples under a few entry points ('cumulative')."""
    own: collections.Counter[str] = collections.Counter()
    under: collections.Counter[str] = collections.Counter()
    total = 0
    marks = {
        "validate": "validate.py", "index extraction": "indexing/", "full text (content_text)": "fulltext.py",
        "bundle planning": "bundles.py", "sqlite writer": "_tx.py", "json parse": "jsonio.py",
        "http (uvicorn/h11/starlette)": ("uvicorn", "h11", "httptools", "starlette"),
    }
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for label, needle in marks.items():
            needles = needle if isinstance(needle, tuple) else (needle,)
            if any(any(n in f for n in needles) for f in frames):
                under[label] += count
    lines = [f"samples: {total}", "cumulative share of samples:"]
    lines += [f"  {label:32s} {100 * c / total:5.1f}%" for label, c in under.most_common()]
    lines.append("own time, top functions:")
    lines += [f"  {100 * c / total:5.1f}%  {name[:140]}" for name, c in own.most_common(top)]
    return "\n".join(lines)


def run(args: argparse.Namespace, files: list[Path], counts: collections.Counter[str], clients: int) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="ingest-store-", dir=args.work_dir))
    port = free_port()
    server = start_server(data_dir, port, args.workers)
    spy: subprocess.Popen[bytes] | None = None
    raw = data_dir / "profile.txt"
    try:
        if args.profile:
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(server.pid), "--subprocesses", "--format",
                                    "raw", "--rate", "50", "--output", str(raw), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        started = time.perf_counter()
        latencies, resources, errors = post_all(port, files, clients)
        elapsed = time.perf_counter() - started
        rss_kb = tree_rss_peak_kb(server.pid)
        if spy is not None:
            spy.send_signal(2)
            spy.wait(60)
        wrong = check_counts(port, counts)
        latencies.sort()
        q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
        print(f"clients={clients} workers={args.workers} bundles={len(latencies)} resources={resources} "
              f"elapsed={elapsed:.1f}s -> {resources / elapsed:,.0f} resources/s; bundle latency p50 "
              f"{q[49] * 1000:.0f} ms, p90 {q[89] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms; "
              f"server peak RSS {rss_kb / 1024:,.0f} MB; store {sum(f.stat().st_size for f in data_dir.iterdir()) / 1e9:.2f} GB")
        print(f"  counts: {wrong if wrong else 'all per-type counts match what was sent'}")
        if errors:
            print(f"  {len(errors)} bundles failed, first: {errors[0]}")
        if spy is not None and raw.exists():
            print(profile_summary(raw))
    finally:
        server.terminate()
        server.wait(60)
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"  store kept in {data_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="sample the server with py-spy")
    parser.add_argument("--keep", action="store_true", help="keep the last store (for $everything/$export runs)")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    bundles_dir = args.work_dir / f"ingest-bundles-{args.patients}"
    shutil.rmtree(bundles_dir, ignore_errors=True)
    files, counts = render(args.patients, bundles_dir)
    print(f"{len(files)} transaction Bundles, {sum(counts.values()):,} resources "
          f"({sum(f.stat().st_size for f in files) / 1e6:,.0f} MB)")
    try:
        for clients in args.clients:
            run(args, files, counts, clients)
    finally:
        shutil.rmtree(bundles_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
