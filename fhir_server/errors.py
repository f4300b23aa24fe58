"""One exception family for every FHIR error, mapped to an OperationOutcome and an HTTP status in one table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue."""

    severity: str  # fatal | error | warning | information
    code: str  # an IssueType code: invalid, structure, required, value, not-found, conflict, ...
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


class FhirError(Exception):
    """Base of every error the server turns into an OperationOutcome."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "exception"

    def __init__(
        self,
        diagnostics: str,
        *,
        expression: str | tuple[str, ...] | None = None,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        expr: tuple[str, ...] = (expression,) if isinstance(expression, str) else tuple(expression or ())
        self.issues: list[Issue] = issues or [Issue("error", self.code, diagnostics, expr)]
        self.headers: dict[str, str] = headers or {}
        # set by a repository when this error came from one op of a multi-op write: its position in the list
        self.op_index: int | None = None

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [issue.to_json() for issue in issues]}


class InvalidRequest(FhirError):
    """Malformed request: bad JSON, bad parameter, URL/body disagreement (400)."""

    status = 400
    code = "invalid"


class StructureError(FhirError):
    """The body is not structurally valid FHIR (unknown element, wrong type, bad format) (400)."""

    status = 400
    code = "structure"


class ValidationFailed(FhirError):
    """The resource breaks an R4 rule: cardinality, required binding, invariant (422)."""

    status = 422
    code = "processing"


class Unauthorized(FhirError):
    status = 401
    code = "login"


class Forbidden(FhirError):
    status = 403
    code = "forbidden"


class NotFound(FhirError):
    status = 404
    code = "not-found"


class MethodNotAllowed(FhirError):
    status = 405
    code = "not-supported"


class NotAcceptable(FhirError):
    status = 406
    code = "not-supported"


class Conflict(FhirError):
    status = 409
    code = "conflict"


class ConcurrentChange(Conflict):
    """What a write was planned on (a conditional match, a version) changed before it committed; retrying the
    whole plan is safe."""


class Gone(FhirError):
    status = 410
    code = "deleted"


class PreconditionFailed(FhirError):
    """If-Match mismatch, or a conditional interaction that matched more than one resource (412)."""

    status = 412
    code = "conflict"


class UnsupportedMediaType(FhirError):
    status = 415
    code = "not-supported"


class NotSupported(FhirError):
    """A valid FHIR request the server does not implement (501 is reserved; we answer 400 per the spec)."""

    status = 400
    code = "not-supported"


class TooCostly(FhirError):
    status = 400
    code = "too-costly"


class InternalError(FhirError):
    status = 500
    code = "exception"


class ServiceUnavailable(FhirError):
    status = 503
    code = "transient"


def prefixed(error: FhirError, prefix: str) -> FhirError:
    """The same error placed inside a Bundle entry: ``prefix`` is the entry (``Bundle.entry[3]``); an expression
    into the resource (``Patient.name[0]``) becomes ``Bundle.entry[3].resource.name[0]``, a conditional header
    becomes the matching ``request`` element, and an issue without an expression gets the entry itself."""
    issues = []
    for issue in error.issues:
        expression = tuple(_in_entry(prefix, e) for e in issue.expression) or (prefix,)
        issues.append(Issue(issue.severity, issue.code, _named(prefix, issue.diagnostics), expression))
    out = type(error)(_named(prefix, error.diagnostics), issues=issues, headers=error.headers)
    out.op_index = error.op_index
    return out


_REQUEST_ELEMENTS = {
    "If-Match": "request.ifMatch",
    "If-None-Exist": "request.ifNoneExist",
    "If-None-Match": "request.ifNoneMatch",
    "If-Modified-Since": "request.ifModifiedSince",
}


def _named(prefix: str, text: str) -> str:
    return text if text.startswith(prefix) else f"{prefix}: {text}"


def _in_entry(prefix: str, expression: str) -> str:
    if expression.startswith("Bundle."):
        return expression
    if expression in _REQUEST_ELEMENTS:
        return f"{prefix}.{_REQUEST_ELEMENTS[expression]}"
    head, dot, rest = expression.partition(".")
    if head[:1].isupper() and head.replace("[", "").replace("]", "").isalnum():
        return f"{prefix}.resource.{rest}" if dot else f"{prefix}.resource"
    return f"{prefix}.{expression}"


def issues_error(issues: list[Issue]) -> FhirError:
    """The error for a list of validation issues: structural problems answer 400, rule failures 422."""
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if any(i.code in ("structure", "invalid") for i in errors):
        return StructureError(errors[0].diagnostics, issues=issues)
    return ValidationFailed(errors[0].diagnostics if errors else "validation failed", issues=issues)
