"""Validator speed: the whole R4 example corpus, and one typical Patient.

Loads every example of ``hl7.fhir.r4.examples-4.0.1.tgz`` (parsed once, outside the timing), validates the corpus
several times and prints resources per second, then the time per Patient: the corpus's Patient examples and a
typical registration Patient (~30 elements).  Best of several runs, one core.

    python bench/validate_speed.py [--examples ../shared/fhir/hl7.fhir.r4.examples-4.0.1.tgz] [--repeat 5]
"""

from __future__ import annotations

import argparse
import tarfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhir_server import jsonio
from fhir_server.definitions import load_definitions
from fhir_server.services.validate import Validator

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EXAMPLES = ROOT.parent / "shared" / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz"

TYPICAL_PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p-0001",
    "meta": {"profile": ["http://example.org/fhir/StructureDefinition/hospital-patient"]},
    "identifier": [{"use": "usual", "system": "https://infirmary.example.org/mrn", "value": "MRN-0001"}],
    "active": True,
    "name": [{"use": "official", "family": "Okafor", "given": ["Chioma", "Ada"]}],
    "telecom": [
        {"system": "phone", "value": "+1-555-0101", "use": "home"},
        {"system": "email", "value": "chioma@example.org"},
    ],
    "gender": "female",
    "birthDate": "1984-03-12",
    "address": [
        {"use": "home", "line": ["1 Main St"], "city": "Springfield", "postalCode": "01101", "country": "US"}
    ],
    "maritalStatus": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]
    },
    "communication": [
        {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en"}]}, "preferred": True}
    ],
    "managingOrganization": {"reference": "Organization/infirmary"},
}


def load_examples(path: Path) -> list[tuple[str, Any]]:
    examples = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or not name.endswith(".json") or name in ("package.json", ".index.json"):
                continue
            stream = tar.extractfile(member)
            assert stream is not None
            examples.append((name, jsonio.loads(stream.read())))
    return examples


def best_seconds(action: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(action, number=number, repeat=repeat)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--examples", type=Path, default=DEFAULT_EXAMPLES)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    started = time.perf_counter()
    validator = Validator(load_definitions())
    print(f"definitions loaded and validator built in {(time.perf_counter() - started) * 1000:.0f} ms")

    resources = [resource for _, resource in load_examples(args.examples)]
    corpus = best_seconds(lambda: [validator.validate(r) for r in resources], 1, args.repeat)
    print(
        f"R4 example corpus: {len(resources)} resources in {corpus:.2f} s = {len(resources) / corpus:,.0f} "
        "resources/s (Bundles of definitions included)"
    )

    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    per_patient = best_seconds(lambda: [validator.validate(p) for p in patients], 200, args.repeat) / len(
        patients
    )
    print(f"corpus Patients: {len(patients)} examples, {per_patient * 1e6:.1f} µs per Patient")

    typical = best_seconds(lambda: validator.validate(TYPICAL_PATIENT), 5000, args.repeat)
    assert validator.validate(TYPICAL_PATIENT) == []
    print(f"typical Patient (~30 elements): {typical * 1e6:.1f} µs = {1 / typical:,.0f} validations/s")


if __name__ == "__main__":
    main()
