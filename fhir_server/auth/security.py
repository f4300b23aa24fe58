"""Enforcement, assembled once per application: tokens → policies → scoped repositories, and the audit trail.

``create_app`` builds one :class:`Security` beside the repository; the API layer (``fhir_server.api.access``) asks
it, for every FHIR request, who is calling (``authenticate``), what they may reach (``policy``), and for a scoped
repository made for that request (``scoped``); when the request ends it hands the request's record to ``audit``.
Bulk export jobs, which run after their request has ended, read through ``job_repository`` with the access that
was recorded at kick-off.  Background work (task functions, post-write reactions, Subscription checks, HL7
orders) runs inside ``acting``: a scoped repository for the jobs identity (or the access a Subscription recorded),
whose record is audited as one request when the work ends.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any

from fhir_server.auth._decide import audited_fast
from fhir_server.auth.audit import JOB_PATH, AuditSink, RequestInfo, audited
from fhir_server.auth.guard import AccessRecord, Guard
from fhir_server.auth.policy import AccessPolicy
from fhir_server.auth.reach import ReachCompiler
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.service import AuthService
from fhir_server.auth.tokens import AccessContext
from fhir_server.storage.base import Repository
from fhir_server.storage.scoped import ScopedRepository

_POLICY_CACHE = 4096
JOBS_IDENTITY = "infirmary-jobs"  # who background work acts as (subject and client id; kind "system")
JOBS_SCOPES = "system/*.cruds"  # jobs are the server: full access, but through the scoped repository (audited)


class Security:
    def __init__(self, auth: AuthService, compiler: ReachCompiler, repo: Repository,
                 resource_types: Collection[str], audit: AuditSink, *, enabled: bool = True) -> None:
        self.auth = auth
        self.compiler = compiler
        self.repo = repo
        self.resource_types = tuple(sorted(resource_types))
        self.audit_writer = audit
        self.enabled = enabled
        self.linked = compiler.linked_types
        self._policies: OrderedDict[tuple[str, bool], AccessPolicy] = OrderedDict()
        self._audiences: dict[str, tuple[str, str]] = {}  # FHIR base URL → (audience, issuer) of its tokens

    def authenticate(self, authorization: str | None, fhir_base: str) -> AccessContext:
        """The caller's access context; ``InvalidToken`` (401) when the token is missing or not good here."""
        audience = self._audiences.get(fhir_base)
        if audience is None:
            endpoints = self.auth.endpoints(fhir_base)
            audience = (endpoints.fhir_base, endpoints.issuer)
            if len(self._audiences) < 1024:
                self._audiences[fhir_base] = audience
        return self.auth.core.validator.authenticate(authorization, audience=audience[0], issuer=audience[1])

    def break_glass_until(self, context: AccessContext) -> float:
        """When the user's active break-glass grant ends (0.0: none).  Blocking: one primary-key look-up."""
        if context.kind != "staff":
            return 0.0
        until = self.auth.store.break_glass_until(context.subject)
        return until if until > time.time() else 0.0

    def policy(self, context: AccessContext) -> AccessPolicy:
        break_glass = self.break_glass_until(context) > 0
        key = (context.token_id, break_glass)
        policy = self._policies.get(key)
        if policy is None:
            policy = AccessPolicy(context, self.linked, break_glass)
            self._policies[key] = policy
            if len(self._policies) > _POLICY_CACHE:
                self._policies.popitem(last=False)
        else:
            self._policies.move_to_end(key)
        return policy

    def scoped(self, policy: AccessPolicy, record: AccessRecord | None = None) -> ScopedRepository:
        guard = Guard(policy, self.compiler, self.repo, record)
        return ScopedRepository(self.repo, guard, self.resource_types)

    async def audit(self, context: AccessContext | None, record: AccessRecord, info: RequestInfo,
                    break_glass: bool = False) -> None:
        if not audited(record, info, self.linked):
            return  # nothing about patients (reads of shared resources): decided before anything is built or sent
        await self.audit_writer.submit_request(context, record, info, break_glass, self.linked)

    async def audit_request(self, context: AccessContext | None, record: AccessRecord, method: str, path: str,
                            query: str, status: int, address: str | None, break_glass: bool = False) -> None:
        """``audit`` for a request under /fhir; the common requests are decided from the path alone, before
        anything is built (``path``: below /fhir, without the leading slash)."""
        decided = audited_fast(record, path, status, self.linked)
        if decided is False:
            return
        info = RequestInfo(method, path, query, status, address)
        if decided is None and not audited(record, info, self.linked):
            return
        await self.audit_writer.submit_request(context, record, info, break_glass, self.linked)

    # -- bulk export jobs -------------------------------------------------------------------------------------

    @staticmethod
    def access_record(policy: AccessPolicy) -> dict[str, Any]:
        """What an export job needs to read as its requester did (no token: the claims that decide access)."""
        c = policy.context
        return {"sub": c.subject, "client_id": c.client_id, "kind": c.kind, "scope": c.scopes.text,
                "patient": c.patient, "fhirUser": c.fhir_user, "roles": sorted(c.roles),
                "break_glass": policy.break_glass}

    @staticmethod
    def requester(policy: AccessPolicy) -> str:
        """Who may poll, cancel and download an export: the same client for the same user."""
        c = policy.context
        return f"{c.client_id} {c.subject}"

    def job_repository(self, record: dict[str, Any]) -> Repository:
        return self.scoped(self.recorded_policy(record))

    def recorded_policy(self, record: dict[str, Any]) -> AccessPolicy:
        """The policy of access recorded earlier (``access_record``, or a Subscription's stamp)."""
        context = AccessContext(
            subject=str(record["sub"]), client_id=str(record["client_id"]),
            scopes=ScopeSet.parse(str(record.get("scope") or ""), self.resource_types),
            kind=record["kind"], token_id=f"export:{record['sub']}", issued_at=0, expires_at=0,
            fhir_user=record.get("fhirUser"), patient=record.get("patient"),
            roles=frozenset(record.get("roles") or ()),
        )
        return AccessPolicy(context, self.linked, bool(record.get("break_glass")))

    # -- background work ----------------------------------------------------------------------------------------

    @functools.cached_property
    def jobs_policy(self) -> AccessPolicy:
        """The policy of the jobs identity: a system client that may do everything."""
        context = AccessContext(subject=JOBS_IDENTITY, client_id=JOBS_IDENTITY,
                                scopes=ScopeSet.parse(JOBS_SCOPES, self.resource_types), kind="system",
                                token_id=f"jobs:{JOBS_IDENTITY}", issued_at=0, expires_at=0)
        return AccessPolicy(context, self.linked)

    @asynccontextmanager
    async def acting(self, name: str, access: dict[str, Any] | None = None) -> AsyncIterator[ScopedRepository]:
        """A scoped repository for one run of background work ``name``, as the jobs identity (or as the access
        recorded in ``access``); when the run ends — returned (200) or raised (500) — what it touched is audited
        as the request ``POST $job/<name>`` of that identity."""
        policy = self.jobs_policy if access is None else self.recorded_policy(access)
        record = AccessRecord()
        status = 500
        try:
            yield self.scoped(policy, record)
            status = 200
        finally:
            if record.touched:  # (untouched: nothing to audit, decided without building the request's facts)
                await self.audit(policy.context, record,
                                 RequestInfo("POST", f"{JOB_PATH}/{name}", "", status, None))
