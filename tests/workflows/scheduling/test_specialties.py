"""The specialties are coded with concepts of the official R4 value set c80-practice-codes."""

from __future__ import annotations

import json
import tarfile

import pytest

from fhir_server.workflows.scheduling.specialties import SNOMED, SPECIALTIES, healthcare_services
from tests.conftest_shared import shared_dir


def test_specialty_codes_are_in_the_r4_practice_setting_value_set() -> None:
    shared = shared_dir()
    if shared is None or not (shared / "fhir" / "hl7.fhir.r4.core-4.0.1.tgz").is_file():
        pytest.skip("../shared/fhir/hl7.fhir.r4.core-4.0.1.tgz is not available")
    with tarfile.open(shared / "fhir" / "hl7.fhir.r4.core-4.0.1.tgz") as package:
        member = package.extractfile("package/ValueSet-c80-practice-codes.json")
        assert member is not None
        valueset = json.load(member)
    (include,) = valueset["compose"]["include"]
    assert include["system"] == SNOMED
    official = {c["code"]: c["display"] for c in include["concept"]}
    for _, code, display, _ in SPECIALTIES:
        assert official.get(code) == display, code
    services = healthcare_services()
    assert len({s["id"] for s in services}) == len(SPECIALTIES)
    assert all(s["specialty"][0]["coding"][0]["code"] in official for s in services)
