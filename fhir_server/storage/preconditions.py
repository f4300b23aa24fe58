"""The rules of conditional interactions and version checks, written once for every backend.

A backend finds the matches and the current version inside its transaction and asks these functions what to do;
they either answer or raise the FHIR error the spec prescribes.
"""

from __future__ import annotations

from fhir_server.errors import ConcurrentChange, FhirError, InvalidRequest, PreconditionFailed
from fhir_server.storage.base import StoredVersion, WriteOp


def create_target(op: WriteOp, matches: list[str]) -> str | None:
    """For a conditional create: the id of the single existing match (nothing is written), or None to create.

    Several matches → 412 (R4 http.html#ccreate).
    """
    if op.if_none_exist is None or not matches:
        return None
    if len(matches) > 1:
        raise PreconditionFailed(
            f"If-None-Exist criteria {op.if_none_exist.describe()} matched {len(matches)} resources",
            expression="If-None-Exist",
        )
    return matches[0]


def update_target(op: WriteOp, matches: list[str]) -> str:
    """For a conditional update: the id to update (or to create with).

    No match: create, with the id from the body if there is one (update as create) or a new server id.
    One match: update it; a body id that differs from the match is an error (400).
    Several matches → 412 (R4 http.html#cond-update).
    """
    assert op.match is not None
    body_id = (op.resource or {}).get("id")
    if len(matches) > 1:
        raise PreconditionFailed(
            f"conditional update criteria {op.match.describe()} matched {len(matches)} resources"
        )
    if matches:
        if body_id is not None and body_id != matches[0]:
            raise InvalidRequest(
                f"the resource id {body_id!r} differs from the id {matches[0]!r} of the resource matched by "
                f"{op.match.describe()}",
                expression=f"{op.resource_type}.id",
            )
        return matches[0]
    if isinstance(body_id, str):
        return body_id
    assert op.create_id is not None
    return op.create_id


def delete_target(op: WriteOp, matches: list[str]) -> str | None:
    """For a conditional delete (single mode): the id to delete, None when nothing matched; several → 412."""
    assert op.match is not None
    if len(matches) > 1:
        raise PreconditionFailed(
            f"conditional delete criteria {op.match.describe()} matched {len(matches)} resources; "
            "this server deletes one resource per conditional delete"
        )
    return matches[0] if matches else None


def check_version(op: WriteOp, current: StoredVersion | None) -> None:
    """If-Match: the update applies only to the expected current version (412 otherwise)."""
    if op.if_match is None:
        return
    if current is None or current.deleted:
        raise PreconditionFailed(
            f"If-Match W/\"{op.if_match}\" given but {op.resource_type}/{op.id} has no current version",
            expression="If-Match",
        )
    if current.version != op.if_match:
        raise PreconditionFailed(
            f"If-Match W/\"{op.if_match}\" does not match the current version {current.version} of "
            f"{op.resource_type}/{current.id}",
            expression="If-Match",
        )


def check_expected(op: WriteOp, resolved: str | None) -> None:
    """For an op resolved before it was planned: the backend's own resolution must agree (see ``WriteOp``)."""
    if op.expect_resolved and resolved != op.expect_id:
        raise ConcurrentChange(
            f"{op.resource_type}: the target of a conditional {op.method} changed while the request was processed "
            f"(planned on {op.expect_id or 'no match'}, now {resolved or 'no match'}); retry"
        )


def check_expected_version(op: WriteOp, current: StoredVersion | None) -> None:
    """For an op planned on one version (``if_match`` with ``expect_resolved``): a newer one is a concurrent change."""
    if not op.expect_resolved or op.if_match is None:
        return
    if current is None or current.deleted or current.version != op.if_match:
        raise ConcurrentChange(
            f"{op.resource_type}/{op.id} changed while the request was processed (planned on version "
            f"{op.if_match}); retry"
        )


def mark_failed(error: FhirError, index: int) -> FhirError:
    """Record which op of a multi-op write failed (for the Bundle entry in the error)."""
    if error.op_index is None:
        error.op_index = index
    return error
