"""The kick-off parameters of a Bulk Data export (FHIR Bulk Data Access 2.0 ``$export``).

They are checked once, at kick-off (an OperationOutcome naming the parameter for anything the server does not
support, unless the client asked for ``Prefer: handling=lenient``), then kept on the job's ``Task`` as
``Task.input`` so that the job itself needs nothing but the Task id.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from fhir_server.errors import InvalidRequest, Issue
from fhir_server.storage._meta import epoch_of, normalise_instant

Level = Literal["system", "patient", "group"]

FHIR_NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = {FHIR_NDJSON, "application/ndjson", "ndjson"}
IGNORED = {"_format", "_pretty"}  # they shape the kick-off response only
# parameters of the specification this server does not implement (yet)
UNSUPPORTED = {"_elements", "includeAssociatedData", "organizeOutputBy", "allowPartialManifests"}

_FILTER_START = re.compile(r",(?=[A-Z][A-Za-z]*\?)")  # a comma that starts the next "Type?query"
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")

# Checks a requested resource type; returns why it cannot be exported, or None.
TypeCheck = Callable[[str], str | None]


@dataclass(frozen=True)
class ExportRequest:
    level: Level
    group_id: str | None = None
    types: tuple[str, ...] = ()  # empty: every type the level covers
    since: str | None = None  # a normalised instant (``2026-01-02T03:04:05.000000Z``)
    type_filters: tuple[str, ...] = ()  # ``Type?query``, as given
    patients: tuple[str, ...] = ()  # Patient ids (``patient`` parameter)
    output_format: str = FHIR_NDJSON

    def since_epoch(self) -> float | None:
        return None if self.since is None else epoch_of(self.since)

    def filters_by_type(self) -> dict[str, list[str]]:
        """``_typeFilter`` query strings per type; types outside ``_type`` (when given) are dropped."""
        out: dict[str, list[str]] = {}
        for item in self.type_filters:
            rtype, _, query = item.partition("?")
            if not self.types or rtype in self.types:
                out.setdefault(rtype, []).append(query)
        return out


def patient_id(reference: str) -> str | None:
    """The id of a Patient reference (``Patient/1``, ``https://host/fhir/Patient/1/_history/2``), else None."""
    match = _PATIENT_REF.search(reference.strip())
    return match.group(1) if match else None


def parameters_body(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (name, value) pairs of a kick-off ``Parameters`` resource (POST)."""
    if body.get("resourceType") != "Parameters":
        raise InvalidRequest("a POST $export takes a Parameters resource", expression="resourceType")
    out: list[tuple[str, str]] = []
    for i, param in enumerate(body.get("parameter") or []):
        where = f"Parameters.parameter[{i}]"
        name = param.get("name") if isinstance(param, Mapping) else None
        if not isinstance(name, str):
            raise InvalidRequest("every parameter needs a name", expression=f"{where}.name")
        values = [(k, v) for k, v in param.items() if k.startswith("value")]
        if len(values) != 1:
            raise InvalidRequest(f"parameter {name!r} needs exactly one value[x]", expression=where)
        key, value = values[0]
        if key == "valueReference" and isinstance(value, Mapping) and isinstance(value.get("reference"), str):
            out.append((name, value["reference"]))
        elif isinstance(value, str):
            out.append((name, value))
        else:
            raise InvalidRequest(f"parameter {name!r} must have a string, instant or Reference value",
                                 expression=f"{where}.{key}")
    return out


def parse_kickoff(
    level: Level,
    group_id: str | None,
    params: Sequence[tuple[str, str]],
    check_type: TypeCheck,
    *,
    lenient: bool,
) -> tuple[ExportRequest, list[Issue]]:
    """Check the kick-off parameters; in lenient mode what is not supported becomes a warning and is ignored."""
    warnings: list[Issue] = []

    def refuse(name: str, message: str) -> None:
        if not lenient:
            raise InvalidRequest(message, expression=name)
        warnings.append(Issue("warning", "not-supported", f"ignored: {message}", (name,)))

    types: list[str] = []
    filters: list[str] = []
    patients: list[str] = []
    since: str | None = None
    output_format = FHIR_NDJSON
    for name, raw in params:
        if name in IGNORED:
            continue
        if name == "_outputFormat":
            output_format = _output_format(raw)
        elif name == "_since":
            since = _instant(raw)
        elif name == "_type":
            for rtype in (t.strip() for t in raw.split(",")):
                problem = check_type(rtype) if rtype else "an empty type"
                if problem is None:
                    types.append(rtype)
                else:
                    refuse("_type", f"_type {rtype!r}: {problem}")
        elif name == "_typeFilter":
            for item in (f.strip() for f in _FILTER_START.split(raw)):
                problem = _filter_problem(item, check_type)
                if problem is None:
                    filters.append(item)
                else:
                    refuse("_typeFilter", problem)
        elif name == "patient":
            if level == "system":
                raise InvalidRequest("patient applies to Patient and Group exports only", expression="patient")
            for ref in (r.strip() for r in raw.split(",")):
                pid = patient_id(ref)
                if pid is None:
                    raise InvalidRequest(f"patient {ref!r} is not a Patient reference", expression="patient")
                patients.append(pid)
        elif name in UNSUPPORTED:
            refuse(name, f"{name} is not supported by this server")
        else:
            refuse(name, f"{name} is not a parameter of $export")
    if any(name == "_type" for name, _ in params) and not types:
        raise InvalidRequest("_type names no type this export can contain", expression="_type")
    request = ExportRequest(level, group_id, tuple(dict.fromkeys(types)), since, tuple(filters),
                            tuple(dict.fromkeys(patients)), output_format)
    return request, warnings


def _output_format(raw: str) -> str:
    value = raw.strip().replace(" ", "+")  # an unencoded "+" in a query string arrives as a space
    if value not in OUTPUT_FORMATS:
        raise InvalidRequest(
            f"_outputFormat {raw!r} is not supported; use application/fhir+ndjson", expression="_outputFormat"
        )
    return value


def _instant(raw: str) -> str:
    try:
        moment = datetime.fromisoformat(raw.strip().replace(" ", "+"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in raw:
        raise InvalidRequest(
            f"_since {raw!r} is not a FHIR instant (such as 2026-01-31T12:00:00Z)", expression="_since"
        )
    return normalise_instant(moment)


def _filter_problem(item: str, check_type: TypeCheck) -> str | None:
    rtype, sep, _ = item.partition("?")
    if not sep or not rtype:
        return f"_typeFilter {item!r} is not of the form Type?search"
    problem = check_type(rtype)
    return None if problem is None else f"_typeFilter {item!r}: {problem}"


# -- Task.input --------------------------------------------------------------------------------------------------


def _input(name: str, key: str, value: Any) -> dict[str, Any]:
    return {"type": {"text": name}, key: value}


def task_inputs(request: ExportRequest) -> list[dict[str, Any]]:
    """The request as ``Task.input`` entries (read back by :func:`from_task_inputs`)."""
    out = [_input("level", "valueCode", request.level), _input("_outputFormat", "valueString", request.output_format)]
    if request.group_id is not None:
        out.append(_input("group", "valueReference", {"reference": f"Group/{request.group_id}"}))
    if request.types:
        out.append(_input("_type", "valueString", ",".join(request.types)))
    if request.since is not None:
        out.append(_input("_since", "valueInstant", request.since))
    out.extend(_input("_typeFilter", "valueString", f) for f in request.type_filters)
    out.extend(_input("patient", "valueReference", {"reference": f"Patient/{p}"}) for p in request.patients)
    return out


def from_task_inputs(inputs: Sequence[Mapping[str, Any]]) -> ExportRequest:
    values: dict[str, list[Any]] = {}
    for item in inputs:
        name = (item.get("type") or {}).get("text")
        value = next((v for k, v in item.items() if k.startswith("value")), None)
        if isinstance(name, str):
            values.setdefault(name, []).append(value)

    def one(name: str) -> Any:
        found = values.get(name)
        return found[0] if found else None

    level: Level = one("level")
    group = one("group")
    types = one("_type")
    return ExportRequest(
        level=level,
        group_id=group["reference"].split("/", 1)[1] if group else None,
        types=tuple(types.split(",")) if types else (),
        since=one("_since"),
        type_filters=tuple(values.get("_typeFilter", [])),
        patients=tuple(p["reference"].split("/", 1)[1] for p in values.get("patient", [])),
        output_format=one("_outputFormat") or FHIR_NDJSON,
    )
