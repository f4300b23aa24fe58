"""SMART App Launch scopes, v1 and v2, parsed once into a structure the enforcement layer can ask questions of.

Grammar (SMART App Launch 2.x, section "Scopes for requesting clinical data")::

    resource scope  = context "/" ( ResourceType | "*" ) "." permissions [ "?" query ]
    context         = "patient" | "user" | "system"
    permissions     = v2: one or more of "c" "r" "u" "d" "s", in that order, each at most once
                      v1: "read" (= "rs") | "write" (= "cud") | "*" (= "cruds"); v1 takes no query

A v2 query (``patient/Observation.rs?category=laboratory``) restricts the scope to the resources that match that
search.  Scopes are additive: a context reaches a resource when *any* of its scopes does, so an unrestricted scope
for a (permission, type) beats every query-restricted one.

Questions the enforcement layer asks::

    scopes = ScopeSet.parse("patient/Observation.rs?category=laboratory user/Patient.r")
    access = scopes.access("r", "Observation")   # which scopes grant reading Observations
    access.allowed                                # False → deny
    access.restriction("patient")                 # Restriction: all, none, or the resources matching any query

``INTERACTION_PERMISSION`` maps FHIR interactions to the permission letter they need.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl

Context = Literal["patient", "user", "system"]
CONTEXTS: tuple[Context, ...] = ("patient", "user", "system")

#: the permission letters of SMART v2, in the only order the grammar allows
PERMISSIONS = "cruds"
_V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}

#: FHIR interactions → the permission letter a scope must grant (SMART App Launch 2.x, table of v2 scopes)
INTERACTION_PERMISSION: dict[str, str] = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search-type": "s",
    "search-system": "s",
    "search-compartment": "s",
    "history-type": "s",
    "history-system": "s",
}

#: scopes that are not about resources: launch context, identity, refresh tokens, and this server's own
LAUNCH = "launch"
LAUNCH_PATIENT = "launch/patient"
LAUNCH_ENCOUNTER = "launch/encounter"
OPENID = "openid"
FHIR_USER = "fhirUser"
PROFILE = "profile"
OFFLINE_ACCESS = "offline_access"
ONLINE_ACCESS = "online_access"
#: this server's administration API (clients, users, keys); granted only to administrators and trusted system clients
ADMIN = "infirmary/admin"
SPECIAL_SCOPES: frozenset[str] = frozenset(
    {LAUNCH, LAUNCH_PATIENT, LAUNCH_ENCOUNTER, OPENID, FHIR_USER, PROFILE, OFFLINE_ACCESS, ONLINE_ACCESS, ADMIN}
)

Query = tuple[tuple[str, str], ...]


class ScopeError(ValueError):
    """A scope string that is not a well-formed SMART scope."""


@dataclass(frozen=True)
class ResourceScope:
    """One ``context/Type.permissions[?query]`` scope."""

    text: str
    context: Context
    resource_type: str  # a resource type, or "*"
    permissions: frozenset[str]
    query: Query = ()
    query_text: str = ""
    v1: bool = False

    def applies_to(self, resource_type: str) -> bool:
        return self.resource_type in ("*", resource_type)

    def grants(self, permission: str, resource_type: str) -> bool:
        return permission in self.permissions and self.applies_to(resource_type)

    def with_permissions(self, permissions: Collection[str]) -> ResourceScope:
        """The same scope with fewer permissions, written in v2 syntax (the text of an unchanged scope is kept)."""
        perms = frozenset(permissions)
        if perms == self.permissions:
            return self
        letters = "".join(p for p in PERMISSIONS if p in perms)
        text = f"{self.context}/{self.resource_type}.{letters}" + (f"?{self.query_text}" if self.query_text else "")
        return ResourceScope(text, self.context, self.resource_type, perms, self.query, self.query_text, False)


def parse_resource_scope(text: str, resource_types: Collection[str] | None = None) -> ResourceScope:
    """Parse one resource scope; ``ScopeError`` when it is not one (or names an unknown resource type)."""
    head, sep, query_text = text.partition("?")
    context, slash, rest = head.partition("/")
    if not slash or context not in CONTEXTS:
        raise ScopeError(f"{text!r} does not start with patient/, user/ or system/")
    rtype, dot, perms = rest.rpartition(".")
    if not dot or not rtype:
        raise ScopeError(f"{text!r} has no '.permissions' after the resource type")
    if rtype != "*" and not (rtype[0].isupper() and rtype.isalpha()):
        raise ScopeError(f"{text!r}: {rtype!r} is not a resource type")
    if resource_types is not None and rtype != "*" and rtype not in resource_types:
        raise ScopeError(f"{text!r}: {rtype!r} is not a FHIR R4 resource type")
    v1 = perms in _V1_PERMISSIONS
    if v1:
        if sep:
            raise ScopeError(f"{text!r}: a v1 scope ({perms}) cannot carry a query; use v2 permissions")
        letters = _V1_PERMISSIONS[perms]
    else:
        letters = perms
        if not letters or any(ch not in PERMISSIONS for ch in letters) or not _in_order(letters):
            raise ScopeError(
                f"{text!r}: permissions must be read, write, * or letters of 'cruds' in that order, each once"
            )
    query: Query = ()
    if sep:
        if not query_text:
            raise ScopeError(f"{text!r}: empty query after '?'")
        try:
            query = tuple(parse_qsl(query_text, keep_blank_values=False, strict_parsing=True))
        except ValueError as exc:
            raise ScopeError(f"{text!r}: the query is not name=value pairs joined by '&'") from exc
        if any(not name for name, _ in query):
            raise ScopeError(f"{text!r}: a query parameter has no name")
    return ResourceScope(text, context, rtype, frozenset(letters), query, query_text if sep else "", v1)


def _in_order(letters: str) -> bool:
    positions = [PERMISSIONS.index(ch) for ch in letters]
    return all(a < b for a, b in itertools.pairwise(positions))


@dataclass(frozen=True)
class Restriction:
    """Which resources one context's scopes reach for one (permission, type).

    ``allowed`` False: none.  Allowed with no ``queries``: all of them (subject to the context's own limits, such
    as the patient compartment).  Otherwise: those matching at least one of ``queries`` (each a list of search
    parameters that must all match).
    """

    allowed: bool
    queries: tuple[Query, ...] = ()

    @property
    def unrestricted(self) -> bool:
        return self.allowed and not self.queries


DENIED = Restriction(False)
UNRESTRICTED = Restriction(True)


@dataclass(frozen=True)
class Access:
    """The scopes that grant one permission on one resource type."""

    permission: str
    resource_type: str
    scopes: tuple[ResourceScope, ...]

    @property
    def allowed(self) -> bool:
        return bool(self.scopes)

    @property
    def contexts(self) -> frozenset[Context]:
        return frozenset(s.context for s in self.scopes)

    def restriction(self, context: Context) -> Restriction:
        mine = [s for s in self.scopes if s.context == context]
        if not mine:
            return DENIED
        if any(not s.query for s in mine):
            return UNRESTRICTED
        return Restriction(True, tuple(dict.fromkeys(s.query for s in mine)))


@dataclass(frozen=True)
class ScopeSet:
    """A parsed scope string: resource scopes, the other scopes it names, and what was not understood."""

    resource: tuple[ResourceScope, ...] = ()
    other: frozenset[str] = frozenset()
    invalid: tuple[str, ...] = ()
    _order: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def parse(cls, scopes: str | Iterable[str] | None, resource_types: Collection[str] | None = None) -> ScopeSet:
        """Parse a space-separated scope string (or a list of scopes).  Nothing raises: scopes that are not
        understood are kept in ``invalid`` for the caller to refuse or drop."""
        items = scopes.split() if isinstance(scopes, str) else list(scopes or ())
        resource: list[ResourceScope] = []
        other: list[str] = []
        invalid: list[str] = []
        for item in dict.fromkeys(items):
            if item in SPECIAL_SCOPES:
                other.append(item)
                continue
            try:
                resource.append(parse_resource_scope(item, resource_types))
            except ScopeError:
                invalid.append(item)
        order = tuple(s for s in dict.fromkeys(items) if s not in invalid)
        return cls(tuple(resource), frozenset(other), tuple(invalid), order)

    @classmethod
    def of(cls, resource: Sequence[ResourceScope], other: Iterable[str] = ()) -> ScopeSet:
        others = tuple(dict.fromkeys(other))
        order = tuple(dict.fromkeys([s.text for s in resource] + list(others)))
        return cls(tuple(resource), frozenset(others), (), order)

    def __contains__(self, name: object) -> bool:
        return name in self.other

    def __bool__(self) -> bool:
        return bool(self.resource or self.other)

    @property
    def text(self) -> str:
        """The granted scopes as a space-separated string (in the order they were asked for)."""
        if self._order:
            return " ".join(self._order)
        return " ".join([s.text for s in self.resource] + sorted(self.other))

    def names(self) -> list[str]:
        return self.text.split()

    @property
    def contexts(self) -> frozenset[Context]:
        return frozenset(s.context for s in self.resource)

    def in_context(self, *contexts: Context) -> tuple[ResourceScope, ...]:
        return tuple(s for s in self.resource if s.context in contexts)

    def access(self, permission: str, resource_type: str) -> Access:
        """Which scopes grant ``permission`` (a letter of ``cruds``) on ``resource_type``."""
        if len(permission) != 1 or permission not in PERMISSIONS:
            raise ValueError(f"permission must be one of {PERMISSIONS!r}, not {permission!r}")
        return Access(permission, resource_type, tuple(s for s in self.resource if s.grants(permission, resource_type)))

    def may(self, interaction: str, resource_type: str, context: Context | None = None) -> bool:
        """Whether any scope (of ``context``, if given) grants the FHIR ``interaction`` (``read``, ``search-type``,
        …, or a permission letter) on ``resource_type``, before query restrictions and compartments apply."""
        permission = INTERACTION_PERMISSION.get(interaction, interaction)
        access = self.access(permission, resource_type)
        return access.allowed if context is None else context in access.contexts

    def search_restriction(self, resource_type: str, context: Context, permission: str = "s") -> Restriction:
        """The restriction a search (or, with ``permission="r"``, a read) of ``resource_type`` must respect."""
        return self.access(permission, resource_type).restriction(context)

    def resource_types(self, permission: str, context: Context | None = None) -> frozenset[str]:
        """The types (``"*"`` for all) on which some scope grants ``permission``."""
        return frozenset(
            s.resource_type for s in self.resource
            if permission in s.permissions and (context is None or s.context == context)
        )


def narrow(requested: ResourceScope, allowed: Sequence[ResourceScope]) -> list[ResourceScope]:
    """``requested`` cut down to what ``allowed`` permits (empty when nothing of it is).

    An allowed scope covers a requested one when the context is the same, it has no query or exactly the requested
    query, and its type is ``*`` or the requested type; the result keeps the permissions both have.  A requested
    ``*`` is cut down to the types the allowed scopes name (``system/*.rs`` under ``system/Observation.cruds`` is
    ``system/Observation.rs``).
    """
    by_type: dict[str, set[str]] = {}
    for scope in allowed:
        if scope.context != requested.context or (scope.query and scope.query != requested.query):
            continue
        if scope.resource_type in ("*", requested.resource_type):
            by_type.setdefault(requested.resource_type, set()).update(scope.permissions)
        elif requested.resource_type == "*":
            by_type.setdefault(scope.resource_type, set()).update(scope.permissions)
    out: list[ResourceScope] = []
    for rtype, permissions in by_type.items():
        kept = requested.permissions & permissions
        if not kept:
            continue
        if rtype == requested.resource_type:
            out.append(requested.with_permissions(kept))
        else:
            letters = "".join(p for p in PERMISSIONS if p in kept)
            query = f"?{requested.query_text}" if requested.query_text else ""
            out.append(ResourceScope(f"{requested.context}/{rtype}.{letters}{query}", requested.context, rtype,
                                     frozenset(kept), requested.query, requested.query_text))
    return out


def narrow_set(requested: ScopeSet, allowed: ScopeSet) -> ScopeSet:
    """The requested scopes that ``allowed`` permits (resource scopes cut down by ``narrow``), in request order."""
    by_text = {s.text: s for s in requested.resource}
    resource: list[ResourceScope] = []
    other: list[str] = []
    order: list[str] = []
    for name in requested.names():
        if name in by_text:
            kept = narrow(by_text[name], allowed.resource)
            resource.extend(kept)
            order.extend(s.text for s in kept)
        elif name in allowed.other:
            other.append(name)
            order.append(name)
    return ScopeSet(tuple(resource), frozenset(other), (), tuple(dict.fromkeys(order)))


def without(scopes: ScopeSet, *, contexts: Collection[str] = (), names: Collection[str] = ()) -> ScopeSet:
    """``scopes`` less the resource scopes of ``contexts`` and the other scopes in ``names``."""
    resource = [s for s in scopes.resource if s.context not in contexts]
    kept = {s.text for s in resource} | {n for n in scopes.other if n not in names}
    order = tuple(n for n in scopes.names() if n in kept)
    return ScopeSet(tuple(resource), frozenset(n for n in scopes.other if n not in names), (), order)
