"""The channel, opt-out, language and offset rules (fhir_server/workflows/notifications/preferences.py), and the
template catalogue."""

from __future__ import annotations

import time

import pytest

from fhir_server.workflows.notifications import preferences, templates
from fhir_server.workflows.notifications._codes import KINDS, OPT_OUT, REMINDER_OFFSETS
from fhir_server.workflows.notifications.preferences import Route

NOW = time.time()
ALL = {"email", "sms", "in-app"}


def test_best_ranked_usable_contact_point_per_channel_plus_in_app() -> None:
    patient = {"resourceType": "Patient", "telecom": [
        {"system": "email", "value": "old@x.test", "period": {"end": "2001-01-01"}},  # ended
        {"system": "email", "value": "second@x.test", "rank": 2},
        {"system": "email", "value": "first@x.test", "rank": 1},
        {"system": "phone", "value": "+100", "use": "home"},  # a landline: no SMS
        {"system": "phone", "value": "+200", "use": "mobile",
         "extension": [{"url": OPT_OUT, "valueBoolean": True}]},  # this number opted out
        {"system": "sms", "value": "+300", "period": {"start": "2999-01-01"}},  # not yet
        {"system": "phone", "value": "+400", "use": "mobile"},
    ]}
    assert preferences.routes(patient, NOW, ALL) == [Route("email", "first@x.test"), Route("sms", "+400"),
                                                     Route("in-app", None)]
    assert preferences.routes(patient, NOW, {"in-app", "sms"}) == [Route("sms", "+400"), Route("in-app", None)]


def test_an_opted_out_recipient_has_no_route_at_all() -> None:
    patient = {"resourceType": "Patient", "extension": [{"url": OPT_OUT, "valueBoolean": True}],
               "telecom": [{"system": "email", "value": "a@x.test"}]}
    assert preferences.routes(patient, NOW, ALL) == []
    assert preferences.address(patient, "email", NOW) is None


def test_language_preferred_then_first_then_default() -> None:
    def with_languages(*codes: str, preferred: str | None = None) -> dict[str, object]:
        return {"communication": [{"language": {"coding": [{"code": c}]}, **({"preferred": True}
                                                                            if c == preferred else {})}
                                  for c in codes]}

    supported = {"en", "es"}
    assert preferences.language(with_languages("fr", "es-MX", preferred="es-MX"), supported, "en") == "es"
    assert preferences.language(with_languages("es", "en"), supported, "en") == "es"
    assert preferences.language(with_languages("de"), supported, "en") == "en"
    assert preferences.language({}, supported, "en") == "en"


def test_reminder_offsets_hospital_default_and_patient_override() -> None:
    assert preferences.parse_offsets("24h,2h") == [86400, 7200]
    assert preferences.parse_offsets("30m, 2d ,1w") == [604800, 172800, 1800]
    with pytest.raises(ValueError, match="'soon'"):
        preferences.parse_offsets("24h,soon")
    patient = {"extension": [{"url": REMINDER_OFFSETS, "valueString": "48h"}]}
    assert preferences.reminder_offsets(patient, "24h,2h") == [172800]
    assert preferences.reminder_offsets({"extension": [{"url": REMINDER_OFFSETS, "valueString": ""}]},
                                        "24h") == []
    assert preferences.reminder_offsets(None, "24h,2h") == [86400, 7200]


def test_every_language_has_every_template() -> None:
    catalogue = templates.catalogue()
    assert {"en", "es"} <= set(catalogue)
    keys = set(catalogue["en"])
    for language, texts in catalogue.items():
        assert set(texts) == keys, language
    for kind in KINDS:
        assert f"{kind}.patient" in keys
    message = templates.render("appointment-cancelled", "patient", "es",
                               {"patient": "Ana", "practitioner": "Dr. House", "when": "2030-01-01 10:00 (UTC)",
                                "reference": "Appointment/1", "cancel_reason": "huelga"})
    assert message.subject == "Su cita del 2030-01-01 10:00 (UTC) ha sido cancelada"
    assert message.body == ("Hola Ana, su cita con Dr. House el 2030-01-01 10:00 (UTC) ha sido cancelada. "
                            "Motivo: huelga. Referencia: Appointment/1.")
