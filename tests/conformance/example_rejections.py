"""The official R4 examples that genuinely violate R4, each with one issue expression the server must report.

``REJECTIONS[file name] = (expression, reason)``.  Every other file of ``hl7.fhir.r4.examples-4.0.1.tgz`` must
be accepted.  Each entry was checked by reading the example against the R4 definitions: it is an error in the
example, not a gap in the validator.
"""

from __future__ import annotations

_BASE = (
    "SearchParameter.base is 1..* but this extension search parameter (published experimental) has no base."
)
_IG = (
    "ImplementationGuide.name and .status are 1..1 but absent from this rendering of the core specification's IG, "
    "whose manifest also references a SearchParameter id of 67 characters (R4 ids allow at most 64)."
)

REJECTIONS: dict[str, tuple[str, str]] = {
    "DeviceMetric-example.json": (
        "DeviceMetric.parent.reference",
        "DeviceMetric.parent is Reference(Device) but the example points to DeviceDefinition/dc102.",
    ),
    "DeviceUseStatement-example.json": (
        "DeviceUseStatement.reasonReference[0].reference",
        "reasonReference allows Condition, Observation, DiagnosticReport, DocumentReference and Media, "
        "not the example's Procedure/example.",
    ),
    "ImplementationGuide-fhir.json": ("ImplementationGuide.name", _IG),
    "ig-r4.json": ("ImplementationGuide.name", _IG),
    "MedicationRequest-medrx0301.json": (
        "MedicationRequest.dispenseRequest.performer.reference",
        "dispenseRequest.performer is Reference(Organization) but the example points to a Practitioner.",
    ),
    "Observation-clinical-gender.json": (
        "Observation.performer[0].reference",
        "Observation.performer cannot reference an Encounter (Encounter/example).",
    ),
    "Questionnaire-qs1.json": (
        "Questionnaire.item[0].item[0].linkId",
        "32 nested items have no linkId, which is 1..1 on every Questionnaire.item.",
    ),
    "SearchParameter-codesystem-extensions-CodeSystem-author.json": ("SearchParameter.base", _BASE),
    "SearchParameter-codesystem-extensions-CodeSystem-effective.json": ("SearchParameter.base", _BASE),
    "SearchParameter-codesystem-extensions-CodeSystem-end.json": ("SearchParameter.base", _BASE),
    "SearchParameter-codesystem-extensions-CodeSystem-keyword.json": ("SearchParameter.base", _BASE),
    "SearchParameter-codesystem-extensions-CodeSystem-workflow.json": ("SearchParameter.base", _BASE),
    "SearchParameter-valueset-extensions-ValueSet-author.json": ("SearchParameter.base", _BASE),
    "SearchParameter-valueset-extensions-ValueSet-effective.json": ("SearchParameter.base", _BASE),
    "SearchParameter-valueset-extensions-ValueSet-end.json": ("SearchParameter.base", _BASE),
    "SearchParameter-valueset-extensions-ValueSet-keyword.json": ("SearchParameter.base", _BASE),
    "SearchParameter-valueset-extensions-ValueSet-workflow.json": ("SearchParameter.base", _BASE),
    "SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json": (
        "SearchParameter.id",
        "The id questionnaireresponse-extensions-QuestionnaireResponse-item-subject has 67 characters; "
        "an R4 id has at most 64.",
    ),
}
