"""The files of one Bulk Data export job, in ``<export dir>/<job id>/``.

* ``<Type>.<n>.ndjson``: the exported resources, one per line, at most ``max_per_file`` lines per file;
* ``OperationOutcome.<n>.ndjson``: what the manifest's ``error`` array points at;
* ``progress.json``: what ``X-Progress`` says, rewritten after every page (its age tells a live job from one
  whose process died);
* ``manifest.json``: written last, when every file is complete: the completion manifest with file names.

Every function here does blocking file I/O; the service calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import IO, Any

from fhir_server import jsonio

_FILE_NAME = re.compile(r"^[A-Z][A-Za-z]{0,63}\.[0-9]{1,9}\.ndjson$")
_JOB_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def valid_job_id(job_id: str) -> bool:
    return bool(_JOB_ID.match(job_id)) and job_id not in (".", "..")


class JobFiles:
    def __init__(self, root: Path, job_id: str) -> None:
        if not valid_job_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        self.root = root
        self.job_id = job_id
        self.dir = root / job_id

    @property
    def progress_path(self) -> Path:
        return self.dir / "progress.json"

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def create(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        return self.dir.is_dir()

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def data_file(self, name: str) -> Path | None:
        """An export file by name, or None when the name is not one this job could have written."""
        if not _FILE_NAME.match(name):
            return None
        path = self.dir / name
        return path if path.is_file() else None

    def _write_json(self, path: Path, data: dict[str, Any]) -> None:
        if not self.dir.is_dir():
            return  # cancelled or expired meanwhile: do not bring the directory back
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)

    def _read_json(self, path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_progress(self, data: dict[str, Any]) -> None:
        self._write_json(self.progress_path, data)

    def read_progress(self) -> dict[str, Any] | None:
        return self._read_json(self.progress_path)

    def progress_age(self, now: float) -> float | None:
        """Seconds since the job last reported progress (None: no progress file)."""
        try:
            return now - self.progress_path.stat().st_mtime
        except OSError:
            return None

    def write_manifest(self, data: dict[str, Any]) -> None:
        self._write_json(self.manifest_path, data)

    def read_manifest(self) -> dict[str, Any] | None:
        return self._read_json(self.manifest_path)

    def error_files(self) -> list[tuple[str, int]]:
        """(name, line count) of the job's OperationOutcome files."""
        out = []
        for path in sorted(self.dir.glob("OperationOutcome.*.ndjson")):
            with path.open("rb") as handle:
                out.append((path.name, sum(1 for _ in handle)))
        return out


class NdjsonWriter:
    """Appends lines of one resource type to ``<Type>.<n>.ndjson`` files, starting a new file every
    ``max_per_file`` lines; ``outputs`` lists (file name, line count) of every file written."""

    def __init__(self, files: JobFiles, resource_type: str, max_per_file: int) -> None:
        self.files = files
        self.resource_type = resource_type
        self.max_per_file = max_per_file
        self.outputs: list[tuple[str, int]] = []
        self._handle: IO[bytes] | None = None

    def write(self, lines: list[bytes]) -> None:
        start = 0
        while start < len(lines):
            if self._handle is None or self.outputs[-1][1] >= self.max_per_file:
                self._next_file()
            assert self._handle is not None
            name, count = self.outputs[-1]
            chunk = lines[start:start + self.max_per_file - count]
            self._handle.write(b"\n".join(chunk) + b"\n")
            self.outputs[-1] = (name, count + len(chunk))
            start += len(chunk)

    def write_all(self, lines: list[bytes]) -> None:
        """Write these lines and close the file."""
        try:
            self.write(lines)
        finally:
            self.close()

    def _next_file(self) -> None:
        self.close()
        name = f"{self.resource_type}.{len(self.outputs) + 1}.ndjson"
        self._handle = (self.files.dir / name).open("wb")
        self.outputs.append((name, 0))

    def close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None


def ndjson_line(body: bytes) -> bytes:
    """A stored resource as one ndjson line: stored bodies are compact JSON, anything else is re-serialised."""
    return body if b"\n" not in body else jsonio.dumps(jsonio.loads(body))


def job_ids(root: Path) -> list[str]:
    """The job directories under the export directory."""
    try:
        return sorted(p.name for p in root.iterdir() if p.is_dir() and valid_job_id(p.name))
    except OSError:
        return []
