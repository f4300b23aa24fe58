"""Order building: every supported version/message pair passes hl7apy's structure check; withdrawn pairs and
orders without a code are refused; escaping and identifiers survive."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.settings import LabEndpoint
from hl7_adapters.outbound.builder import OrderBuildError, build_order, ei, validate_structure
from hl7_adapters.v2 import parse_message

SR: dict[str, Any] = {
    "resourceType": "ServiceRequest", "priority": "stat", "authoredOn": "2024-01-05T10:30:00+01:00",
    "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose^fasting"}]},
    "requester": {"reference": "Practitioner/p1", "display": "Dr X"}, "note": [{"text": "a|b"}],
}
PATIENT = {"identifier": [{"system": "urn:oid:1.2.3", "value": "M1"}], "name": [{"family": "Curie"}],
           "birthDate": "1967-11-07", "gender": "female"}
PLACER = {"system": "urn:infirmary:hl7v2:authority:INFIRMARY", "value": "ord-1"}


def _build(message: str, version: str, sr: dict[str, Any] = SR) -> str:
    return build_order(sr, PATIENT, LabEndpoint(host="h", port=1, message=message, version=version),  # type: ignore[arg-type]
                       application="INFIRMARY", facility="HOSP", control_id="c1", placer=PLACER)


@pytest.mark.parametrize(("message", "version"), [
    ("ORM^O01", "2.3"), ("ORM^O01", "2.4"), ("ORM^O01", "2.5.1"), ("ORM^O01", "2.6"),
    ("OML^O21", "2.4"), ("OML^O21", "2.5.1"), ("OML^O21", "2.6"), ("OML^O21", "2.8"),
])
def test_structures_validate(message: str, version: str) -> None:
    er7 = _build(message, version)
    validate_structure(er7)
    msg = parse_message(er7)
    obr = msg.first("OBR")
    assert obr is not None and (msg.version, obr.value(2), obr.value(2, 2)) == (version, "ord-1", "INFIRMARY")
    assert obr.value(4, 2) == "Glucose^fasting"  # escaped on the way out, decoded on the way in
    assert msg.first("PID").value(3, 4, subcomponent=2) == "1.2.3"  # type: ignore[union-attr]
    assert msg.first("NTE").value(3) == "a|b"  # type: ignore[union-attr]


@pytest.mark.parametrize(("message", "version"), [("ORM^O01", "2.7"), ("OML^O21", "2.3")])
def test_withdrawn_pairs_refused(message: str, version: str) -> None:
    with pytest.raises(OrderBuildError, match="configure"):
        _build(message, version)


def test_missing_code_and_broken_structure() -> None:
    with pytest.raises(OrderBuildError, match=r"ServiceRequest\.code"):
        _build("OML^O21", "2.5.1", {**SR, "code": None})
    er7 = _build("OML^O21", "2.5.1").replace("ORC|", "XYZ|")
    with pytest.raises(OrderBuildError):
        validate_structure(er7)


def test_ei_inverts_authority_systems() -> None:
    assert ei({"system": "urn:oid:2.16.840.1", "value": "x"}) == "x^^2.16.840.1^ISO"
    assert ei({"system": "https://lab.example/ids", "value": "y"}) == "y^^https://lab.example/ids^URI"
    assert ei({"value": "z"}) == "z"
