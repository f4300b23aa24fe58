"""HL7 v2 inbound pipeline in process: N ORU^R01 messages through ``InboundPipeline.process`` (no MLLP), each
durably committed (the real SQLite store, ``synchronous=FULL``) before the next, on a fresh store.

For fast iteration on the inbound path and the transaction path it shares with ``POST /fhir``. Two message
shapes: ``lab`` is the shared sample LAB-ORU-1 (2 orders, 10 OBX, 2 SPM: ~16 transaction entries) and ``small``
is the 3-OBX message of ``bench/hl7_oru.py``. Every message is distinct (control id, order numbers, values);
patients rotate over 200 MRNs, so most patient entries match an existing Patient.

    python bench/hl7_inprocess.py [--messages 500] [--shape lab|small] [--auth] [--in-flight 1]
                                  [--profile cprofile.out]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_LAB = """MSH|^~\\&|SomeSystem||TransformationAgent||20141006064500+0700||ORU^R01|{run}-{n}|T|2.5||
PID|1||{mrn}^^^1^MR^1||DUCK^DONALD^D||19241010|M||1|111 DUCK ST^^FOWL^CA^999990000^^M|1|8885551212|8885551212|1|2||40007716^^^AccMgr^VN^1|123121234|||||||||||NO
OBR|2|P{run}{n}a|F{run}{n}a|24317-0^Hemogram and platelet count, automated^LN||||||^COLLECT^JOHN|P|| |||^URO^^^^DR|||||||20141006092900+0700||F|F|||||||&CYTO&JANE^20141006092900+0700
OBX|1|NM|11156-7^LEUKOCYTES^LN||||||||I|
OBX|2|NM|11273-0^ERYTHROCYTES^LN||4.{v}|tera.l-1||N|||P|||20141006062700+0700
OBX|3|NM|20509-6^HEMOGLOBIN^LN||||||||I|
OBX|4|NM|20570-8^HEMATOCRIT^LN||40.{v}|%||N|||P|||20141006083000+0700
OBX|5|NM|11125-2^PLATELETS^LN||2{v}|giga.l-1||N|||F|||20141006083000+0700
SPM|1|S{run}{n}a||BLD|||||||P||||||20141006053500+0700|20141006082100+0700||Y||||||1
OBR|1|P{run}{n}b|F{run}{n}b|26464-8^Differential WBC Count, buffy coat^LN||||||^COLLECT^JOHN|P| ||||^URO^^^^DR|||||||20141006092900+0700|||F|||||||&CYTO&JANE^20141006092900+0700
OBX|1|NM|23761-0^NEUTROPHILS/100 LEUKOCYTES^LN||7{v}|%||N|||P|||20141006062700+0700
OBX|2|NM|26450-7^EOSINOPHILS/100 LEUKOCYTES^LN||2|%||N|||P|||20141006062700+0700
OBX|3|NM|26478-8^LYMPHOCYTES/100 LEUKOCYTES^LN||20|%||N|||P|||20141006062700+0700
OBX|4|NM|26485-3^MONOCYTES/100 LEUKOCYTES^LN||6|%||N|||P|||20141006062700+0700
OBX|5|NM|30180-4^BASOPHILS/100 LEUKOCYTES^LN||0|%||N|||P|||20141006062700+0700
SPM|1|S{run}{n}b||BLD|||||||P||||||20141006053500+0700|20141006082100+0700||Y||||||1
"""


def thread_cpu() -> dict[str, tuple[float, float]]:
    """CPU seconds (user, system) per named thread of this process, from /proc (Linux; empty elsewhere)."""
    out: dict[str, tuple[float, float]] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for thread in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[thread.name] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def lab_oru(n: int, run: str) -> bytes:
    text = _LAB.format(run=run, n=n, mrn=f"MRN{n % 200:05d}", v=n % 10)
    return text.replace("\n", "\r").encode()


def small_oru(n: int, run: str) -> bytes:
    from bench.hl7_oru import oru

    return oru(n, run)


async def drive(args: argparse.Namespace, data: Path) -> None:
    from fhir_server.app import create_app
    from fhir_server.settings import Hl7Settings, Settings, StorageSettings

    os.environ["FHIR_AUTH__ENABLED"] = "true" if args.auth else "false"
    settings = Settings(data_dir=data, storage=StorageSettings(sqlite_path=data / "bench.db"),
                        hl7=Hl7Settings(enabled=False))
    app = create_app(settings)
    make = lab_oru if args.shape == "lab" else small_oru
    async with app.router.lifespan_context(app):
        pipeline: Any = app.state.hl7.pipeline

        async def run(count: int, run_id: str) -> tuple[float, int]:
            failures = 0
            queue = list(range(count))

            async def lane() -> None:
                nonlocal failures
                while queue:
                    n = queue.pop()
                    result = await pipeline.process(make(n, run_id))
                    if result.code != "AA":
                        failures += 1
                        if failures < 3:
                            print("  not AA:", result.code, result.text)

            started = time.perf_counter()
            await asyncio.gather(*(lane() for _ in range(args.in_flight)))
            return time.perf_counter() - started, failures

        await run(args.warmup, "warm")
        profiler = cProfile.Profile() if args.profile else None
        cpu, loop_cpu, threads = time.process_time(), time.thread_time(), thread_cpu()
        if profiler:
            profiler.enable()
        elapsed, failures = await run(args.messages, "run")
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
        print(f"{args.shape} ORU^R01, auth {'on' if args.auth else 'off'}, {args.in_flight} in flight: "
              f"{args.messages} messages in {elapsed:.2f} s = {args.messages / elapsed:,.0f}/s, "
              f"{elapsed / args.messages * 1000:.2f} ms each ({cpu / args.messages * 1000:.2f} ms CPU, "
              f"{loop_cpu / args.messages * 1000:.2f} ms in the event-loop thread), "
              f"not AA: {failures}")
        after = thread_cpu()
        (user, system), (user0, system0) = after.get("sqlite-writer", (0, 0)), threads.get("sqlite-writer", (0, 0))
        per = 1000 / args.messages
        print(f"  SQLite writer thread per message: {(user - user0) * per:.2f} ms user + "
              f"{(system - system0) * per:.2f} ms system CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--shape", choices=("lab", "small"), default="lab")
    parser.add_argument("--auth", action="store_true", help="authorization on (scoped repository, AuditEvents)")
    parser.add_argument("--in-flight", type=int, default=1, help="messages processed concurrently")
    parser.add_argument("--profile", help="write cProfile stats of the measured run to this file")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="infirmary-hl7-inproc-"))
    try:
        asyncio.run(drive(args, data))
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
