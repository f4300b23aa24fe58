"""The rules of conditional interactions and version checks, written once for every backend.

A backend finds the matches and the current version inside its transaction and asks these functions what to do;
they either answer or raise the FHIR error the spec prescribes.
"""

from __future__ import annotations

from fhir_server.errors import InvalidRequest, PreconditionFailed
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
