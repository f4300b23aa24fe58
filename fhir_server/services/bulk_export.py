"""FHIR Bulk Data Access 2.0 export (``$export`` at system, Patient and Group level), as a background job.

Kick-off checks the parameters, records the job as a FHIR ``Task`` (``status`` in-progress → completed, failed or
cancelled; ``input`` holds the request, ``output`` the files) and submits :meth:`BulkExport.run` with the Task id
to the job runner.  The job streams every type from the repository a page at a time (current, non-deleted
versions) into ndjson files, reporting progress after every page, and writes the completion manifest last.
Everything a poll, a cancel or a download needs is in the Task and the job's directory, so any server process
sharing the store and the export directory can answer them.  Expired files are removed by a cleanup job that the
runner runs every ``cleanup_interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from email.utils import formatdate
from pathlib import Path
from typing import Any

from fhir_server import jsonio
from fhir_server.definitions import Definitions
from fhir_server.errors import (
    FhirError,
    Forbidden,
    InternalError,
    Issue,
    NotFound,
    PreconditionFailed,
    operation_outcome,
)
from fhir_server.jobs.runner import InProcessRunner
from fhir_server.services._body import parse_json
from fhir_server.services._bulk_files import JobFiles, NdjsonWriter, job_ids, ndjson_line, valid_job_id
from fhir_server.services._bulk_params import (
    FHIR_NDJSON,
    ExportRequest,
    Level,
    from_task_inputs,
    parameters_body,
    parse_kickoff,
    task_inputs,
)
from fhir_server.services._bulk_plan import ExportPlanner, TypePlan
from fhir_server.services._bulk_progress import Progress, Slot, progress_text
from fhir_server.services.resources import ResourceService
from fhir_server.services.search import SearchService
from fhir_server.settings import ExportSettings
from fhir_server.storage._meta import format_instant
from fhir_server.storage.base import Repository, SearchRequest, StoredVersion

__all__ = ["FHIR_NDJSON", "RETRY_AFTER_S", "BulkExport", "ExportAccess", "ExportStatus", "Level", "post_parameters"]

log = logging.getLogger(__name__)

PAGE = 1000  # resources read from the store per query
RETRY_AFTER_S = 2
STALE_AFTER_S = 300.0  # an in-progress job that has not reported for this long died with its process
JOB_SYSTEM = "https://infirmary.example.org/fhir/CodeSystem/jobs"
FILES_DELETED = "files-deleted"
FILES_EXPIRED = "files-expired"


@dataclass(frozen=True)
class ExportAccess:
    """Who asks for an export when authorization is on.  ``resources`` is the requester's scoped service (the
    checks at kick-off), ``may_export`` says which types their token may search, ``record`` is kept with the job
    (the job reads through ``BulkExport.job_repository(record)``), and only ``requester`` may poll, cancel and
    download."""

    resources: ResourceService
    may_export: Callable[[str], bool]
    record: dict[str, Any]
    requester: str


class _Cancelled(Exception):
    """The Task left in-progress while the job ran (a DELETE, possibly answered by another process)."""


@dataclass(frozen=True)
class ExportStatus:
    """What a poll answers: still running (``progress``) or complete (``manifest``, files kept until
    ``expires``, epoch seconds)."""

    progress: str | None = None
    manifest: dict[str, Any] | None = None
    expires: float | None = None

    @property
    def complete(self) -> bool:
        return self.manifest is not None

    def expires_http(self) -> str:
        return formatdate(self.expires or 0, usegmt=True)


def post_parameters(body: bytes) -> list[tuple[str, str]]:
    """The kick-off parameters of a POST: a ``Parameters`` resource."""
    return parameters_body(parse_json(body))


class BulkExport:
    def __init__(
        self,
        repo: Repository,
        resources: ResourceService,
        search: SearchService,
        defs: Definitions,
        runner: InProcessRunner,
        settings: ExportSettings,
        export_dir: Path,
    ) -> None:
        self.repo = repo
        self.resources = resources
        self.runner = runner
        self.settings = settings
        self.root = export_dir
        self.planner = ExportPlanner(repo, search, defs)
        self.clock = time.time
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._timer: asyncio.TimerHandle | None = None
        # the repository an export job reads through, from the access recorded at kick-off (authorization on)
        self.job_repository: Callable[[dict[str, Any]], Repository] | None = None

    # -- kick-off ----------------------------------------------------------------------------------------------

    async def kick_off(
        self,
        level: Level,
        params: Sequence[tuple[str, str]],
        *,
        base_url: str,
        request_url: str,
        group_id: str | None = None,
        lenient: bool = False,
        access: ExportAccess | None = None,
    ) -> tuple[str, list[Issue]]:
        """Check the request, record it as a Task and start the job; returns the job (Task) id and the
        warnings of a lenient kick-off."""
        if group_id is not None:  # 404 / 410 before anything else
            await (access.resources if access is not None else self.resources).read("Group", group_id)
        request, warnings = parse_kickoff(level, group_id, params,
                                          lambda t: self.planner.type_problem(level, t), lenient=lenient)
        if access is not None:
            request = self._permitted(request, access)
        plans = await self.planner.plan(request, base_url)  # the filters and the Group are checked now
        if access is not None:
            for plan in plans:  # a filter may not search into what the token cannot read (403 now, not later)
                if plan.criteria:
                    await access.resources.repo.find(plan.query(), limit=1)
        job_id = await self._create_task(request, base_url, request_url, access)
        files = JobFiles(self.root, job_id)
        await asyncio.to_thread(files.create)
        await asyncio.to_thread(files.write_progress, {"state": "queued"})
        if warnings:
            lines = [jsonio.dumps(operation_outcome([w])) for w in warnings]
            writer = NdjsonWriter(files, "OperationOutcome", self.settings.max_resources_per_file)
            await asyncio.to_thread(writer.write_all, lines)
        self._running[job_id] = self.runner.submit(f"bulk export {job_id}", self.run, job_id)
        return job_id, warnings

    def _permitted(self, request: ExportRequest, access: ExportAccess) -> ExportRequest:
        """The types the requester's token may export: those asked for must all be allowed; without ``_type``,
        the allowed ones of the level."""
        if request.types:
            for rtype in request.types:
                if not access.may_export(rtype):
                    raise Forbidden(f"this access token does not allow exporting {rtype} resources",
                                    expression="_type")
            return request
        allowed = tuple(sorted(t for t in self.planner.types_of(request.level) if access.may_export(t)))
        if not allowed:
            raise Forbidden("this access token allows exporting no resource type of this level",
                            expression="_type")
        return replace(request, types=allowed)

    async def _create_task(self, request: ExportRequest, base_url: str, request_url: str,
                           access: ExportAccess | None = None) -> str:
        task: dict[str, Any] = {
            "resourceType": "Task",
            "status": "in-progress",
            "businessStatus": {"text": "queued"},
            "intent": "order",
            "code": {"coding": [{"system": JOB_SYSTEM, "code": "bulk-export"}], "text": "Bulk Data export"},
            "description": f"Bulk Data export ({request.level} level)",
            "authoredOn": format_instant(self.clock()),
            "input": [
                {"type": {"text": "request"}, "valueUrl": request_url},
                {"type": {"text": "base"}, "valueUrl": base_url},
                *task_inputs(request),
            ],
        }
        if access is not None:
            task["input"].extend([{"type": {"text": "requester"}, "valueString": access.requester},
                                  {"type": {"text": "access"}, "valueString": jsonio.dumps(access.record).decode()}])
        if request.group_id is not None:
            task["focus"] = {"reference": f"Group/{request.group_id}"}
        outcome = await self.resources.create("Task", jsonio.dumps(task))
        return str(outcome.id)

    # -- polling, cancelling, files ----------------------------------------------------------------------------

    async def status(self, job_id: str, requester: str | None = None) -> ExportStatus:
        _, task = await self._export_task(job_id, requester)
        state = task.get("status")
        business = _business_code(task)
        if state == "cancelled" or business in (FILES_DELETED, FILES_EXPIRED):
            raise NotFound(f"export {job_id} was {'cancelled' if state == 'cancelled' else 'deleted'}")
        files = JobFiles(self.root, job_id)
        if state == "failed":
            reason = (task.get("statusReason") or {}).get("text", "unknown error")
            raise InternalError(f"export {job_id} failed: {reason}")
        if state == "completed":
            saved = await asyncio.to_thread(files.read_manifest)
            if saved is None or saved["expires"] <= self.clock():
                raise NotFound(f"the files of export {job_id} have expired")
            return ExportStatus(manifest=saved["manifest"], expires=saved["expires"])
        progress = await asyncio.to_thread(files.read_progress)
        age = await asyncio.to_thread(files.progress_age, self.clock())
        if job_id not in self._running and (age is None or age > STALE_AFTER_S):
            await self._fail(job_id, "the export was interrupted (its server process stopped)")
            await asyncio.to_thread(files.remove)
            raise InternalError(f"export {job_id} failed: the export was interrupted")
        return ExportStatus(progress=progress_text(progress))

    async def cancel(self, job_id: str, requester: str | None = None) -> None:
        """DELETE on the status URL: stop the job if it runs, remove its files; later polls answer 404."""
        _, task = await self._export_task(job_id, requester)
        state = task.get("status")
        if state == "cancelled" or _business_code(task) in (FILES_DELETED, FILES_EXPIRED):
            raise NotFound(f"export {job_id} was already cancelled or deleted")
        running = self._running.get(job_id)
        if running is not None:
            running.cancel()
        if state == "in-progress":
            await self._update_task(job_id, lambda t: t.update(status="cancelled",
                                                             businessStatus={"text": "cancelled by the client"}))
        else:
            await self._update_task(job_id, lambda t: t.update(businessStatus=_business(
                FILES_DELETED, "files deleted at the client's request")))
        await asyncio.to_thread(JobFiles(self.root, job_id).remove)

    async def file(self, job_id: str, name: str, requester: str | None = None) -> Path:
        """The path of an export file, for its requester only (when authorization is on)."""
        if requester is not None:
            await self._export_task(job_id, requester)
        return self.file_path(job_id, name)

    def file_path(self, job_id: str, name: str) -> Path:
        path = JobFiles(self.root, job_id).data_file(name) if valid_job_id(job_id) else None
        if path is None:
            raise NotFound(f"no export file {job_id}/{name} (it may have expired)")
        return path

    async def _export_task(self, job_id: str, requester: str | None = None) -> tuple[StoredVersion, dict[str, Any]]:
        stored = await self.repo.read("Task", job_id) if valid_job_id(job_id) else None
        task = jsonio.loads(stored.body) if stored is not None and stored.body is not None else None
        if stored is None or task is None or _code(task) != "bulk-export":
            raise NotFound(f"no export job {job_id}")
        if requester is not None and _input_string(task, "requester") != requester:
            raise NotFound(f"no export job {job_id}")  # someone else's export: not even its existence
        return stored, task

    async def _update_task(self, job_id: str, change: Callable[[dict[str, Any]], object]) -> int | None:
        """Apply ``change`` to the current Task and store it, If-Match the version read (read again and retried
        when another writer got there first).  A change that returns False leaves the Task alone (→ None)."""
        for _ in range(5):
            stored, task = await self._export_task(job_id)
            if change(task) is False:
                return None
            try:
                outcome = await self.resources.update("Task", job_id, jsonio.dumps(task),
                                                      f'W/"{stored.version}"')
            except PreconditionFailed:
                continue
            assert outcome.version is not None
            return outcome.version.version
        raise InternalError(f"the Task of export {job_id} keeps changing")

    async def _update_running(self, job_id: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Update the Task of a running job; if it is no longer in progress (cancelled), stop the job."""

        def apply(task: dict[str, Any]) -> bool:
            if task.get("status") != "in-progress":
                return False
            change(task)
            return True

        if await self._update_task(job_id, apply) is None:
            raise _Cancelled

    async def _fail(self, job_id: str, reason: str) -> None:
        def change(task: dict[str, Any]) -> bool:
            if task.get("status") != "in-progress":
                return False  # cancelled (or finished) meanwhile: that is what the Task keeps saying
            task.update(status="failed", statusReason={"text": reason}, businessStatus={"text": "failed"})
            task.setdefault("executionPeriod", {})["end"] = format_instant(self.clock())
            return True

        try:
            await self._update_task(job_id, change)
        except FhirError:
            log.exception("could not record the failure of export %s", job_id)

    # -- the job -----------------------------------------------------------------------------------------------

    async def run(self, job_id: str) -> None:
        """The export job (a task function: it takes the Task id and reads everything else from the store)."""
        files = JobFiles(self.root, job_id)
        try:
            async with self._slot(files):
                await self._export(job_id, files)
        except _Cancelled:
            await asyncio.to_thread(files.remove)  # cancelled from another process: nothing of it stays
        except asyncio.CancelledError:
            if await self._task_state(job_id) != "in-progress":
                await asyncio.to_thread(files.remove)  # cancelled here (a shutdown keeps them)
            raise
        except Exception as exc:
            log.exception("bulk export %s failed", job_id)
            reason = exc.diagnostics if isinstance(exc, FhirError) else f"internal error ({type(exc).__name__})"
            await self._fail(job_id, reason)
            await asyncio.to_thread(files.remove)
        finally:
            self._running.pop(job_id, None)

    async def _task_state(self, job_id: str) -> str | None:
        try:
            return str((await self._export_task(job_id))[1].get("status"))
        except FhirError:
            return None

    def _slot(self, files: JobFiles) -> Slot:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.max_concurrent)
        return Slot(self._slots, files)

    async def _export(self, job_id: str, files: JobFiles) -> None:
        _, task = await self._export_task(job_id)
        if task.get("status") != "in-progress":
            return
        inputs = {(i.get("type") or {}).get("text"): i.get("valueUrl") for i in task.get("input", [])}
        request, base = from_task_inputs(task.get("input", [])), str(inputs["base"])
        access = _input_string(task, "access")
        repo = self.repo
        if access is not None:
            if self.job_repository is None:
                raise InternalError("this export needs authorization, which is not configured")
            repo = self.job_repository(jsonio.loads(access))
        planner = ExportPlanner(repo, self.planner.search, self.planner.defs)
        started = format_instant(self.clock())

        def begin(t: dict[str, Any]) -> None:
            t["businessStatus"] = {"text": "running"}
            t.setdefault("executionPeriod", {})["start"] = started

        await self._update_running(job_id, begin)
        plans = await planner.plan(request, base)
        sizes = [await repo.count(p.resource_type) for p in plans]
        work = [(p, n) for p, n in zip(plans, sizes, strict=True) if n > 0]
        progress = Progress(files, total=sum(n for _, n in work), types=len(work),
                             exact=request.level == "system" and not request.since and not request.type_filters)
        outputs: list[tuple[str, str, int]] = []  # (type, file name, count)
        for plan, _ in work:
            await self._check_wanted(job_id)
            for name, count in await self._export_type(job_id, plan, files, progress, repo):
                outputs.append((plan.resource_type, name, count))
        errors = [("OperationOutcome", name, n) for name, n in await asyncio.to_thread(files.error_files)]
        manifest = {
            "transactionTime": started,
            "request": str(inputs["request"]),
            # with authorization on, the files are fetched with the requester's access token
            "requiresAccessToken": access is not None,
            "output": [{"type": t, "url": _file_url(base, job_id, n), "count": c} for t, n, c in outputs],
            "error": [{"type": t, "url": _file_url(base, job_id, n), "count": c} for t, n, c in errors],
        }
        expires = self.clock() + self.settings.file_expiry_s
        await asyncio.to_thread(files.write_manifest, {"manifest": manifest, "expires": expires})
        total = sum(c for _, _, c in outputs)

        def complete(t: dict[str, Any]) -> None:
            t.update(status="completed", businessStatus={"text": f"{total} resources exported"})
            t.setdefault("executionPeriod", {})["end"] = format_instant(self.clock())
            t["output"] = [
                {"type": {"text": "resources-exported"}, "valueInteger": total},
                *({"type": {"text": rtype}, "valueUrl": _file_url(base, job_id, name)} for rtype, name, _ in outputs),
                *({"type": {"text": "error"}, "valueUrl": _file_url(base, job_id, name)} for _, name, _ in errors),
            ]

        await self._update_running(job_id, complete)

    async def _export_type(
        self, job_id: str, plan: TypePlan, files: JobFiles, progress: Progress, repo: Repository
    ) -> list[tuple[str, int]]:
        """Stream one type into its files, a page at a time."""
        writer = NdjsonWriter(files, plan.resource_type, self.settings.max_resources_per_file)
        progress.next_type(plan.resource_type)
        query = plan.query()
        cursor: str | None = None
        try:
            while True:
                page = await repo.search(SearchRequest(query, PAGE, cursor, total=False))
                lines = [ndjson_line(v.body) for v in page.matches if v.body is not None]
                if lines:
                    await asyncio.to_thread(writer.write, lines)
                await asyncio.to_thread(progress.add, len(lines))
                cursor = page.next_cursor
                if cursor is None:
                    return [(name, n) for name, n in writer.outputs if n]
                await self._check_wanted(job_id)
        finally:
            await asyncio.to_thread(writer.close)

    async def _check_wanted(self, job_id: str) -> None:
        """Stop when the Task is no longer in progress (cancelled, from any process)."""
        if await self._task_state(job_id) != "in-progress":
            raise _Cancelled

    # -- expiry --------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Schedule the cleanup job on the runner every ``cleanup_interval_s`` (and once now)."""
        self._schedule(0.0)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, delay: float) -> None:
        def tick() -> None:
            self.runner.submit("bulk export cleanup", self.cleanup)
            self._schedule(self.settings.cleanup_interval_s)

        self._timer = asyncio.get_running_loop().call_later(delay, tick)

    async def cleanup(self) -> int:
        """Remove the files of expired exports, and those left behind by a process that died; returns how many
        job directories were removed."""
        removed = 0
        now = self.clock()
        for job_id in await asyncio.to_thread(job_ids, self.root):
            if job_id in self._running:
                continue
            files = JobFiles(self.root, job_id)
            try:
                saved = await asyncio.to_thread(files.read_manifest)
                if saved is not None and saved["expires"] <= now:
                    await asyncio.to_thread(files.remove)
                    await self._mark_expired(job_id)
                    removed += 1
                elif saved is None and ((await asyncio.to_thread(files.progress_age, now)) or 0) > STALE_AFTER_S:
                    if await self._task_state(job_id) == "in-progress":
                        await self._fail(job_id, "the export was interrupted (its server process stopped)")
                    await asyncio.to_thread(files.remove)
                    removed += 1
            except Exception:  # one bad directory must not stop the others
                log.exception("cleanup of export %s failed", job_id)
        return removed

    async def _mark_expired(self, job_id: str) -> None:
        try:
            _, task = await self._export_task(job_id)
        except NotFound:
            return
        if task.get("status") == "completed" and _business_code(task) is None:
            await self._update_task(job_id, lambda t: t.update(
                businessStatus=_business(FILES_EXPIRED, "the files have expired and were deleted")))


def _file_url(base: str, job_id: str, name: str) -> str:
    return f"{base}/$export-file/{job_id}/{name}"


def _input_string(task: dict[str, Any], name: str) -> str | None:
    for item in task.get("input", []):
        if (item.get("type") or {}).get("text") == name and isinstance(item.get("valueString"), str):
            return str(item["valueString"])
    return None


def _code(task: dict[str, Any]) -> str | None:
    for coding in (task.get("code") or {}).get("coding", []):
        if coding.get("system") == JOB_SYSTEM:
            return str(coding.get("code"))
    return None


def _business(code: str, text: str) -> dict[str, Any]:
    return {"coding": [{"system": JOB_SYSTEM, "code": code}], "text": text}


def _business_code(task: dict[str, Any]) -> str | None:
    for coding in (task.get("businessStatus") or {}).get("coding", []):
        if coding.get("system") == JOB_SYSTEM:
            return str(coding.get("code"))
    return None
