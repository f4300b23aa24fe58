"""The audit decision of the common request, from its path alone.

:func:`fhir_server.auth.audit.audited` decides whether a request leaves AuditEvents by classifying it (its FHIR
interaction) first.  Most requests are a type or instance level interaction on one type — ``Patient/123``,
``Practitioner``, ``Observation/_search`` — whose answer follows from the type, the status and what was touched,
without classifying.  :func:`audited_fast` gives that answer, and ``None`` for every other request (operations,
history, compartments, system level, the audit trail itself), which the caller then asks ``audited``.
tests/auth/test_audit_decision.py checks that both agree on every request the fast answer covers.
"""

from __future__ import annotations

from fhir_server.auth.guard import AUDIT_TYPE, AccessRecord


def audited_fast(record: AccessRecord, path: str, status: int, linked_types: frozenset[str]) -> bool | None:
    """Whether a request under /fhir (``path`` without the leading slash) leaves any AuditEvent; ``None`` when
    the path is not ``Type`` or ``Type/x`` (the full rules decide)."""
    slash = path.find("/")
    rtype = path if slash < 0 else path[:slash]
    if not rtype[:1].isupper() or rtype == AUDIT_TYPE or "$" in path or (slash >= 0 and "/" in path[slash + 1:]):
        return None
    if status == 401 or status == 403 or rtype in linked_types:
        return True
    for touch in record.touched:  # a shared type: only patient data touched on the way (or refused) is audited
        if touch.resource_type != AUDIT_TYPE and (touch.patients or touch.denied):
            return True
    return False
