"""One request's authorization: the token's policy, the questions the scoped repository asks of it, and what the
request touched (for its AuditEvents).

``Guard`` is made per request by the API layer from the ``AccessContext`` (and the user's break-glass state); the
scoped repository (:mod:`fhir_server.storage.scoped`) calls it on every primitive.  It never decides FHIR
semantics: it says yes or no, adds criteria, and keeps the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

from fhir_server import jsonio
from fhir_server.auth.policy import AccessPolicy, Reach
from fhir_server.auth.reach import ReachCompiler, all_of
from fhir_server.errors import Forbidden
from fhir_server.search.model import AnyOf, Chain, Clause, Criterion, Has, Not, SearchQuery, TokenValue
from fhir_server.storage.base import Repository

Action = Literal["C", "R", "U", "D", "E"]
AUDIT_TYPE = "AuditEvent"

_PERMISSION_WORDS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


class Touch(NamedTuple):
    """A resource a request read or wrote (or was refused), with the patients it belongs to.  A named tuple: one
    is made for every resource a request touches, five times cheaper than a frozen dataclass."""

    resource_type: str
    id: str
    patients: frozenset[str]
    action: Action
    denied: bool = False


@dataclass
class AccessRecord:
    """What one request touched; the audit layer turns it into AuditEvents when the request ends."""

    touched: list[Touch] = field(default_factory=list)
    interaction: str | None = None  # set by a route when only it knows (batch or transaction)

    @property
    def denied(self) -> bool:
        return any(t.denied for t in self.touched)


class Guard:
    def __init__(self, policy: AccessPolicy, compiler: ReachCompiler, inner: Repository,
                 record: AccessRecord | None = None) -> None:
        self.policy = policy
        self.compiler = compiler
        self.inner = inner
        self.record = record if record is not None else AccessRecord()
        self._care: dict[tuple[str, tuple[str, ...]], bool] = {}
        self._visible: dict[str, Reach] = {}  # asked several times per op of a write: combined once per type

    # -- permissions ----------------------------------------------------------------------------------------

    def reach(self, permission: str, resource_type: str) -> Reach:
        return self.policy.reach(permission, resource_type)

    def visible(self, resource_type: str) -> Reach:
        reach = self._visible.get(resource_type)
        if reach is None:
            reach = self._visible[resource_type] = self.policy.visible(resource_type)
        return reach

    def require(self, permission: str, resource_type: str, *, expression: str | None = None) -> Reach:
        """The reach of a permission on a type; 403 when the token has none."""
        reach = self.policy.reach(permission, resource_type)
        if not reach.allowed:
            self.record.touched.append(Touch(resource_type, "", frozenset(), _action(permission), denied=True))
            raise Forbidden(
                f"this access token does not allow {_PERMISSION_WORDS.get(permission, permission)} on "
                f"{resource_type} resources", expression=expression or resource_type)
        return reach

    def criterion(self, resource_type: str, reach: Reach) -> Criterion | None:
        return self.compiler.criterion(resource_type, reach)

    async def admits(self, resource_type: str, resource: dict[str, Any], reach: Reach) -> bool:
        if reach.unrestricted:
            return True

        async def current(criteria: Sequence[Criterion]) -> bool:
            rid = resource.get("id")
            if not isinstance(rid, str):
                return False
            query = SearchQuery(resource_type, (Clause("_id", "id", (TokenValue(None, rid),)), *criteria))
            return bool(await self.inner.find(query, limit=1))

        return await self.compiler.admits(resource_type, resource, reach, self._under_care, current)

    async def _under_care(self, ids: frozenset[str], carers: tuple[str, ...]) -> frozenset[str]:
        unknown = [i for i in ids if (i, carers) not in self._care]
        if unknown:
            found = set(await self.inner.find(self.compiler.care_query(unknown, carers), limit=len(unknown)))
            for i in unknown:
                self._care[(i, carers)] = i in found
        return frozenset(i for i in ids if self._care[(i, carers)])

    def out_of_reach(self, resource_type: str, id: str, resource: dict[str, Any] | None, permission: str,
                     what: str = "") -> Forbidden | None:
        """Record a refusal; the error to raise (None: answer as if the resource did not exist)."""
        patients = self.compiler.patients_of(resource_type, resource) if resource is not None else frozenset()
        self.record.touched.append(Touch(resource_type, id, patients, _action(permission), denied=True))
        if self.policy.hides_existence:
            return None
        reason = ""
        if self.policy.context.kind == "staff" and patients:
            reason = " (the patient is not under this user's care; break-glass gives emergency access)"
        return Forbidden(f"this access token does not allow {_PERMISSION_WORDS.get(permission, permission)} on "
                         f"{what or f'{resource_type}/{id}'}{reason}", expression=resource_type)

    # -- criteria of the request itself -----------------------------------------------------------------------

    def guard_criteria(self, criteria: Sequence[Criterion]) -> tuple[Criterion, ...]:
        """The request's criteria with every chain and ``_has`` limited to what the token may see of the types
        they reach into (403 when it may see nothing of such a type)."""
        return tuple(self._guard(c) for c in criteria)

    def _guard(self, c: Criterion) -> Criterion:
        match c:
            case Chain():
                alternatives: list[Criterion] = []
                for target in c.target_types:
                    reach = self.visible(target)
                    if not reach.allowed:
                        continue
                    inner = self._limited(target, self._guard(c.inner), reach)
                    alternatives.append(Chain(c.param, (target,), inner))
                if not alternatives:
                    raise Forbidden(f"the chained parameter {c.param} searches {', '.join(c.target_types)} "
                                    "resources, which this access token may not read", expression=c.param)
                return alternatives[0] if len(alternatives) == 1 else AnyOf(tuple(alternatives))
            case Has():
                reach = self.visible(c.source_type)
                if not reach.allowed:
                    raise Forbidden(f"_has searches {c.source_type} resources, which this access token may not "
                                    "read", expression=f"_has:{c.source_type}:{c.ref_param}")
                return replace(c, inner=self._limited(c.source_type, self._guard(c.inner), reach))
            case Not():
                return Not(self._guard(c.inner))
            case AnyOf():
                return AnyOf(tuple(self._guard(i) for i in c.criteria))
            case Clause(type="list"):
                if not self.visible("List").allowed:
                    raise Forbidden("_list reads List resources, which this access token may not read",
                                    expression="_list")
        return c

    def _limited(self, resource_type: str, criterion: Criterion, reach: Reach) -> Criterion:
        extra = self.compiler.criterion(resource_type, reach)
        return criterion if extra is None else all_of([criterion, extra])

    # -- the record --------------------------------------------------------------------------------------------

    def touch(self, resource_type: str, id: str | None, body: bytes | dict[str, Any] | None, action: Action) -> None:
        if id is None or not self.compiler.is_linked(resource_type) or resource_type == AUDIT_TYPE:
            return  # only patient data is audited
        self.record.touched.append(Touch(resource_type, id, self.patients(resource_type, id, body), action))

    def patients(self, resource_type: str, id: str, body: bytes | dict[str, Any] | None) -> frozenset[str]:
        if resource_type == "Patient":
            return frozenset({id})
        if body is None or not self.compiler.is_linked(resource_type):
            return frozenset()
        resource = jsonio.loads(body) if isinstance(body, bytes) else body
        return self.compiler.patients_of(resource_type, resource)


def _action(permission: str) -> Action:
    return {"c": "C", "u": "U", "d": "D"}.get(permission, "R")  # type: ignore[return-value]
