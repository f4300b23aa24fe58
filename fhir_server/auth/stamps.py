"""Server-owned stamps on resources that act for their writer later: who owns them and with what access.

A Subscription keeps notifying long after the request that created it has ended; what it may tell its subscriber
is what the token that wrote it may read.  The scoped repository stamps every Subscription it writes with two
extensions, replacing whatever the client sent in them (so they cannot be forged):

* ``owner`` — a reference to the writer: the patient of a patient context, the user's ``fhirUser`` for staff,
  none for a system client.  It is indexed as the ``owner`` search parameter and links a patient's Subscriptions
  to that patient (:data:`fhir_server.auth.policy.EXTRA_LINKS`), so a patient token reaches its own and no other.
* ``access`` — the claims that decide access (subject, client, kind, scopes, patient, fhirUser, roles; never the
  token), which :meth:`fhir_server.auth.security.Security.job_repository` turns back into a scoped repository.

Written without authorization (``FHIR_AUTH__ENABLED=false``, or by the server itself) a Subscription has no stamp
and nothing limits what it hears, like everything else in that mode.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from fhir_server import jsonio
from fhir_server.auth.policy import AccessPolicy, relative
from fhir_server.indexing.entries import ReferenceEntry
from fhir_server.indexing.extract import Indexer, SearchParam
from fhir_server.storage.base import WriteOp

OWNER_URL = "https://infirmary.example.org/fhir/StructureDefinition/owner"
ACCESS_URL = "https://infirmary.example.org/fhir/StructureDefinition/access"
STAMPED: frozenset[str] = frozenset({"Subscription"})

OWNER_PARAM = SearchParam(
    code="owner",
    type="reference",
    base=tuple(sorted(STAMPED)),
    expression=f"Subscription.extension('{OWNER_URL}').value",
    url="https://infirmary.example.org/fhir/SearchParameter/Subscription-owner",
    name="owner",
    targets=("Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Person"),
)

_STAMP_URLS = (OWNER_URL, ACCESS_URL)


def access_record(policy: AccessPolicy) -> dict[str, Any]:
    """The claims that decide what the writer may read (break-glass is never carried over: it is time-limited)."""
    c = policy.context
    return {"sub": c.subject, "client_id": c.client_id, "kind": c.kind, "scope": c.scopes.text,
            "patient": c.patient, "fhirUser": c.fhir_user, "roles": sorted(c.roles), "break_glass": False}


def owner_of(policy: AccessPolicy) -> str | None:
    """``Type/id`` of whom a write belongs to (None: a system client, or a user without a FHIR identity)."""
    c = policy.context
    if c.kind == "patient":
        own = policy.own_patient
        return f"Patient/{own}" if own else None
    if c.kind == "staff":
        return relative(c.fhir_user) or None
    return None


def stamp(op: WriteOp, policy: AccessPolicy, indexer: Indexer) -> WriteOp:
    """The op with its resource stamped (a copy) and the ``owner`` index entries replaced."""
    if op.resource_type not in STAMPED or op.resource is None or op.method not in ("create", "update"):
        return op
    resource = copy.copy(op.resource)
    extensions = [e for e in resource.get("extension") or () if e.get("url") not in _STAMP_URLS]
    owner = owner_of(policy)
    if owner is not None:
        extensions.append({"url": OWNER_URL, "valueReference": {"reference": owner}})
    extensions.append({"url": ACCESS_URL, "valueString": jsonio.dumps(access_record(policy)).decode()})
    resource["extension"] = extensions
    index = op.index
    if index is not None:
        index = copy.copy(index)
        index.references = [e for e in index.references if e.param != OWNER_PARAM.code]
        index.references = [*index.references, *(e for e in indexer.extract_param(resource, OWNER_PARAM)
                                                 if isinstance(e, ReferenceEntry))]
    return replace(op, resource=resource, index=index)


def recorded_access(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The access stamped on a resource (None: written without authorization)."""
    for extension in resource.get("extension") or ():
        if isinstance(extension, dict) and extension.get("url") == ACCESS_URL:
            value = extension.get("valueString")
            if isinstance(value, str):
                record: dict[str, Any] = jsonio.loads(value)
                return record
    return None

