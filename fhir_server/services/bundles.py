"""batch and transaction Bundles (R4 http.html#transaction).

A **transaction** is planned in full before anything is written, then applied as one atomic repository write:

1. every entry is parsed (method, URL, conditional headers) and checked — any error names ``Bundle.entry[n]``;
2. targets are resolved in the spec's processing order (DELETE, POST, PUT/PATCH, then GET/HEAD): each POST gets a
   new id (or, with ``ifNoneExist``, the single existing match), each conditional PUT/DELETE its match, and every
   ``fullUrl`` (``urn:uuid:``, ``urn:oid:`` or absolute) is mapped to the ``Type/id`` it will have;
3. references are rewritten everywhere in the resources (and in FHIRPath Patch ``Parameters`` values) —
   ``Reference.reference``, ``Attachment.url`` and links in the narrative — and conditional references
   (``Patient?identifier=…``) are resolved (exactly one match, else 412);
4. every resource is validated and indexed into a write op, and all ops go to ``Repository.write`` at once: they
   commit together or not at all.  Each op carries what the plan assumed (``WriteOp.expect_resolved``); if a
   concurrent writer changed it, the repository refuses with ``ConcurrentChange`` and the plan is made again.
5. GET/HEAD entries run after the commit, through the server's own routes, and see the transaction's writes.

A **batch** runs each entry on its own (same order; entries of one kind concurrently, so the store commits them
together) and reports each entry's outcome; one failing entry does not affect the others.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import orjson

from fhir_server import jsonio
from fhir_server.errors import (
    ConcurrentChange,
    FhirError,
    InvalidRequest,
    Issue,
    NotFound,
    PreconditionFailed,
    operation_outcome,
    prefixed,
)
from fhir_server.services._body import check_id, parse_resource
from fhir_server.services._lookups import Lookups
from fhir_server.services.resources import JSON_PATCH, PatchBody, ResourceService, new_id
from fhir_server.storage._meta import format_instant
from fhir_server.storage.base import WriteOp, WriteOutcome

# a sub-request for GET/HEAD entries: (method, "Type/id?query", headers) → (status, headers, body)
Dispatch = Callable[[str, str, dict[str, str]], Awaitable[tuple[int, dict[str, str], bytes]]]

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_WRITES = ("DELETE", "POST", "PUT", "PATCH")
_LOCAL_REF = re.compile(r"urn:(?:uuid|oid):[^\s\"'<>]+")
_TYPE = re.compile(r"^[A-Z][A-Za-z]{0,63}$")
_RETRIES = 3


@dataclass
class _Entry:
    index: int
    method: str
    url: str  # relative to the base, with its query
    segments: list[str]
    query: str
    resource: dict[str, Any] | None
    full_url: str | None
    request: dict[str, Any]
    target: str | None = None  # "Type/id" this entry writes (resolved)
    existing: str | None = None  # id of the match of an ifNoneExist POST / conditional PUT or DELETE
    conditional: bool = False
    alias_of: _Entry | None = None  # a POST with the same ifNoneExist as an earlier entry: the same resource
    op: WriteOp | None = None
    response: dict[str, Any] = field(default_factory=dict)
    resource_out: bytes | None = None  # the stored JSON of the written or read resource
    outcome_out: dict[str, Any] | None = None
    _slots: list[tuple[dict[str, Any], str]] | None = None

    def reference_slots(self) -> list[tuple[dict[str, Any], str]]:
        """:func:`_reference_slots` of the resource, found once (rewriting changes values, not places)."""
        if self._slots is None:
            self._slots = _reference_slots(self.resource) if self.resource is not None else []
        return self._slots

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"

    @property
    def resource_type(self) -> str:
        return self.segments[0] if self.segments else ""


class BundleService:
    def __init__(self, resources: ResourceService, max_entries: int = 10_000) -> None:
        self.resources = resources
        self.max_entries = max_entries

    # -- entry point -------------------------------------------------------------------------------------------

    async def process(
        self, body: bytes, *, base_url: str, prefer: str = "minimal", dispatch: Dispatch | None = None
    ) -> dict[str, Any]:
        return await self.process_bundle(parse_resource(body), base_url=base_url, prefer=prefer, dispatch=dispatch)

    async def process_bundle(
        self, bundle: dict[str, Any], *, base_url: str, prefer: str = "minimal", dispatch: Dispatch | None = None
    ) -> dict[str, Any]:
        """:meth:`process` of a Bundle already parsed (as :func:`fhir_server.jsonio.loads` reads JSON: decimals
        ``FhirDecimal``, arrays lists).  The Bundle is the service's from now on: a transaction rewrites the
        references in its resources."""
        if bundle.get("resourceType") != "Bundle":
            raise InvalidRequest(
                f"POST to the base URL takes a batch or transaction Bundle, not {bundle.get('resourceType')!r}",
                expression="Bundle",
            )
        btype = bundle.get("type")
        if btype not in ("batch", "transaction"):
            raise InvalidRequest(
                f"a Bundle of type {btype!r} is not processed by POST to the base URL; batch and transaction are. "
                "To store a document, message or collection Bundle as a resource, POST it to [base]/Bundle",
                expression="Bundle.type",
            )
        raw_entries = bundle.get("entry", [])
        if not isinstance(raw_entries, list):
            raise InvalidRequest("Bundle.entry must be an array", expression="Bundle.entry")
        if len(raw_entries) > self.max_entries:
            raise InvalidRequest(
                f"the Bundle has {len(raw_entries)} entries; this server takes at most {self.max_entries}",
                expression="Bundle.entry",
            )
        if btype == "transaction":
            entries = [self._parse_entry(i, e, base_url) for i, e in enumerate(raw_entries)]
            await self._transaction(entries, base_url, dispatch)
        else:
            entries = await self._batch(raw_entries, base_url, dispatch)
        out_entries = []
        for entry in entries:
            out: dict[str, Any] = {}
            if entry.target and entry.method in ("POST", "PUT", "PATCH") and entry.response.get("location"):
                out["fullUrl"] = f"{base_url}/{entry.target}"
            if entry.resource_out is not None and (entry.method in ("GET", "HEAD") or prefer == "representation"):
                out["resource"] = orjson.Fragment(entry.resource_out)
            response = dict(entry.response)
            if entry.outcome_out is not None:
                response["outcome"] = entry.outcome_out
            elif prefer == "OperationOutcome" and entry.method in _WRITES:
                summary = f"{entry.method} {entry.url}: {response['status']}"
                response["outcome"] = operation_outcome([Issue("information", "informational", summary)])
            out["response"] = response
            out_entries.append(out)
        return {
            "resourceType": "Bundle",
            "id": new_id(),
            "type": f"{btype}-response",
            "meta": {"lastUpdated": format_instant(time.time())},
            "entry": out_entries,
        }

    # -- parsing -------------------------------------------------------------------------------------------------

    def _parse_entry(self, index: int, raw: Any, base_url: str) -> _Entry:
        where = f"Bundle.entry[{index}]"
        if not isinstance(raw, dict):
            raise InvalidRequest(f"{where} must be an object", expression=where)
        request = raw.get("request")
        if not isinstance(request, dict):
            raise InvalidRequest(f"{where} has no request (batch and transaction entries need one)",
                                 expression=f"{where}.request")
        method = request.get("method")
        if method not in _ORDER:
            raise InvalidRequest(f"{where}.request.method must be one of GET, HEAD, POST, PUT, PATCH, DELETE; "
                                 f"got {method!r}", expression=f"{where}.request.method")
        url = request.get("url")
        if not isinstance(url, str) or not url.strip():
            raise InvalidRequest(f"{where}.request.url is required", expression=f"{where}.request.url")
        url = url.strip()
        if "://" in url.partition("?")[0]:
            if not url.startswith(base_url + "/"):
                raise InvalidRequest(f"{where}.request.url {url!r} is not on this server ({base_url})",
                                     expression=f"{where}.request.url")
            url = url[len(base_url) + 1:]
        url = url.lstrip("/")
        path, _, query = url.partition("?")
        segments = [unquote(s) for s in path.split("/") if s]
        resource = raw.get("resource")
        if resource is not None and not isinstance(resource, dict):
            raise InvalidRequest(f"{where}.resource must be a resource object", expression=f"{where}.resource")
        full_url = raw.get("fullUrl")
        if full_url is not None and not isinstance(full_url, str):
            raise InvalidRequest(f"{where}.fullUrl must be a string", expression=f"{where}.fullUrl")
        entry = _Entry(index, method, url, segments, query, resource, full_url, request)
        if method in _WRITES:
            self._check_write_entry(entry)
        return entry

    def _check_write_entry(self, entry: _Entry) -> None:
        where, segments, method = entry.where, entry.segments, entry.method

        def bad_url() -> InvalidRequest:
            return InvalidRequest(
                f"{where}.request.url {entry.url!r} is not a valid {method} URL "
                f"({'[type]' if method == 'POST' else '[type]/[id] or [type]?[criteria]'})",
                expression=f"{where}.request.url",
            )

        if not segments or not _TYPE.match(segments[0]):
            raise bad_url()
        try:
            self.resources.check_type(segments[0])
        except FhirError as exc:
            raise prefixed(exc, where) from None
        if method == "POST":
            if len(segments) != 1:
                raise bad_url()
        elif len(segments) == 2:
            try:
                check_id(segments[1], expression=f"{where}.request.url")
            except FhirError as exc:
                raise prefixed(exc, where) from None
            if entry.query:
                raise bad_url()
        elif len(segments) == 1 and entry.query:
            entry.conditional = True
        else:
            raise bad_url()
        if method in ("POST", "PUT"):
            if entry.resource is None:
                raise InvalidRequest(f"{where}: a {method} entry needs a resource", expression=f"{where}.resource")
            if entry.resource.get("resourceType") != segments[0]:
                raise InvalidRequest(
                    f"{where}: resourceType {entry.resource.get('resourceType')!r} does not match the request "
                    f"URL type {segments[0]!r}",
                    expression=f"{where}.resource.resourceType",
                )
        if method == "PATCH" and entry.resource is None:
            raise InvalidRequest(f"{where}: a PATCH entry needs a Parameters (FHIRPath Patch) or Binary "
                                 "(JSON Patch) resource", expression=f"{where}.resource")
        if "ifNoneExist" in entry.request and method != "POST":
            raise InvalidRequest(f"{where}.request.ifNoneExist applies to POST only",
                                 expression=f"{where}.request.ifNoneExist")

    # -- transaction ---------------------------------------------------------------------------------------------

    async def _transaction(self, entries: list[_Entry], base_url: str, dispatch: Dispatch | None) -> None:
        writes = sorted((e for e in entries if e.method in _WRITES), key=lambda e: _ORDER[e.method])
        outcomes: list[WriteOutcome] = []
        planned: list[_Entry] = []
        for attempt in range(_RETRIES):
            undo: list[tuple[dict[str, Any], str, Any]] = []
            try:
                planned = await self._plan(writes, base_url, undo)
                outcomes = await self.resources.write([e.op for e in planned if e.op is not None])
                break
            except ConcurrentChange as exc:
                for holder, key, value in reversed(undo):  # plan again from the bundle as it was sent
                    holder[key] = value
                if attempt == _RETRIES - 1:
                    where = planned[exc.op_index].where if exc.op_index is not None else "Bundle"
                    raise ConcurrentChange(
                        f"{where}: the resources this transaction depends on kept changing while it was processed "
                        f"({_RETRIES} attempts); nothing was stored — retry", expression=where,
                    ) from None
            except FhirError as exc:
                if exc.op_index is not None and exc.op_index < len(planned):
                    raise prefixed(exc, planned[exc.op_index].where) from None
                raise
        for entry, outcome in zip(planned, outcomes, strict=True):
            self._write_response(entry, outcome)
        for entry in writes:
            if entry.alias_of is not None:
                entry.response = {**entry.alias_of.response, "status": _status(200)}
                entry.resource_out = entry.alias_of.resource_out
        await self._reads(entries, dispatch)

    async def _plan(
        self, writes: list[_Entry], base_url: str, undo: list[tuple[dict[str, Any], str, Any]]
    ) -> list[_Entry]:
        """Resolve, rewrite and plan every write entry; returns the entries that have an op, in write order."""
        refs: dict[str, str] = {}
        targets: dict[str, int] = {}
        deleted: set[str] = set()
        first_of: dict[tuple[str, str], _Entry] = {}
        lookups = Lookups(self.resources)
        prefetched = False
        for entry in writes:
            entry.alias_of = None
            if not prefetched and entry.method != "DELETE":  # deletes resolve first: then all look-ups at once
                prefetched = True
                await lookups.prefetch(_lookups_wanted(writes), lambda rtype: 2 + len(_gone(deleted, rtype)))
            if_none_exist = entry.request.get("ifNoneExist") if entry.method == "POST" else None
            key = (entry.resource_type, str(if_none_exist).lstrip("?"))
            if if_none_exist and key in first_of:
                entry.alias_of = first_of[key]
                entry.target = entry.alias_of.target
                if entry.full_url and entry.target:
                    refs[entry.full_url] = entry.target
                continue
            await self._resolve_target(entry, deleted, lookups)
            if if_none_exist:
                first_of[key] = entry
            if entry.method == "DELETE" and entry.target:
                deleted.add(entry.target)
            if entry.target is not None:
                if entry.target in targets:
                    raise InvalidRequest(
                        f"{entry.where} and Bundle.entry[{targets[entry.target]}] both write {entry.target}; a "
                        "transaction may change a resource once",
                        expression=entry.where,
                    )
                targets[entry.target] = entry.index
                if entry.full_url:
                    refs[entry.full_url] = entry.target
                    if entry.full_url.startswith(base_url + "/"):
                        refs.setdefault(entry.full_url[len(base_url) + 1:], entry.target)
        conditional_refs: dict[str, str] = {}
        planned = []
        for entry in writes:
            if entry.alias_of is not None:
                continue
            if entry.resource is not None and (
                entry.method in ("POST", "PUT")
                or (entry.method == "PATCH" and entry.resource.get("resourceType") == "Parameters")
            ):  # a FHIRPath Patch's valueReference may name another entry (e.g. Patient.link on a merge)
                await self._rewrite_references(entry, refs, conditional_refs, undo, deleted, lookups)
            try:
                entry.op = await self._plan_op(entry, lookups, transaction=True)
            except FhirError as exc:
                raise prefixed(exc, entry.where) from None
            planned.append(entry)
        return planned

    async def _resolve_target(self, entry: _Entry, deleted: set[str], lookups: Lookups) -> None:
        """Which resource this write entry touches (before anything is written)."""
        rtype = entry.resource_type
        entry.existing = None
        try:
            if entry.method == "POST":
                if_none_exist = entry.request.get("ifNoneExist")
                if if_none_exist:
                    matches = await self._find(rtype, str(if_none_exist).lstrip("?"), "If-None-Exist", deleted,
                                               lookups)
                    if len(matches) > 1:
                        raise PreconditionFailed(f"ifNoneExist {if_none_exist!r} matched {len(matches)} "
                                                 "resources", expression="If-None-Exist")
                    entry.existing = matches[0] if matches else None
                entry.target = f"{rtype}/{entry.existing or new_id()}"
            elif entry.conditional:
                matches = await self._find(rtype, entry.query, "url", deleted, lookups)
                if len(matches) > 1:
                    raise PreconditionFailed(f"conditional {entry.method} {entry.url!r} matched {len(matches)} "
                                             "resources")
                entry.existing = matches[0] if matches else None
                if entry.method == "DELETE":
                    entry.target = f"{rtype}/{entry.existing}" if entry.existing else None
                elif entry.existing:
                    entry.target = f"{rtype}/{entry.existing}"
                elif entry.method == "PATCH":
                    raise NotFound(f"no {rtype} matches {entry.query}")
                else:
                    body_id = (entry.resource or {}).get("id")
                    entry.target = f"{rtype}/{body_id if isinstance(body_id, str) else new_id()}"
            else:
                entry.target = f"{rtype}/{entry.segments[1]}"
        except FhirError as exc:
            raise prefixed(exc, entry.where) from None

    async def _find(self, rtype: str, query: str, what: str, deleted: set[str], lookups: Lookups) -> list[str]:
        """Current matches, leaving out what this transaction deletes first (at most 2 are needed)."""
        if not query:
            raise InvalidRequest(f"the {what} criteria are empty", expression=what)
        gone = _gone(deleted, rtype)
        found = await lookups.find(rtype, query, 2 + len(gone))
        return [id for id in found if id not in gone][:2]

    async def _plan_op(self, entry: _Entry, lookups: Lookups, transaction: bool = False) -> WriteOp:
        rtype, services = entry.resource_type, self.resources
        if_match = entry.request.get("ifMatch")
        assert entry.method == "DELETE" or entry.target is not None
        if entry.method == "POST":
            assert entry.resource is not None and entry.target is not None
            if_none_exist = entry.request.get("ifNoneExist")
            # a transaction's create that found its match writes nothing: its resource is validated, not indexed
            # (should the match be gone at write time, the store refuses the plan and it is made again)
            op = services.plan_create(rtype, entry.resource, if_none_exist, id=entry.target.split("/", 1)[1],
                                      criteria=lookups.criteria(rtype, str(if_none_exist).lstrip("?"))
                                      if if_none_exist else None,
                                      indexed=not (transaction and if_none_exist and entry.existing is not None))
            if op.if_none_exist is not None:
                op.expect_resolved, op.expect_id = True, entry.existing
            return op
        if entry.method == "PUT":
            assert entry.resource is not None and entry.target is not None
            id = entry.target.split("/", 1)[1]
            if entry.conditional:
                op = services.plan_conditional_update(rtype, entry.query, entry.resource, if_match,
                                                      criteria=lookups.criteria(rtype, entry.query), create_id=id)
                op.expect_resolved, op.expect_id = True, id
                return op
            return services.plan_update(rtype, id, entry.resource, if_match)
        if entry.method == "PATCH":
            assert entry.target is not None
            return await services.plan_patch(rtype, entry.target.split("/", 1)[1], _patch_body(entry),
                                             if_match=if_match)
        if entry.conditional:
            op = services.plan_conditional_delete(rtype, entry.query, criteria=lookups.criteria(rtype, entry.query))
            op.expect_resolved, op.expect_id = True, entry.existing
            return op
        return services.plan_delete(rtype, entry.segments[1], if_match)

    async def _rewrite_references(
        self, entry: _Entry, refs: dict[str, str], conditional: dict[str, str],
        undo: list[tuple[dict[str, Any], str, Any]], deleted: set[str], lookups: Lookups,
    ) -> None:
        assert entry.resource is not None
        for holder, key in entry.reference_slots():
            value = holder[key]
            if value in refs:
                undo.append((holder, key, value))
                holder[key] = refs[value]
            elif value.startswith(("urn:uuid:", "urn:oid:")):
                if key == "reference":
                    path = _slot_path(entry.resource, holder, key, f"{entry.where}.resource")
                    raise InvalidRequest(f"{path} refers to {value}, which no entry of the transaction has as "
                                         "its fullUrl", expression=path)
            elif key == "reference" and _is_conditional_reference(value):
                undo.append((holder, key, value))
                path = _slot_path(entry.resource, holder, key, f"{entry.where}.resource")
                holder[key] = await self._conditional_reference(value, path, conditional, deleted, lookups)
        text = entry.resource.get("text")
        if isinstance(text, dict) and isinstance(text.get("div"), str) and "urn:" in text["div"]:
            undo.append((text, "div", text["div"]))
            text["div"] = _LOCAL_REF.sub(lambda m: refs.get(m.group(0)) or m.group(0), text["div"])

    async def _conditional_reference(
        self, value: str, path: str, cache: dict[str, str], deleted: set[str], lookups: Lookups
    ) -> str:
        if value in cache:
            return cache[value]
        rtype, query = value.split("?", 1)
        try:
            self.resources.check_type(rtype)
            matches = await self._find(rtype, query, "reference", deleted, lookups)
        except FhirError as exc:
            raise InvalidRequest(f"{path}: conditional reference {value!r}: {exc.diagnostics}",
                                 expression=path) from None
        if len(matches) != 1:
            raise PreconditionFailed(
                f"{path}: conditional reference {value!r} matched {len(matches)} resources (exactly one is needed)",
                expression=path,
            )
        cache[value] = f"{rtype}/{matches[0]}"
        return cache[value]

    # -- batch ---------------------------------------------------------------------------------------------------

    async def _batch(self, raw_entries: list[Any], base_url: str, dispatch: Dispatch | None) -> list[_Entry]:
        entries: list[_Entry] = []
        for index, raw in enumerate(raw_entries):
            try:
                entry = self._parse_entry(index, raw, base_url)
            except FhirError as exc:
                entry = _Entry(index, "?", "", [], "", None, None, {})
                _fail(entry, exc)
            entries.append(entry)
        full_urls = {e.full_url for e in entries if e.full_url}
        for kind in ("DELETE", "POST", "PUT"):  # PATCH goes with PUT
            group = [e for e in entries if e.method == kind or (kind == "PUT" and e.method == "PATCH")]
            await asyncio.gather(*(self._batch_write(e, full_urls) for e in group))
        await self._reads(entries, dispatch)
        return entries

    async def _batch_write(self, entry: _Entry, full_urls: set[str]) -> None:
        try:
            if entry.resource is not None and entry.method in ("POST", "PUT"):
                for holder, key in _reference_slots(entry.resource):
                    value = holder[key]
                    if value in full_urls or (key == "reference" and value.startswith(("urn:uuid:", "urn:oid:"))):
                        path = _slot_path(entry.resource, holder, key, f"{entry.where}.resource")
                        raise InvalidRequest(
                            f"{path} refers to {value}, which a batch cannot resolve: batch entries are "
                            "independent (use a transaction for entries that refer to each other)",
                            expression=path,
                        )
            lookups = Lookups(self.resources)
            await self._resolve_target(entry, set(), lookups)
            op = await self._plan_op(entry, lookups)
            if op.method == "create" and op.if_none_exist is not None:
                op.expect_resolved = False  # a batch entry stands alone: whatever is found at write time counts
            if op.method in ("update", "delete") and op.match is not None:
                op.expect_resolved = False
            (outcome,) = await self.resources.write([op])
            self._write_response(entry, outcome)
        except ConcurrentChange as exc:
            _fail(entry, prefixed(exc, entry.where))
        except FhirError as exc:
            _fail(entry, exc if exc.diagnostics.startswith(entry.where) else prefixed(exc, entry.where))

    # -- results -------------------------------------------------------------------------------------------------

    def _write_response(self, entry: _Entry, outcome: WriteOutcome) -> None:
        response: dict[str, Any] = {"status": _status(outcome.status)}
        if entry.method == "DELETE":
            if outcome.version is not None and not outcome.noop:
                response["etag"] = f'W/"{outcome.version.version}"'
                response["lastModified"] = outcome.version.last_updated
            entry.response = response
            return
        version = outcome.version
        if version is not None:
            entry.target = f"{outcome.resource_type}/{outcome.id}"
            response["location"] = f"{entry.target}/_history/{version.version}"
            response["etag"] = f'W/"{version.version}"'
            response["lastModified"] = version.last_updated
            entry.resource_out = version.body
        entry.response = response

    async def _reads(self, entries: list[_Entry], dispatch: Dispatch | None) -> None:
        for entry in entries:
            if entry.method not in ("GET", "HEAD"):
                continue
            if dispatch is None:
                _fail(entry, InvalidRequest(f"{entry.where}: GET entries are not available here",
                                            expression=entry.where))
                continue
            headers = {}
            for element, header in (("ifNoneMatch", "if-none-match"), ("ifModifiedSince", "if-modified-since")):
                if isinstance(entry.request.get(element), str):
                    headers[header] = entry.request[element]
            status, reply_headers, body = await dispatch("GET", entry.url, headers)
            response: dict[str, Any] = {"status": _status(status)}
            for header, element in (("etag", "etag"), ("last-modified", "lastModified"), ("location", "location")):
                if header in reply_headers:
                    response[element] = reply_headers[header]
            entry.response = response
            if body and status < 300 and entry.method == "GET":
                entry.resource_out = body
            elif body and status >= 400:
                entry.outcome_out = jsonio.loads(body)


def _fail(entry: _Entry, error: FhirError) -> None:
    entry.response = {"status": _status(error.status)}
    entry.outcome_out = error.outcome()


def _status(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _patch_body(entry: _Entry) -> PatchBody:
    resource = entry.resource or {}
    if resource.get("resourceType") == "Parameters":
        return PatchBody("application/fhir+json", jsonio.dumps(resource))
    if resource.get("resourceType") == "Binary" and resource.get("contentType") == JSON_PATCH:
        try:
            data = base64.b64decode(str(resource.get("data", "")), validate=True)
        except ValueError:
            raise InvalidRequest("the Binary's data is not valid base64", expression="Binary.data") from None
        return PatchBody(JSON_PATCH, data)
    raise InvalidRequest(
        "a PATCH entry's resource must be a Parameters resource (FHIRPath Patch) or a Binary with contentType "
        f"{JSON_PATCH} (JSON Patch)",
        expression="Bundle.resource",
    )


def _gone(deleted: set[str], rtype: str) -> set[str]:
    """Ids of the resources of one type that the transaction deletes."""
    return {t.split("/", 1)[1] for t in deleted if t.startswith(rtype + "/")}


def _is_conditional_reference(value: str) -> bool:
    return "?" in value and _TYPE.match(value.split("?", 1)[0]) is not None


def _lookups_wanted(writes: list[_Entry]) -> list[tuple[str, str]]:
    """The (type, criteria) that planning the non-delete entries will look up: ifNoneExist, conditional PUT and
    PATCH URLs, conditional references (a superset is harmless: it only reads)."""
    wanted: list[tuple[str, str]] = []
    for entry in writes:
        if entry.method == "POST" and entry.request.get("ifNoneExist"):
            wanted.append((entry.resource_type, str(entry.request["ifNoneExist"]).lstrip("?")))
        elif entry.conditional and entry.method in ("PUT", "PATCH"):
            wanted.append((entry.resource_type, entry.query))
        if entry.resource is not None and entry.method != "DELETE":
            for holder, key in entry.reference_slots():
                value = holder[key]
                if key == "reference" and _is_conditional_reference(value):
                    rtype, query = value.split("?", 1)
                    wanted.append((rtype, query))
    return wanted


def _reference_slots(resource: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Every place in a resource that can hold a link to another entry: ``reference`` strings anywhere, and
    ``url`` strings that are ``urn:uuid``/``urn:oid`` (Attachment.url), as (holder, key); the narrative is left
    to the caller."""
    out: list[tuple[dict[str, Any], str]] = []
    for key, value in resource.items():
        kind = type(value)
        if (kind is dict and key != "text") or kind is list:
            _slots(value, out)
    return out


def _slots(node: Any, out: list[tuple[dict[str, Any], str]]) -> None:
    if type(node) is list:
        for item in node:
            if type(item) is dict or type(item) is list:
                _slots(item, out)
        return
    for key, value in node.items():
        kind = type(value)
        if kind is str:
            if key == "reference" or (key == "url" and value.startswith(("urn:uuid:", "urn:oid:"))):
                out.append((node, key))
        elif kind is dict or kind is list:
            _slots(value, out)


def _slot_path(node: Any, holder: dict[str, Any], key: str, path: str) -> str:
    """The FHIRPath-like location of ``holder[key]`` under ``node`` (only computed for error messages)."""
    if node is holder:
        return f"{path}.{key}"
    children = node.items() if type(node) is dict else ((f"[{i}]", v) for i, v in enumerate(node))
    for name, value in children:
        if type(value) is dict or type(value) is list:
            found = _slot_path(value, holder, key, f"{path}{name}" if name.startswith("[") else f"{path}.{name}")
            if found:
                return found
    return ""


__all__ = ["BundleService", "Dispatch"]
