"""Orders received (ORM^O01, OML^O21): each order group → ServiceRequest (conditional update by placer number,
else filler number), its SPM → Specimen, its DG1 → reasonCode; the patient matched by identifier (created from PID
only when unknown) and the IN1 insurance → Coverage."""

from __future__ import annotations

from typing import Any

from hl7_adapters.mappings._bundle import Builder, ref
from hl7_adapters.mappings._clinical import coverages
from hl7_adapters.mappings._errors import MappingError
from hl7_adapters.mappings._orders import (
    order_groups,
    order_numbers,
    order_status,
    require_numbers,
    require_orders,
    service_request,
    specimen,
)
from hl7_adapters.mappings._patient import patient_entry
from hl7_adapters.v2.message import Message

LAB_CATEGORY = {"coding": [{"system": "http://snomed.info/sct", "code": "108252007",
                            "display": "Laboratory procedure"}]}


def orders_bundle(msg: Message, *, lab: bool) -> dict[str, Any]:
    b = Builder(msg)
    patient = patient_entry(b, update=False)
    coverages(b, patient)
    body = [s for s in msg.segments if s.name not in ("MSH", "SFT", "PID", "PD1", "NK1", "PV1", "PV2", "IN1",
                                                      "IN2", "IN3", "GT1", "AL1")]
    groups, _ = order_groups(body)
    require_orders(groups, b)
    for group in groups:
        if group.obr is None:
            seg = group.anchor
            raise MappingError("OBR", -1, None, f"the order at ORC segment {seg.index + 1} has no OBR: only "
                               "observation requests (OBR) are mapped to ServiceRequest")
        numbers = order_numbers(group, b.application_system, b.receiver_system)
        require_numbers(numbers, group)
        query = numbers.match_query()
        assert query is not None
        request = service_request(group, b, patient, numbers, order_status(group))
        if lab:
            request.setdefault("category", []).insert(0, LAB_CATEGORY)
        key = f"ServiceRequest|{numbers.key}"
        url = b.full_url(key)
        specimens = [specimen(s, b, patient, url, numbers.key) for s in group.specimens]
        if specimens:
            request["specimen"] = [ref(u) for u in specimens]
        b.put(request, numbers.identifiers()[0], key, query=query)
    return b.bundle()
