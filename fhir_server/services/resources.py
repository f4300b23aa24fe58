"""The instance and type interactions of the FHIR RESTful API: create, read, vread, update, patch, delete.

Framework-free: it takes resource types, ids, bodies and header values and returns stored versions and outcomes;
``api/`` turns those into HTTP.  Every write is validated against the R4 definitions and indexed before it
reaches the repository; conditional variants become data on the write op so the repository applies them
atomically (see :mod:`fhir_server.storage.preconditions`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server import jsonio
from fhir_server.definitions import Definitions
from fhir_server.errors import (
    ConcurrentChange,
    Gone,
    InvalidRequest,
    NotFound,
    PreconditionFailed,
    UnsupportedMediaType,
    issues_error,
)
from fhir_server.indexing.entries import IndexEntries
from fhir_server.indexing.extract import Indexer, canonicalise
from fhir_server.indexing.fulltext import content_text, narrative_text
from fhir_server.indexing.position import position_entry
from fhir_server.search.model import SearchQuery
from fhir_server.search.parse import parse_criteria
from fhir_server.search.registry import SearchRegistry
from fhir_server.services import patch as patching
from fhir_server.services._body import check_id, parse_json, parse_resource
from fhir_server.services.validate import Validator
from fhir_server.storage.base import Repository, StoredVersion, WriteOp, WriteOutcome

_ETAG_RE = re.compile(r'^\s*(?:W/)?"(\d+)"\s*$')

JSON_PATCH = "application/json-patch+json"
_CRITERIA_CACHED = 4096  # parsed conditional criteria kept (a patient's or an order's criteria recur)


def parse_etag(value: str, header: str = "If-Match") -> int:
    """``W/"3"`` (or ``"3"``) → 3."""
    match = _ETAG_RE.match(value)
    if match is None:
        raise InvalidRequest(f'{header} must be a version ETag such as W/"3", got {value!r}', expression=header)
    return int(match.group(1))


def new_id() -> str:
    """A random UUID (version 4) as text: ``str(uuid.uuid4())`` without building a UUID object."""
    digest = bytearray(os.urandom(16))
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


AfterWrite = Callable[[WriteOutcome, dict[str, Any] | None], Awaitable[None]]


@dataclass(frozen=True)
class PatchBody:
    content_type: str
    body: bytes


class ResourceService:
    def __init__(
        self,
        repo: Repository,
        defs: Definitions,
        validator: Validator,
        indexer: Indexer,
        registry: SearchRegistry,
        base_urls: Sequence[str] = (),
    ) -> None:
        self.repo = repo
        self.defs = defs
        self.validator = validator
        self.indexer = indexer
        self.registry = registry
        self.base_urls = tuple(base_urls)
        # resource-type specific checks run before a write, hooks after it has committed
        self.before_write: dict[str, Callable[[dict[str, Any]], None]] = {}
        self.after_write: list[AfterWrite] = []
        # (type, query) → (indexer generation, parsed); shared by the per-request copies of this service
        self._criteria: dict[tuple[str, str], tuple[int, SearchQuery]] = {}

    # -- helpers -----------------------------------------------------------------------------------------------

    def check_type(self, resource_type: str) -> None:
        if not self.defs.is_resource_type(resource_type):
            raise NotFound(f"{resource_type!r} is not a FHIR R4 resource type", expression=resource_type)

    def criteria(self, resource_type: str, query_string: str) -> SearchQuery:
        """Conditional criteria, parsed once per distinct (type, query) while the search parameters stay the same
        (a SearchQuery is immutable; what does not parse is not kept and raises every time)."""
        key, generation = (resource_type, query_string), self.indexer.generation
        cache = self._criteria
        hit = cache.pop(key, None)
        if hit is None or hit[0] != generation:
            hit = (generation, parse_criteria(resource_type, query_string, self.registry, self.base_urls,
                                              canonicalise))
            if len(cache) >= _CRITERIA_CACHED:
                del cache[next(iter(cache))]
        cache[key] = hit  # most recently used last
        return hit[1]

    async def find_one(self, resource_type: str, query_string: str) -> tuple[str, dict[str, Any]] | None:
        """A current resource matching ``query_string`` (its id and body), or None."""
        ids = await self.repo.find(self.criteria(resource_type, query_string), limit=1)
        stored = await self.repo.read(resource_type, ids[0]) if ids else None
        if stored is None or stored.body is None:
            return None
        body: dict[str, Any] = jsonio.loads(stored.body)
        return ids[0], body

    def _prepare(self, resource_type: str, resource: dict[str, Any], indexed: bool = True) -> WriteOp:
        """Validate a resource for writing and build its op (method and id are filled in by the caller);
        ``indexed`` False: an op that will not write its resource (empty index entries)."""
        if resource.get("resourceType") != resource_type:
            raise InvalidRequest(
                f"resourceType {resource.get('resourceType')!r} does not match the URL type {resource_type!r}",
                expression="resourceType",
            )
        issues = self.validator.validate(resource)
        if any(i.severity in ("error", "fatal") for i in issues):
            raise issues_error(issues)
        check = self.before_write.get(resource_type)
        if check is not None:
            check(resource)
        return WriteOp("update", resource_type, resource=resource,
                       index=self.index(resource) if indexed else IndexEntries())

    def index(self, resource: dict[str, Any]) -> IndexEntries:
        entries = self.indexer.extract(resource)
        entries.narrative = narrative_text(resource)
        entries.content = content_text(resource)
        near = position_entry(resource)
        if near is not None:
            entries.composites.append(near)
        return entries

    async def write(self, ops: Sequence[WriteOp]) -> list[WriteOutcome]:
        """Apply planned ops atomically, then run the after-write hooks of everything that was written."""
        outcomes = await self.repo.write(ops)
        for op, outcome in zip(ops, outcomes, strict=True):
            if not outcome.noop:
                for hook in self.after_write:
                    await hook(outcome, op.resource if op.method != "delete" else None)
        return outcomes

    async def _write_one(self, op: WriteOp) -> WriteOutcome:
        (outcome,) = await self.write([op])
        return outcome

    # -- planning: each interaction as a validated, indexed write op (used alone, or many in a Bundle) --------

    def plan_create(
        self, resource_type: str, resource: dict[str, Any], if_none_exist: str | None = None,
        id: str | None = None, criteria: SearchQuery | None = None, indexed: bool = True,
    ) -> WriteOp:
        """``POST /Type``: the server assigns the id (a client id in the body is ignored, per the spec).
        ``criteria``: ``if_none_exist`` already parsed (a transaction plan parses each criteria string once).
        ``indexed`` False only for an op that is sure to write nothing (its ``if_none_exist`` match expected)."""
        self.check_type(resource_type)
        id = id or new_id()
        op = self._prepare(resource_type, _with_id(resource, id), indexed)
        op.method, op.id = "create", id
        if if_none_exist is not None:
            op.if_none_exist = criteria or self.criteria(resource_type, if_none_exist.lstrip("?"))
        return op

    def plan_update(
        self, resource_type: str, id: str, resource: dict[str, Any], if_match: str | None = None
    ) -> WriteOp:
        """``PUT /Type/id``: update, or create with the client's id when it does not exist."""
        self.check_type(resource_type)
        check_id(id, expression=f"{resource_type}.id")
        if "id" not in resource:
            raise InvalidRequest("the resource in an update must have an id", expression=f"{resource_type}.id")
        if resource["id"] != id:
            raise InvalidRequest(
                f"the resource id {resource['id']!r} does not match the URL id {id!r}",
                expression=f"{resource_type}.id",
            )
        op = self._prepare(resource_type, resource)
        op.id = id
        op.if_match = parse_etag(if_match) if if_match else None
        return op

    def plan_conditional_update(
        self, resource_type: str, query_string: str, resource: dict[str, Any], if_match: str | None = None,
        criteria: SearchQuery | None = None, create_id: str | None = None,
    ) -> WriteOp:
        """``PUT /Type?criteria``: 0 matches create, 1 match update, several 412.  ``create_id``: the id to create
        with (a new one when None)."""
        self.check_type(resource_type)
        if "id" in resource:
            check_id(str(resource["id"]), expression=f"{resource_type}.id")
        op = self._prepare(resource_type, resource)
        op.match = criteria or self.criteria(resource_type, query_string)
        op.create_id = create_id or new_id()
        op.if_match = parse_etag(if_match) if if_match else None
        return op

    async def plan_patch(
        self,
        resource_type: str,
        id: str | None,
        patch: PatchBody,
        *,
        query_string: str | None = None,
        if_match: str | None = None,
    ) -> WriteOp:
        """``PATCH /Type/id`` (or ``?criteria``): JSON Patch or FHIRPath Patch, then a validated update that
        applies only to the version the patch was computed from (no lost update)."""
        self.check_type(resource_type)
        if id is None:
            matches = await self.repo.find(self.criteria(resource_type, query_string or ""), limit=2)
            if not matches:
                raise NotFound(f"no {resource_type} matches {query_string}")
            if len(matches) > 1:
                raise PreconditionFailed(f"conditional patch criteria matched {len(matches)} resources")
            id = matches[0]
        current = await self.read(resource_type, id)
        expected = parse_etag(if_match) if if_match else None
        if expected is not None and expected != current.version:
            raise PreconditionFailed(
                f'If-Match W/"{expected}" does not match the current version {current.version}',
                expression="If-Match",
            )
        assert current.body is not None
        resource = jsonio.loads(current.body)
        patched = self._apply_patch(resource, patch)
        if patched.get("resourceType") != resource_type or patched.get("id") != id:
            raise InvalidRequest("a patch may not change the resource type or id")
        op = self._prepare(resource_type, patched)
        op.id = id
        op.if_match = current.version
        op.expect_resolved = True  # a newer version appearing meanwhile is a concurrent change, not the client's 412
        op.expect_id = id
        return op

    def plan_delete(self, resource_type: str, id: str, if_match: str | None = None) -> WriteOp:
        self.check_type(resource_type)
        return WriteOp("delete", resource_type, id=id, if_match=parse_etag(if_match) if if_match else None)

    def plan_conditional_delete(
        self, resource_type: str, query_string: str, criteria: SearchQuery | None = None
    ) -> WriteOp:
        self.check_type(resource_type)
        return WriteOp("delete", resource_type, match=criteria or self.criteria(resource_type, query_string))

    # -- interactions --------------------------------------------------------------------------------------

    async def create(self, resource_type: str, body: bytes, if_none_exist: str | None = None) -> WriteOutcome:
        self.check_type(resource_type)
        return await self._write_one(self.plan_create(resource_type, parse_resource(body), if_none_exist))

    async def read(self, resource_type: str, id: str) -> StoredVersion:
        self.check_type(resource_type)
        stored = await self.repo.read(resource_type, id)
        if stored is None:
            raise NotFound(f"{resource_type}/{id} is not known")
        if stored.deleted:
            raise Gone(
                f"{resource_type}/{id} was deleted (version {stored.version})",
                headers={"ETag": f'W/"{stored.version}"'},
            )
        return stored

    async def vread(self, resource_type: str, id: str, version: str) -> StoredVersion:
        self.check_type(resource_type)
        if not version.isdigit():
            raise NotFound(f"{resource_type}/{id} has no version {version!r}")
        stored = await self.repo.vread(resource_type, id, int(version))
        if stored is None:
            raise NotFound(f"{resource_type}/{id} has no version {version}")
        if stored.deleted:
            raise Gone(f"version {version} of {resource_type}/{id} is a deletion")
        return stored

    async def update(
        self, resource_type: str, id: str, body: bytes, if_match: str | None = None
    ) -> WriteOutcome:
        self.check_type(resource_type)
        check_id(id, expression=f"{resource_type}.id")
        return await self._write_one(self.plan_update(resource_type, id, parse_resource(body), if_match))

    async def conditional_update(
        self, resource_type: str, query_string: str, body: bytes, if_match: str | None = None
    ) -> WriteOutcome:
        self.check_type(resource_type)
        return await self._write_one(
            self.plan_conditional_update(resource_type, query_string, parse_resource(body), if_match)
        )

    async def patch(
        self,
        resource_type: str,
        id: str | None,
        patch: PatchBody,
        *,
        query_string: str | None = None,
        if_match: str | None = None,
    ) -> WriteOutcome:
        op = await self.plan_patch(resource_type, id, patch, query_string=query_string, if_match=if_match)
        try:
            return await self._write_one(op)
        except ConcurrentChange as exc:
            raise PreconditionFailed(
                f"{resource_type}/{op.id} changed while the patch was applied; retry", expression="If-Match"
            ) from exc

    def _apply_patch(self, resource: dict[str, Any], patch: PatchBody) -> dict[str, Any]:
        ctype = patch.content_type
        if ctype == JSON_PATCH:
            return patching.apply_json_patch(resource, parse_json(patch.body))
        if ctype in ("application/fhir+json", "application/json", "application/json+fhir"):
            parameters = parse_resource(patch.body)
            if parameters.get("resourceType") != "Parameters":
                raise InvalidRequest(
                    "a FHIRPath Patch body must be a Parameters resource", expression="resourceType"
                )
            return patching.apply_fhirpath_patch(resource, parameters)
        raise UnsupportedMediaType(
            f"PATCH accepts {JSON_PATCH} (JSON Patch) or application/fhir+json (FHIRPath Patch), not {ctype!r}"
        )

    async def delete(self, resource_type: str, id: str, if_match: str | None = None) -> WriteOutcome:
        return await self._write_one(self.plan_delete(resource_type, id, if_match))

    async def conditional_delete(self, resource_type: str, query_string: str) -> WriteOutcome:
        return await self._write_one(self.plan_conditional_delete(resource_type, query_string))


def _with_id(resource: dict[str, Any], id: str) -> dict[str, Any]:
    """The resource with ``id`` set, placed right after ``resourceType`` (any client id is replaced)."""
    out: dict[str, Any] = {}
    for key, value in resource.items():
        if key == "id":
            continue
        out[key] = value
        if key == "resourceType":
            out["id"] = id
    return out
