"""Hand-written search cases over the official R4 example corpus (hl7.fhir.r4.examples-4.0.1), as data.

Every expected answer was worked out by reading the example files and the R4 search page
(https://hl7.org/fhir/R4/search.html) with the R4 SearchParameter definitions (``code``, ``base``, ``type``,
``expression``) — never by running the server.  ``why`` says which example elements make the ids match.

A case is a request (``Type?query``, ``?query`` for the system level, ``Patient/x/Type?query`` for a compartment)
and its expected matches (``search.mode = match``), optionally the expected included resources and the expected
order of the matches.  Query values are written unencoded; the runner URL-encodes them.  ``{load_start}`` and
``{load_end}`` stand for instants just before and just after the corpus was loaded (second precision, UTC).

Not in the store (refused as invalid R4, see ``example_rejections.py``): Observation/clinical-gender,
MedicationRequest/medrx0301, DeviceMetric/example, DeviceUseStatement/example, Questionnaire/qs1, two
ImplementationGuides and 11 SearchParameters.  Resources inside Bundle examples and ``contained`` resources are not
stored on their own, and references to resources absent from the corpus (e.g. ``Patient/1``) include nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Every:
    """Every stored resource of a type, minus some ids: for broad answers such as ``:not`` or ``ne``."""

    resource_type: str
    minus: str = ""  # space-separated ids

    def resolve(self, store: dict[str, set[str]]) -> set[str]:
        minus = set(self.minus.split())
        missing = minus - store.get(self.resource_type, set())
        assert not missing, f"Every({self.resource_type}) excludes ids not in the store: {missing}"
        return {f"{self.resource_type}/{i}" for i in store.get(self.resource_type, set()) - minus}


Expected = frozenset[str] | Every


@dataclass(frozen=True)
class Case:
    query: str
    matches: Expected
    why: str
    included: frozenset[str] | None = None  # None: the query has no _include/_revinclude
    order: tuple[str, ...] | None = None  # the exact order of the matches (sorted queries)
    method: str = "GET"  # "POST": the query goes as a form body to [base]/Type/_search
    xfail: str | None = None  # a server bug, described precisely (strict xfail)


def ids(rtype: str, names: str) -> frozenset[str]:
    """``ids("Patient", "pat1 pat2")`` -> {"Patient/pat1", "Patient/pat2"}."""
    return frozenset(f"{rtype}/{n}" for n in names.split())


def seq(rtype: str, names: str) -> tuple[str, ...]:
    return tuple(f"{rtype}/{n}" for n in names.split())


NONE: frozenset[str] = frozenset()


def _cases(*cases: Case) -> list[Case]:
    return list(cases)


# Observation groups used more than once ---------------------------------------------------------------------------

# effectiveDateTime 1999-07-02, subject Patient/example
VITALS_1999 = "bmi bmi-using-related body-height body-length body-temperature head-circumference heart-rate mbp " \
    "respiratory-rate vitals-panel"
# Observations without any effective[x] (the `date` parameter is Observation.effective)
NO_EFFECTIVE = "bmd decimal example-TPMT-diplotype example-TPMT-haplotype-one example-TPMT-haplotype-two " \
    "example-diplotype1 example-genetics-1 example-genetics-2 example-genetics-3 example-genetics-4 " \
    "example-genetics-5 example-genetics-brcapat example-haplotype1 example-haplotype2 example-phenotype f202 " \
    "f203 f204 f205 f206"
# subject Patient/f001
OBS_F001 = "f001 f002 f003 f004 f005 ekg unsat"
# subject Patient/f201
OBS_F201 = "f202 f203 f204 f205 f206"
# subject Patient/example (Observation/clinical-gender is not stored)
OBS_EXAMPLE = "abdo-tender alcohol-type blood-pressure blood-pressure-cancel blood-pressure-dar bmi " \
    "bmi-using-related body-height body-length body-temperature example example-TPMT-diplotype " \
    "example-TPMT-haplotype-one example-TPMT-haplotype-two example-genetics-1 example-genetics-2 example-genetics-3 " \
    "example-genetics-4 example-genetics-5 eye-color gcs-qa glasgow head-circumference heart-rate map-sitting mbp " \
    "respiratory-rate satO2 vitals-panel"
# performer Practitioner/f005
OBS_BY_F005 = "ekg f001 f002 f003 f004 f005 unsat vp-oyster"
# code in ValueSet/observation-vitalsignresult (LOINC 85353-1 9279-1 8867-4 2708-6 8310-5 8302-2 9843-4 29463-7
# 39156-5 85354-9 8480-6 8462-4 8478-0)
VITAL_SIGN_CODES = "vitals-panel respiratory-rate heart-rate satO2 body-temperature f202 body-height body-length " \
    "head-circumference example bmi bmi-using-related blood-pressure blood-pressure-cancel blood-pressure-dar " \
    "map-sitting mbp"
# category vital-signs and subject Patient/example, by -date then _id
VITALS_EXAMPLE_DESC = "example satO2 blood-pressure blood-pressure-cancel blood-pressure-dar bmi bmi-using-related " \
    "body-height body-length body-temperature head-circumference heart-rate mbp respiratory-rate vitals-panel"



STRING = _cases(
    Case("Patient?name=peter", ids("Patient", "example"),
         "HumanName search covers given: Patient/example has given 'Peter' (default match is starts-with, any case); "
         "the Apgar Observations' contained Patient 'Peter James Chalmers' is not a stored Patient"),
    Case("Patient?name=PETER", ids("Patient", "example"), "string matching ignores case"),
    Case("Patient?given=jim", ids("Patient", "example"), "Patient/example's usual name has given 'Jim'"),
    Case("Patient?family=donald", ids("Patient", "pat1 pat2"),
         "pat1 and pat2 both have family 'Donald' (Claim/100152's contained Patient 'Donald' is not stored)"),
    Case("Patient?family=ashcraft", NONE, "'Ashcraft' is only a Patient contained in Claim/MED-00050"),
    Case("Practitioner?family=midwife", NONE, "'Midwife' is only a Practitioner contained in CarePlan/preg"),
    Case("Patient?name:contains=ETE", ids("Patient", "example f001"), "'Peter' and 'Pieter' contain 'ete'"),
    Case("Patient?family=van", ids("Patient", "f001"), "family 'van de Heuvel' starts with 'van'"),
    Case("Patient?family=heuvel", NONE,
         "'Heuvel' is inside 'van de Heuvel', not at its start: the default is starts-with, not contains"),
    Case("Patient?family:contains=heuvel", ids("Patient", "f001"), ":contains matches anywhere in the value"),
    Case("Patient?family:exact=Donald", ids("Patient", "pat1 pat2"), ":exact, same case, whole value"),
    Case("Patient?family:exact=donald", NONE, ":exact is case-sensitive: the value is 'Donald'"),
    Case("Patient?family:exact=Don", NONE, ":exact needs the whole value, not a prefix"),
    Case("Patient?given:exact=Peter", ids("Patient", "example"),
         ":exact against one HumanName part (given 'Peter')"),
    Case("Patient?name=roel", ids("Patient", "f201"), "f201: given 'Roelof Olaf', name.text 'Roel'"),
    Case("Patient?name=张无忌", ids("Patient", "ch-example"), "name.text '张无忌' (non-Latin script)"),
    Case("Patient?address=534", ids("Patient", "example"), "address.line '534 Erewhon St'"),
    Case("Patient?address=amsterdam", ids("Patient", "f001 f201"), "address.city 'Amsterdam'"),
    Case("Patient?address:contains=egmond", ids("Patient", "f001"), "address.line 'Van Egmondkade 23'"),
    Case("Patient?address-postalcode=1024", ids("Patient", "f001"), "postalCode '1024 RJ'"),
    Case("Patient?address-state=vic", ids("Patient", "example"), "state 'Vic'"),
    Case("Patient?address:missing=false", ids("Patient", "ch-example example f001 f201 genetics-example1 mom xds"),
         "the seven Patients that have an address"),
    Case("Patient?name:missing=true", ids("Patient", "infant-fetal newborn proband"), "no name at all"),
    Case("Patient?family:missing=true",
         ids("Patient", "animal ch-example infant-fetal newborn proband"),
         "no name.family: animal (given only), ch-example (text only) and the three without a name"),
    Case("RelatedPerson?name=benedicte", ids("RelatedPerson", "benedicte"),
         "given 'Bénédicte': matching ignores accents"),
    Case("RelatedPerson?name=du marche", ids("RelatedPerson", "benedicte"), "family 'du Marché'"),
    Case("RelatedPerson?name=BÉNÉDICTE", ids("RelatedPerson", "benedicte"), "case folding beyond ASCII"),
    Case("RelatedPerson?name=Be\u0301ne\u0301dicte", ids("RelatedPerson", "benedicte"),
         "the query spells é as e + combining acute (NFD); accents are ignored either way"),
    Case("RelatedPerson?name:exact=Bénédicte", ids("RelatedPerson", "benedicte"), ":exact with the accents"),
    Case("RelatedPerson?name:exact=Benedicte", NONE, ":exact is accent-sensitive"),
    Case("Practitioner?name=dr", ids("Practitioner", "example f201 f202"),
         "HumanName.prefix 'Dr' (example) and 'Dr.' (f201, f202)"),
    Case("Practitioner?address-city=den", ids("Practitioner", "f001 f002 f006 f007 f201 f202 f203 f204"),
         "city 'Den Burg' (f001 f002 f006 f007) and 'Den helder' (f201-f204)"),
    Case("Practitioner?address-city:exact=Den Helder", NONE,
         "the Practitioners' city is spelled 'Den helder' (lower-case h); :exact is case-sensitive"),
    Case("Organization?address-city:exact=Den Helder", ids("Organization", "f201"),
         "Organization/f201's city is 'Den Helder'"),
    Case("Organization?name=burgers", ids("Organization", "f001 f002 f003"), "names starting 'Burgers'"),
    Case("Organization?name:contains=umc", ids("Organization", "f002 f003 f201 f203"),
         "'Burgers UMC …' (f002, f003), '… (AUMC)' (f201), '… (BUMC)' (f203)"),
    Case("Library?title:contains=#4",
         ids("Library", "opioidcds-recommendation-04 opioidcds-recommendation-08"),
         "both titles end 'recommendation #4' (the -08 example reuses the -04 title)"),
    Case("Observation?value-string=mother", ids("Observation", "trachcare"),
         "valueString 'Mother is trained to change …'"),
    Case("Condition?onset-info=approximately", ids("Condition", "example2"),
         "onsetString 'approximately November 2012'"),
    Case("Condition?abatement-string=around", ids("Condition", "f201"), "abatementString 'around April 9, 2013'"),
)

TOKEN = _cases(
    Case("Patient?gender=female",
         ids("Patient", "animal genetics-example1 infant-mom infant-twin-1 mom pat4 proband"), "gender 'female'"),
    Case("Patient?gender:not=male",
         ids("Patient", "animal genetics-example1 infant-mom infant-twin-1 mom pat4 proband pat2 ihe-pcd"),
         ":not includes other values (pat2 'other') and resources without a value (ihe-pcd)"),
    Case("Patient?gender:missing=true", ids("Patient", "ihe-pcd"), "the only Patient without gender"),
    Case("Patient?active:missing=true",
         ids("Patient", "infant-fetal infant-mom infant-twin-1 infant-twin-2 newborn"), "no Patient.active"),
    Case("Patient?active:not=true",
         ids("Patient", "infant-fetal infant-mom infant-twin-1 infant-twin-2 newborn"),
         "every other Patient is active=true; :not keeps the ones without a value"),
    Case("Patient?deceased=true", ids("Patient", "pat3 pat4"),
         "expression 'deceased.exists() and deceased != false': deceasedDateTime (pat3), deceasedBoolean true (pat4)"),
    Case("Patient?deceased=false", Every("Patient", "pat3 pat4"),
         "the same expression is false for deceasedBoolean false and for no deceased[x] at all"),
    Case("Patient?identifier=12345", ids("Patient", "example xcda"),
         "an identifier value '12345' in any system (urn:oid:1.2.36.146.595.217.0.1, urn:oid:2.16.840.1.113883.19.5)"),
    Case("Patient?identifier=urn:oid:1.2.36.146.595.217.0.1|12345", ids("Patient", "example"), "system|value"),
    Case("Patient?identifier=123456", ids("Patient", "glossy pat2"),
         "value '123456' exactly; f201's '123456789' is not a token match"),
    Case("Patient?identifier=urn:oid:0.1.2.3.4.5.6.7|", ids("Patient", "pat1 pat2 pat3 pat4"),
         "system| : any value in that identifier system"),
    Case("Patient?identifier=|AB60001", ids("Patient", "ihe-pcd"), "|value : an identifier with no system"),
    Case("Encounter?identifier=|Encounter_Roel_20130404", ids("Encounter", "f201"),
         "|value : Encounter/f201's identifier has no system"),
    Case("Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345",
         ids("Patient", "example xcda"), ":of-type type-system|type-code|value"),
    Case("Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|SS|444222222",
         ids("Patient", "genetics-example1 mom"), "US SSN typed SS"),
    Case("Patient?identifier:text=BSN", ids("Patient", "f201"), ":text searches Identifier.type.text 'BSN'"),
    Case("Patient?identifier:missing=true", ids("Patient", "infant-mom newborn"), "no identifier"),
    Case("Patient?telecom=0648352638", ids("Patient", "f001"), "ContactPoint.value"),
    Case("Patient?phone=(03) 5555 6473", ids("Patient", "example"), "work phone of Patient/example"),
    Case("Patient?email=p.heuvel@gmail.com", ids("Patient", "f001"), "email ContactPoint"),
    Case("Patient?language=nl", ids("Patient", "f001"), "communication.language urn:ietf:bcp:47 'nl' (f201 is 'nl-NL')"),
    Case("Patient?address-use=home", ids("Patient", "ch-example example f001 f201 genetics-example1 mom"),
         "Address.use 'home'"),
    Case("Observation?code=http://loinc.org|8310-5", ids("Observation", "body-temperature f202"),
         "LOINC 8310-5 body temperature (f202 has it as its second coding)"),
    Case("Observation?code=8310-5", ids("Observation", "body-temperature f202"), "code without system"),
    Case("Observation?code:not=http://loinc.org|8310-5", Every("Observation", "body-temperature f202"),
         ":not keeps every other Observation, including ones without a coded code"),
    Case("Observation?code=http://loinc.org|15074-8,http://loinc.org|718-7", ids("Observation", "f001 unsat f005"),
         "OR: glucose (f001, unsat) or hemoglobin (f005)"),
    Case("Observation?code:text=glasgow", ids("Observation", "gcs-qa glasgow"),
         ":text on code.text 'Glasgow Coma Scale , (GCS)' / display 'Glasgow coma score total'"),
    Case("Observation?code:text=body temperature", ids("Observation", "body-temperature f202"),
         ":text on display 'Body temperature'"),
    Case("Observation?code:in=http://hl7.org/fhir/ValueSet/observation-vitalsignresult",
         ids("Observation", VITAL_SIGN_CODES),
         ":in the corpus ValueSet's 13 LOINC codes (8480-6/8462-4 only occur in components, not in code)"),
    Case("Observation?code:not-in=http://hl7.org/fhir/ValueSet/observation-vitalsignresult",
         Every("Observation", VITAL_SIGN_CODES),
         ":not-in is the complement of :in"),
    Case("Observation?category=vital-signs",
         ids("Observation", "blood-pressure blood-pressure-cancel blood-pressure-dar bmi bmi-using-related "
             "body-height body-length body-temperature example f202 head-circumference heart-rate mbp "
             "respiratory-rate satO2 vitals-panel"), "category vital-signs"),
    Case("Condition?code:text=psoriasis", NONE, "only in a Condition contained in CarePlan/integrate"),
    Case("Observation?status=cancelled", ids("Observation", "blood-pressure-cancel unsat"), "status code"),
    Case("Observation?value-concept=http://snomed.info/sct|10828004",
         ids("Observation", "example-genetics-1 example-genetics-2 vp-oyster"), "valueCodeableConcept 'Positive'"),
    Case("Encounter?class=AMB", ids("Encounter", "f001 f002 f003 f201 f202 xcda"), "class is a Coding"),
    Case("Encounter?class=http://terminology.hl7.org/CodeSystem/v3-ActCode|IMP",
         ids("Encounter", "emerg example f203"), "class v3-ActCode IMP"),
    Case("Encounter?class:not=AMB", ids("Encounter", "emerg example f203 home"), "IMP and HH encounters"),
    Case("Condition?clinical-status=resolved", ids("Condition", "f201 f202"), "clinicalStatus resolved"),
    Case("Condition?verification-status=differential", ids("Condition", "f204 f205"), "verificationStatus"),
    Case("Condition?severity=24484000", ids("Condition", "example f002 f202 f204"), "severity Severe"),
    Case("AllergyIntolerance?criticality=high", ids("AllergyIntolerance", "example medication"), "criticality"),
    Case("Immunization?status:not=completed", ids("Immunization", "notGiven"), "only notGiven is not-done"),
    Case("Immunization?lot-number=AAJN11K", ids("Immunization", "example subpotent"), "lotNumber token"),
    Case("Medication?code=http://snomed.info/sct|",
         ids("Medication", "med0310 med0311 med0312 med0313 med0316 med0320 med0321"), "any SNOMED CT code"),
    Case("Medication?code:text=Nystatin 100\\,000", ids("Medication", "med0312"),
         "display 'Nystatin 100,000 units/ml …': the comma is escaped as \\, so it is not an OR"),
    Case("Medication?lot-number=9494788",
         ids("Medication", "med0301 med0303 med0304 med0305 med0309 medexample015"), "batch.lotNumber"),
    Case("MedicationRequest?code=884308", ids("MedicationRequest", "medrx0325 medrx0334 medrx0335"),
         "medicationCodeableConcept RxNorm 884308"),
    Case("MedicationRequest?status=active,on-hold&code=http://www.nlm.nih.gov/research/umls/rxnorm|",
         ids("MedicationRequest", "medrx0312 medrx0325 medrx0326 medrx0334 medrx0335"),
         "OR within status AND any RxNorm medicationCodeableConcept (medrx0320 is completed)"),
    Case("Organization?identifier=urn:oid:2.16.840.1.113883.2.4.6.1|17-0112278", ids("Organization", "f001"),
         "second identifier of f001"),
    Case("Organization?type=prov", ids("Organization", "f001 f201 f203"), "type code 'prov'"),
    Case("Library?version=4.0.1", ids("Library", "library-fhir-helpers library-fhir-model-definition"),
         "version is a token"),
)

DATE = _cases(
    Case("Patient?birthdate=1974-12-25", ids("Patient", "ch-example example"), "eq (default) to the day"),
    Case("Patient?birthdate=1974", ids("Patient", "ch-example example"), "year precision: all of 1974"),
    Case("Patient?birthdate=1973-05", ids("Patient", "genetics-example1 mom"), "month precision (1973-05-31)"),
    Case("Patient?birthdate=eq1932-09-24", ids("Patient", "glossy xcda"), "explicit eq"),
    Case("Patient?birthdate=ne1974-12-25",
         ids("Patient", "animal f001 f201 genetics-example1 glossy infant-mom infant-twin-1 infant-twin-2 mom "
             "newborn pat3 pat4 proband xcda xds"),
         "ne: every birthDate not within that day; Patients without birthDate do not match"),
    Case("Patient?birthdate=gt2010", ids("Patient", "infant-twin-1 infant-twin-2 newborn"),
         "gt a year: after the end of 2010 (animal's 2010-03-23 is inside 2010)"),
    Case("Patient?birthdate=ge2010", ids("Patient", "animal infant-twin-1 infant-twin-2 newborn"),
         "ge includes values inside 2010"),
    Case("Patient?birthdate=lt1944-11-17", ids("Patient", "glossy xcda"), "lt the day: strictly before it"),
    Case("Patient?birthdate=le1944-11-17", ids("Patient", "f001 glossy xcda"), "le includes that day (f001)"),
    Case("Patient?birthdate=sa2000", ids("Patient", "animal infant-twin-1 infant-twin-2 newborn"),
         "starts after the end of 2000"),
    Case("Patient?birthdate=eb1960", ids("Patient", "f001 glossy xcda xds"),
         "ends before 1960 starts (f201's 1960-03-13 is inside 1960)"),
    Case("Patient?birthdate=ap1932-09-24", ids("Patient", "glossy xcda"),
         "ap: the nearest other birthDate (1944-11-17) is 12 years away, beyond any approximation"),
    Case("Patient?birthdate:missing=false",
         ids("Patient", "animal ch-example example f001 f201 genetics-example1 glossy infant-mom infant-twin-1 "
             "infant-twin-2 mom newborn pat3 pat4 proband xcda xds"), "the 17 Patients with a birthDate"),
    Case("Patient?birthdate:missing=true", ids("Patient", "dicom ihe-pcd infant-fetal pat1 pat2"), "no birthDate"),
    Case("Patient?death-date=2015-02-14", ids("Patient", "pat3"), "deceasedDateTime 2015-02-14T13:42:00+10:00"),
    Case("Observation?date=1999-07-02", ids("Observation", VITALS_1999), "effectiveDateTime 1999-07-02"),
    Case("Observation?date=2014-12", ids("Observation", "satO2 alcohol-type gcs-qa glasgow"),
         "month precision: 2014-12-05T09:30:10+01:00 and 2014-12-11T04:44:16Z"),
    Case("Observation?date=2013-04", ids("Observation", "f002 f003 f004 f005 unsat"),
         "periods inside April 2013; f001's period has no end (ongoing), so April does not contain it"),
    Case("Observation?date=2013-04-05", ids("Observation", "f005"),
         "only f005's period (start = end = 2013-04-05T10:30:10+01:00) lies within that day"),
    Case("Observation?date=2017-05-03T19:54:26Z", ids("Observation", "656"),
         "the same instant as 656's 2017-05-03T15:54:26-04:00"),
    Case("Observation?date=gt2018", ids("Observation", "abdo-tender f001"),
         "open-ended periods (start only) extend past 2018: abdo-tender (2018-04-02) and f001 (2013-04-02)"),
    Case("Observation?date=ap1999-07-02", ids("Observation", VITALS_1999),
         "ap: the next effective date (2012-09-17) is 13 years later, beyond 10% of the 27 years since"),
    Case("Observation?date=lt2000", ids("Observation", VITALS_1999), "only the 1999 vital signs"),
    Case("Observation?date=ge2018-03-11",
         ids("Observation", "bgpanel bloodgroup rhstatus trachcare abdo-tender map-sitting f001"),
         "2018-03-11T16:07:54Z (4), 2018-04 periods, and f001's open-ended period"),
    Case("Observation?date=sa2018-01-01",
         ids("Observation", "bgpanel bloodgroup rhstatus trachcare abdo-tender map-sitting"),
         "sa: wholly after 2018-01-01; f001's period starts in 2013"),
    Case("Observation?date=eb2013-04-02",
         ids("Observation", VITALS_1999 + " blood-pressure blood-pressure-cancel blood-pressure-dar"),
         "eb: ended before 2013-04-02 (1999-07-02 and 2012-09-17)"),
    Case("Observation?date=ne1999-07-02", Every("Observation", VITALS_1999 + " " + NO_EFFECTIVE),
         "ne: every effective[x] not within 1999-07-02; Observations without effective do not match"),
    Case("Observation?date:missing=true", ids("Observation", NO_EFFECTIVE), "no effective[x]"),
    Case("Observation?date=ge2016&date=lt2017",
         ids("Observation", "date-lastmp example 10minute-apgar-score 1minute-apgar-score 20minute-apgar-score "
             "2minute-apgar-score 5minute-apgar-score secondsmoke vomiting eye-color f001"),
         "AND of two prefixes = a range: effective in 2016, and f001's ongoing period (from 2013) overlaps both"),
    Case("Encounter?date=2013-03", ids("Encounter", "f203"), "period 2013-03-11 to 2013-03-20"),
    Case("Encounter?date=2013-03-15", NONE,
         "eq needs the day to contain the whole period 2013-03-11..20, which it does not"),
    Case("Encounter?date=ge2013-03-15", ids("Encounter", "f203 home emerg"),
         "f203's period reaches past 03-15; home (2015) and emerg (2017, ongoing) are later"),
    Case("Encounter?date=le2013-03-15", ids("Encounter", "f203"), "f203's period starts before 03-15"),
    Case("Encounter?date=gt2016", ids("Encounter", "emerg"), "emerg started 2017-02-01 and has no end"),
    Case("Encounter?date=2015-01-17", ids("Encounter", "home"),
         "home: 2015-01-17T16:00 to 16:30 +10:00, inside that day"),
    Case("Encounter?date=ap2015-01-17", ids("Encounter", "home"),
         "ap: f203 (2013-03) and emerg (2017-02) are about two years away, beyond 10% of the ~12 years since"),
    Case("Procedure?date=2013-03", ids("Procedure", "f002 f003 f004"), "performedPeriods in March 2013"),
    Case("Procedure?date=2011-06-26", NONE, "f001's period runs 2011-06-26 to 2011-06-27: not within one day"),
    Case("Procedure?date=2011-06", ids("Procedure", "f001"), "…but within the month"),
    Case("Procedure?date=ge2015", ids("Procedure", "example-implant HCBS physical-therapy"),
         "2015-04-05, 2018-04-05, 2016-09-27"),
    Case("Slot?start=2013-12-25T10:45:00+01:00", ids("Slot", "2"), "= 09:45:00Z, Slot/2's start"),
    Case("Slot?start=ge2013-12-25T09:30:00Z", ids("Slot", "2 3"), "09:45 and 09:30"),
    Case("Slot?start=gt2013-12-25T09:30:00Z", ids("Slot", "2"), "strictly after 09:30:00 (to the second)"),
    Case("Slot?start=le2013-12-25T09:15:00Z", ids("Slot", "1 example"), "09:00 and 09:15"),
    Case("Slot?start=lt2013-12-25T09:15:00Z", ids("Slot", "1"), "only 09:00"),
    Case("Schedule?date=2017-12-25", ids("Schedule", "exampleloc1 exampleloc2"), "planningHorizon on that day"),
    Case("Appointment?date:missing=true", ids("Appointment", "examplereq"), "the proposed one has no start"),
    Case("Condition?onset-date=2013-03", ids("Condition", "f203 f204"), "onsetDateTime 2013-03-08 and 2013-03-11"),
    Case("Condition?recorded-date=le2012", ids("Condition", "f001 f002 f003 f202"), "recordedDate in 2011-2012"),
    Case("AllergyIntolerance?date=2015-08-06", ids("AllergyIntolerance", "fishallergy nka nkda nkla"),
         "recordedDate 2015-08-06T15:37:31-06:00"),
    Case("Medication?expiration-date=lt2018",
         ids("Medication", "med0301 med0303 med0304 med0305 med0309 medexample015 med0318"),
         "batch.expirationDate 2017-05-22 (6) and 2016-07-09 (med0318)"),
    Case("Library?date=2016",
         ids("Library", "library-exclusive-breastfeeding-cds-logic library-exclusive-breastfeeding-cqm-logic "
             "library-fhir-helpers-predecessor library-fhir-model-definition library-quick-model-definition "
             "zika-virus-intervention-logic"), "Library.date in 2016"),
    Case("Observation?value-date=2016-12-30", ids("Observation", "date-lastmp"), "valueDateTime"),
)

NUMBER_QUANTITY = _cases(
    Case("RiskAssessment?probability=0.02", ids("RiskAssessment", "cardiac"), "0.02 means [0.015, 0.025)"),
    Case("RiskAssessment?probability=2e-2", ids("RiskAssessment", "cardiac"),
         "exponent form: one significant figure, [0.015, 0.025)"),
    Case("RiskAssessment?probability=0.00017", ids("RiskAssessment", "genetic"),
         "[0.000165, 0.000175) holds genetic's 0.000168"),
    Case("RiskAssessment?probability=0.000169", NONE, "six decimals: [0.0001685, 0.0001695) holds no value"),
    Case("RiskAssessment?probability=gt0.01", ids("RiskAssessment", "cardiac"), "only 0.02 exceeds 0.01"),
    Case("RiskAssessment?probability=lt0.001", ids("RiskAssessment", "genetic riskexample"),
         "0.000168 (genetic) and 0.000368 (riskexample)"),
    Case("RiskAssessment?probability=ge0.001663", ids("RiskAssessment", "cardiac genetic"),
         "genetic's largest probability is exactly 0.001663"),
    Case("RiskAssessment?probability=gt0.001663", ids("RiskAssessment", "cardiac"),
         "gt is exact (no implicit range): 0.001663 is not greater than itself"),
    Case("RiskAssessment?probability=ne0.02", ids("RiskAssessment", "genetic riskexample"),
         "a value outside [0.015, 0.025); RiskAssessments without probability do not match"),
    Case("RiskAssessment?probability=sa0.01", ids("RiskAssessment", "cardiac"), "starts after 0.01"),
    Case("RiskAssessment?probability=eb0.0002", ids("RiskAssessment", "genetic"), "0.000168 ends before 0.0002"),
    Case("RiskAssessment?probability=ap0.02", ids("RiskAssessment", "cardiac"),
         "ap: about 0.02; the next value (0.001663) is an order of magnitude away"),
    Case("RiskAssessment?probability:missing=true", ids("RiskAssessment", "breastcancer-risk population prognosis"),
         "prediction without probability, or no prediction"),
    Case("MolecularSequence?variant-start=2", ids("MolecularSequence", "coord-0-base coord-1-base"),
         "variant.start 2 in both coordinate examples"),
    Case("MolecularSequence?variant-end=le5", ids("MolecularSequence", "coord-0-base coord-1-base"),
         "variant.end 2 and 3"),
    Case("MolecularSequence?window-start=lt100",
         ids("MolecularSequence", "coord-0-base coord-1-base graphic-example-2"), "windowStart 0, 1, 0"),
    Case("ChargeItem?factor-override=0.8", ids("ChargeItem", "example"), "factorOverride 0.8"),
    Case("Observation?value-quantity=185|http://unitsofmeasure.org|[lb_av]", ids("Observation", "example"),
         "185 [lb_av] exactly as recorded"),
    Case("Observation?value-quantity=gt80|http://unitsofmeasure.org|kg", ids("Observation", "example"),
         "UCUM conversion: 185 [lb_av] = 83.9 kg"),
    Case("Observation?value-quantity=72|http://unitsofmeasure.org|g/L", ids("Observation", "f005"),
         "UCUM conversion: 7.2 g/dL = 72 g/L"),
    Case("Observation?value-quantity=170|http://unitsofmeasure.org|cm", ids("Observation", "body-height"),
         "UCUM conversion: 66.9 [in_i] = 169.9 cm, inside [169.5, 170.5)"),
    Case("Observation?value-quantity=lt30|http://unitsofmeasure.org|cm", ids("Observation", "body-length"),
         "25 cm; head-circumference is 51.2 cm and body-height 169.9 cm"),
    Case("Observation?value-quantity=36.5||Cel", ids("Observation", "body-temperature"),
         "empty system: matches the unit code in any system"),
    Case("Observation?value-quantity=ge39|http://unitsofmeasure.org|Cel", ids("Observation", "f202"), "39 Cel"),
    Case("Observation?value-quantity=6.3", ids("Observation", "f001"), "no unit: [6.25, 6.35) (f003 is 6.2)"),
    Case("Observation?value-quantity=6", ids("Observation", "f001 f003"), "'6' has precision [5.5, 6.5)"),
    Case("Observation?value-quantity=ne6.3|http://unitsofmeasure.org|mmol/L", ids("Observation", "f002"),
         "other mmol/L values (12.6); f203's 28 mmol/L is coded in SNOMED CT, not UCUM"),
    Case("Observation?value-quantity=28|http://snomed.info/sct|258813002", ids("Observation", "f203"),
         "a non-UCUM unit system"),
    # Not le0.2|…|% : in UCUM the annotation {score} is dimensionless like %, so 0 {score} (1minute-apgar) is ≤ 0.2 %
    # too under canonical comparison; time units below are unambiguous.
    Case("Encounter?length=le90|http://unitsofmeasure.org|min", ids("Encounter", "f003 f202"), "90 and 56 min"),
    Case("Observation?value-quantity=sa800", ids("Observation", "656"), "starts after 800: 820 cL/s"),
    Case("Observation?value-quantity=gt100", ids("Observation", "656 example f204"), "820, 185 and 122"),
    Case("Observation?value-quantity=eb1", ids("Observation", "1minute-apgar-score bmd herd1"),
         "values below 1: 0, 0.887, 0.2"),
    # Not 1e2: R4's own example says 1e2 is [95, 105) while its rule (one significant figure) gives [50, 150), as
    # R5 corrected it; 9.5e1 reads the same under both.
    Case("Observation?value-quantity=9.5e1", ids("Observation", "satO2"),
         "exponent form with two significant figures: [94.5, 95.5) holds satO2's 95 %"),
    Case("Observation?value-quantity=ap820", ids("Observation", "656"), "approximately 820"),
    Case("Observation?component-value-quantity=60|http://unitsofmeasure.org|mm[Hg]", ids("Observation", "blood-pressure"),
         "diastolic component 60 mm[Hg] (blood-pressure-dar's diastolic has no value)"),
    Case("Observation?component-value-quantity=gt1e17", ids("Observation", "decimal"),
         "exponent notation: a component of 1000000000000000000 g"),
    Case("Observation?component-value-quantity=lt-1e200", ids("Observation", "decimal"),
         "a component of -1.000000000000000000E+245 g"),
    Case("Encounter?length=140|http://unitsofmeasure.org|min", ids("Encounter", "f001 f002"), "length 140 min"),
    Case("Encounter?length=gt2|http://unitsofmeasure.org|h", ids("Encounter", "f001 f002"),
         "UCUM conversion: 140 min = 2.33 h; f003 is 1.5 h"),
    Case("Encounter?length=1.5|http://unitsofmeasure.org|h", ids("Encounter", "f003"),
         "[1.45, 1.55) h = [87, 93) min holds 90 min"),
    Case("Encounter?length=lt100", ids("Encounter", "f003 f202"), "90 and 56 min"),
    Case("Encounter?length:missing=true", ids("Encounter", "emerg example f201 f203 home xcda"), "no length"),
    Case("Condition?onset-age=52|http://unitsofmeasure.org|a", ids("Condition", "f202"), "onsetAge 52 a"),
    Case("Condition?abatement-age=lt55|http://unitsofmeasure.org|a", ids("Condition", "f202"), "abatementAge 54 a"),
    Case("Substance?quantity=0.1|http://unitsofmeasure.org|L", ids("Substance", "f204"),
         "UCUM conversion: instance.quantity 100 mL = 0.1 L"),
    Case("ChargeItem?price-override=gt39.99|urn:iso:std:iso:4217|EUR", ids("ChargeItem", "example"),
         "Money searched as a quantity: currency EUR in urn:iso:std:iso:4217"),
    Case("Invoice?totalgross=48", ids("Invoice", "example"), "totalGross 48 EUR"),
)

REFERENCE = _cases(
    Case("Observation?subject=Patient/f001", ids("Observation", OBS_F001), "Type/id"),
    Case("Observation?subject=f201", ids("Observation", OBS_F201), "a bare id matches any target type"),
    Case("Observation?subject=http://testserver/fhir/Patient/f201", ids("Observation", OBS_F201),
         "the absolute URL on this server's own base is the same reference as Patient/f201"),
    Case("Observation?patient=Patient/pat2", ids("Observation", "bmd date-lastmp"), "patient = subject as Patient"),
    Case("Observation?subject:Group=herd1", ids("Observation", "herd1"), ":[type] modifier"),
    Case("Observation?subject=Group/herd1", ids("Observation", "herd1"), "a Group subject"),
    Case("Observation?subject:missing=true", ids("Observation", "decimal vp-oyster"),
         "no subject (the Apgar scores' subject '#newborn' is present, though contained)"),
    Case("Observation?performer=Practitioner/f005", ids("Observation", OBS_BY_F005), "performer"),
    Case("ServiceRequest?subject=https://fhir.orionhealth.com/blaze/fhir/Patient/77662",
         ids("ServiceRequest", "myringotomy"), "an absolute reference to another server"),
    Case("Patient?organization=1", ids("Patient", "ch-example dicom example pat1 pat2 pat3 pat4"),
         "managingOrganization Organization/1"),
    Case("Patient?general-practitioner:Practitioner=21B", ids("Patient", "infant-mom"),
         "Practitioner/21B is not in the corpus, but the reference is still indexed"),
    Case("Patient?link:RelatedPerson=newborn-mom", ids("Patient", "mom"), "link.other RelatedPerson"),
    Case("Patient?link=Patient/pat2", ids("Patient", "pat1"), "pat1 links to pat2"),
    Case("Organization?partof:missing=false", ids("Organization", "f002 f003"), "only the two departments"),
    Case("Group?member=Patient/pat1", ids("Group", "102"), "member.entity"),
    Case("Encounter?service-provider:missing=true", ids("Encounter", "emerg example home xcda"), "no serviceProvider"),
    Case("Appointment?actor=Location/1", ids("Appointment", "example examplereq"), "participant.actor"),
    Case("Task?owner:identifier=http://nationalinsurers.com/identifiers|12345",
         ids("Task", "fm-example1 fm-example2 fm-example3 fm-example4 fm-example5 fm-example6"),
         ":identifier on Reference.identifier"),
    Case("Task?focus:identifier=http://happyvalley.com/claim|1500", ids("Task", "fm-example1 fm-example5 fm-example6"),
         "focus.identifier claim 1500"),
    Case("Claim?insurer:identifier=123456", ids("Claim", "100154 100155 MED-00050"),
         ":identifier with a bare value matches any identifier system"),
    Case("Observation?based-on:identifier=https://acme.org/identifiers|1234", ids("Observation", "blood-pressure"),
         "basedOn by identifier only"),
    Case("PlanDefinition?depends-on=Library/library-exclusive-breastfeeding-cds-logic",
         ids("PlanDefinition", "exclusive-breastfeeding-intervention-01 exclusive-breastfeeding-intervention-02 "
             "exclusive-breastfeeding-intervention-03 exclusive-breastfeeding-intervention-04"),
         "canonical PlanDefinition.library"),
    Case("Measure?composed-of=Measure/component-a-example", ids("Measure", "composite-example"),
         "relatedArtifact composed-of"),
    Case("Observation?has-member=Observation/bloodgroup", ids("Observation", "bgpanel"), "hasMember"),
    Case("Observation?derived-from=Observation/example-genetics-1",
         ids("Observation", "example-genetics-2 example-genetics-3"), "derivedFrom"),
)

URI = _cases(
    Case("ValueSet?url=http://hl7.org/fhir/ValueSet/observation-vitalsignresult",
         ids("ValueSet", "observation-vitalsignresult"), "exact url"),
    Case("ActivityDefinition?url=http://motivemi.com/artifacts/ActivityDefinition/referralPrimaryCareMentalHealth",
         ids("ActivityDefinition", "referralPrimaryCareMentalHealth referralPrimaryCareMentalHealth-initial"),
         "two versions share the url"),
    Case("ActivityDefinition?url:below=http://motivemi.com/artifacts",
         ids("ActivityDefinition", "citalopramPrescription referralPrimaryCareMentalHealth "
             "referralPrimaryCareMentalHealth-initial"), ":below a path prefix"),
    Case("PlanDefinition?url:below=http://hl7.org/fhir/ig/opioid-cds",
         ids("PlanDefinition", "opioidcds-04 opioidcds-05 opioidcds-07 opioidcds-08 opioidcds-10 opioidcds-11"),
         ":below the opioid IG"),
    Case("PlanDefinition?url:above=http://example.org/PlanDefinition/zika-virus-intervention/_history/2",
         ids("PlanDefinition", "zika-virus-intervention zika-virus-intervention-initial"),
         ":above: the stored url is a parent path of the given one"),
    Case("PlanDefinition?url=http://example.org/PlanDefinition/zika-virus-intervention&version=1.0.0",
         ids("PlanDefinition", "zika-virus-intervention-initial"), "url AND version"),
    Case("ActivityDefinition?url:missing=true", ids("ActivityDefinition", "blood-tubes-supply heart-valve-replacement"),
         "no url"),
    Case("Observation?_profile=http://hl7.org/fhir/StructureDefinition/vitalsigns",
         ids("Observation", "blood-pressure blood-pressure-cancel blood-pressure-dar bmi body-height body-length "
             "body-temperature head-circumference heart-rate respiratory-rate satO2 vitals-panel"),
         "meta.profile (bmi-using-related, mbp and example have no meta.profile)"),
    Case("Questionnaire?_profile:below=http://hl7.org/fhir/StructureDefinition", ids("Questionnaire", "phq-9-questionnaire"),
         "_profile is a uri: :below"),
)

COMPOSITE = _cases(
    Case("Observation?code-value-quantity=http://loinc.org|29463-7$185|http://unitsofmeasure.org|[lb_av]",
         ids("Observation", "example"), "code and valueQuantity of the same Observation"),
    Case("Observation?code-value-quantity=http://loinc.org|29463-7$lt100", NONE, "185 is not below 100"),
    Case("Observation?component-code-value-quantity=http://loinc.org|8480-6$gt100",
         ids("Observation", "blood-pressure blood-pressure-dar"), "systolic component 107"),
    Case("Observation?component-code-value-quantity=http://loinc.org|8462-4$60|http://unitsofmeasure.org|mm[Hg]",
         ids("Observation", "blood-pressure"), "diastolic component 60 (absent in blood-pressure-dar)"),
    Case("Observation?component-code-value-quantity=http://loinc.org|8462-4$107", NONE,
         "107 is the systolic value: both halves must match within the same component"),
    Case("Observation?combo-code-value-quantity=http://loinc.org|8478-0$lt70", ids("Observation", "map-sitting"),
         "mean BP 60 mm[Hg] (mbp is 80)"),
    Case("Observation?code-value-concept=http://loinc.org|883-9$http://snomed.info/sct|112144000",
         ids("Observation", "bloodgroup rhstatus"), "both carry ABO group = Blood group A"),
    Case("Observation?code-value-concept=55233-1$10828004", ids("Observation", "example-genetics-1 example-genetics-2"),
         "haplotype observations share the code but have other values"),
    Case("Observation?code-value-date=http://loinc.org|8665-2$2016-12", ids("Observation", "date-lastmp"),
         "valueDateTime 2016-12-30"),
    Case("Observation?code-value-string=363779003$*1/*4", ids("Observation", "example-TPMT-diplotype"),
         "valueString '*1/*4'"),
    Case("Observation?code-value-string=363779003$*1\\$*4", NONE,
         "an escaped \\$ is part of the value ('*1$*4'), not a third component: no match, and no error"),
)

SPECIAL = _cases(
    Case("Patient?_id=pat1,pat2", ids("Patient", "pat1 pat2"), "_id OR"),
    Case("Patient?_id=example&_id=pat1", NONE, "_id AND: no resource has two ids"),
    Case("Observation?_id=clinical-gender", NONE, "refused as invalid R4, so not stored"),
    Case("DiagnosticReport?_id=f001", NONE, "DiagnosticReport f001 only exists inside Bundle/f001, not on its own"),
    Case("Bundle?type=document", ids("Bundle", "father"), "the only document Bundle"),
    Case("Bundle?type=message&timestamp=2015-07-14",
         ids("Bundle", "10bb101f-a121-4264-a920-67be9cb82c74 3a0707d3-549e-4467-b8b8-5a2ab3800efe"),
         "both message Bundles have timestamp 2015-07-14T11:15:33+10:00"),
    Case("Patient?_lastUpdated=gt2000", Every("Patient"), "every Patient was written at load time, after 2000"),
    Case("Patient?_lastUpdated=2012-05-29", NONE,
         "the examples' own meta.lastUpdated (mom, genetics-example1) is replaced by the server's"),
    Case("Practitioner?_lastUpdated=ge{load_start}&_lastUpdated=le{load_end}", Every("Practitioner"),
         "between the start and the end of the load"),
    Case("Practitioner?_lastUpdated=lt{load_start}", NONE, "nothing was written before the load"),
    Case("Condition?_security=http://terminology.hl7.org/CodeSystem/v3-ActCode|TBOO", ids("Condition", "f202"),
         "meta.security taboo"),
    Case("Condition?_tag=http://terminology.hl7.org/CodeSystem/v3-ActCode|TBOO", NONE,
         "that coding is a security label, not a tag"),
    Case("Condition?_tag:missing=true", Every("Condition"), "no example in the corpus has meta.tag"),
    Case("Patient?_source=http://example.org/fhir", NONE, "no example has meta.source"),
    Case("Condition?_list=example", ids("Condition", "example example2"), "List/example's entries"),
    Case("AllergyIntolerance?_list=current-allergies", ids("AllergyIntolerance", "example medication"),
         "List/current-allergies"),
    Case("Patient?_list=long", Every("Patient", "infant-fetal infant-mom infant-twin-1 infant-twin-2"),
         "List/long names 18 stored Patients (and many not in the corpus)"),
    Case("Patient?_text=retriever", ids("Patient", "animal"), "narrative 'Dog: Golden Retriever'"),
    Case("Patient?_text=windsor", NONE, "'Windsor' (a maiden name) is not in any narrative"),
    Case("Patient?_content=windsor", ids("Patient", "example"),
         "…but it is in Patient/example's content (two Bundles contain it too: total must still be 1)"),
    Case("Patient?_content=metropolis", ids("Patient", "xds"), "address.city 'Metropolis', not in the narrative"),
    Case("Condition?_text=asthma", ids("Condition", "example2"),
         "narrative 'Mild Asthma' (narratives of other types mention asthma too: total must still be 1)"),
    Case("Location?near=42.25475478|-83.6945691|1|km", ids("Location", "1"),
         "near (special, latitude|longitude|distance|units): Location/1 is at that position; Location/hl7 is far away"),
)

COMBINATIONS = _cases(
    Case("Patient?name=pet,don", ids("Patient", "example pat1 pat2"), "OR: 'Peter' or 'Donald'"),
    Case("Patient?given=peter&given=james", ids("Patient", "example"), "AND of two given names"),
    Case("Patient?family=chalmers&given=jim", ids("Patient", "example"),
         "AND is per resource: 'Jim' is in another HumanName than 'Chalmers'"),
    Case("Patient?birthdate=1974-12-25&gender=male", ids("Patient", "ch-example example"), "AND across parameters"),
    Case("Patient?gender=female&birthdate=lt1980", ids("Patient", "genetics-example1 mom proband"),
         "female and born before 1980"),
    Case("Organization?name:exact=Burgers UMC Ear\\,Nose\\,Throat unit", ids("Organization", "f003"),
         "escaped commas are part of the value"),
    Case("Organization?name:exact=Burgers UMC Ear,Nose,Throat unit", NONE,
         "unescaped, the commas make three :exact alternatives, none of which is a whole name"),
    Case("Subscription?criteria=Observation?code=http://loinc.org\\|1975-2", ids("Subscription", "example example-error"),
         "criteria contains '|', escaped as \\|"),
    Case("Patient?identifier=urn:oid:1.2.36.146.595.217.0.1\\|12345", NONE,
         "an escaped | is part of the code: no identifier value is 'urn:oid:…|12345'"),
)

CHAIN = _cases(
    Case("Observation?subject:Patient.name=van", ids("Observation", OBS_F001), "subject Patient named 'van de Heuvel'"),
    Case("Observation?patient.family=bor", ids("Observation", OBS_F201), "Patient/f201's family 'Bor'"),
    Case("Observation?subject:Patient.gender=other", ids("Observation", "bmd date-lastmp"), "pat2 is 'other'"),
    Case("Observation?performer:Practitioner.name=anne", ids("Observation", OBS_BY_F005),
         "Practitioner/f005's family 'Anne'"),
    Case("Observation?subject:Patient.organization.name=burgers", ids("Observation", OBS_F001),
         "two levels: Patient/f001 -> Organization/f001 'Burgers University Medical Center'"),
    Case("Encounter?subject:Patient.organization.name=gastro", ids("Encounter", "emerg example home"),
         "two levels: Patient/example -> Organization/1 'Gastroenterology'"),
    Case("Observation?subject:Patient.identifier=urn:oid:2.16.840.1.113883.2.4.6.3|738472983",
         ids("Observation", OBS_F001), "chain ending in a token: Patient/f001's identifier"),
    Case("Encounter?participant:Practitioner.family=voigt", ids("Encounter", "f001"), "Practitioner/f002 'Voigt'"),
    Case("Organization?partof.name=burgers", ids("Organization", "f002 f003"), "part of Organization/f001"),
    Case("DiagnosticReport?result.code=24701-5", ids("DiagnosticReport", "102"), "result Observation/bmd"),
    Case("Condition?subject:Patient.birthdate=1944-11-17", ids("Condition", "f001 f002 f003"),
         "conditions of Patient/f001"),
)

HAS = _cases(
    Case("Patient?_has:Observation:patient:code=8310-5", ids("Patient", "example f201"),
         "body-temperature (Patient/example) and f202 (Patient/f201)"),
    Case("Patient?_has:Observation:patient:code=8310-5,15074-8", ids("Patient", "example f201 f001"),
         "OR inside _has: glucose adds Patient/f001"),
    Case("Patient?_has:Observation:patient:code=8310-5&_has:Observation:patient:status=entered-in-error",
         ids("Patient", "f201"), "AND of two _has (f202 is entered-in-error)"),
    Case("Patient?_has:Condition:subject:clinical-status=resolved", ids("Patient", "f201"),
         "Conditions f201 and f202"),
    Case("Practitioner?_has:Observation:performer:status=cancelled", ids("Practitioner", "f005 example"),
         "unsat (f005) and blood-pressure-cancel (example)"),
    Case("Organization?_has:Patient:organization:gender=female", ids("Organization", "hl7 1"),
         "genetics-example1, mom -> hl7; pat4 -> 1"),
    Case("Patient?_has:Observation:patient:_has:DiagnosticReport:result:_id=102", ids("Patient", "pat2"),
         "nested: DiagnosticReport/102 -> Observation/bmd -> Patient/pat2"),
)

INCLUDE = _cases(
    Case("Observation?_id=f001&_include=Observation:patient", ids("Observation", "f001"),
         "include the subject Patient", included=ids("Patient", "f001")),
    Case("MedicationRequest?_id=medrx002&_include=MedicationRequest:medication", ids("MedicationRequest", "medrx002"),
         "medicationReference Medication/med0316", included=ids("Medication", "med0316")),
    Case("Encounter?_id=f001&_include=Encounter:*", ids("Encounter", "f001"),
         "every reference parameter: subject, participant, service-provider",
         included=ids("Patient", "f001") | ids("Practitioner", "f002") | ids("Organization", "f001")),
    Case("Observation?patient=f001&_include=Observation:performer", ids("Observation", OBS_F001),
         "seven matches share one performer, included once", included=ids("Practitioner", "f005")),
    Case("Observation?patient=f001&_include=Observation:performer&_count=3", ids("Observation", OBS_F001),
         "includes are returned per page: Practitioner/f005 on each of the 3 pages", included=ids("Practitioner", "f005")),
    Case("Patient?_has:Observation:patient:code=8310-5&_revinclude=Observation:patient", ids("Patient", "example f201"),
         "_has selects the Patients, _revinclude adds all their Observations",
         included=ids("Observation", OBS_EXAMPLE + " " + OBS_F201)),
    Case("Observation?_id=example&_include=Observation:subject:Patient", ids("Observation", "example"),
         "include restricted to Patient targets", included=ids("Patient", "example")),
    Case("Observation?_id=herd1&_include=Observation:subject:Patient", ids("Observation", "herd1"),
         "herd1's subject is a Group: nothing of type Patient to include", included=NONE),
    Case("Observation?_id=656&_include=Observation:subject", ids("Observation", "656"),
         "Patient/PatientId-patientId is not in the corpus: nothing to include", included=NONE),
    Case("Observation?_id=bgpanel&_include=Observation:has-member", ids("Observation", "bgpanel"),
         "hasMember", included=ids("Observation", "bloodgroup rhstatus")),
    Case("Observation?_id=example-phenotype&_include=Observation:derived-from", ids("Observation", "example-phenotype"),
         "one level only", included=ids("Observation", "example-diplotype1")),
    Case("Observation?_id=example-phenotype&_include=Observation:derived-from"
         "&_include:iterate=Observation:derived-from", ids("Observation", "example-phenotype"),
         ":iterate follows derivedFrom from the included Observations: diplotype1 -> haplotype1/2 -> sequences",
         included=ids("Observation", "example-diplotype1 example-haplotype1 example-haplotype2")
         | ids("MolecularSequence", "example-pgx-1 example-pgx-2")),
    Case("Observation?_id=f202&_include=Observation:subject&_include:iterate=Patient:organization",
         ids("Observation", "f202"), "subject Patient/f201, then its managingOrganization",
         included=ids("Patient", "f201") | ids("Organization", "f201")),
    Case("Patient?_id=f201&_revinclude=Encounter:subject", ids("Patient", "f201"),
         "Encounters whose subject is Patient/f201", included=ids("Encounter", "f201 f202 f203")),
    Case("Patient?_id=f001&_revinclude=Encounter:subject&_revinclude:iterate=Condition:encounter",
         ids("Patient", "f001"), "the Encounters, then the Conditions that point at them",
         included=ids("Encounter", "f001 f002 f003") | ids("Condition", "f001 f002 f003")),
    Case("Medication?_id=med0316&_revinclude=MedicationRequest:medication", ids("Medication", "med0316"),
         "medrx002 references it (medrx0311's '#med0316' is a contained copy)",
         included=ids("MedicationRequest", "medrx002")),
    Case("Group?_id=102&_include=Group:member", ids("Group", "102"), "member.entity",
         included=ids("Patient", "pat1 pat2 pat3 pat4")),
    Case("List?_id=current-allergies&_include=List:item", ids("List", "current-allergies"), "entry.item",
         included=ids("AllergyIntolerance", "example medication")),
)

SORT = _cases(
    Case("Observation?patient=example&category=vital-signs&_sort=-date,_id", ids("Observation", VITALS_EXAMPLE_DESC),
         "newest first, ties by id", order=seq("Observation", VITALS_EXAMPLE_DESC)),
    Case("Observation?patient=example&category=vital-signs&_sort=-date,_id&_count=4",
         ids("Observation", VITALS_EXAMPLE_DESC), "the same order across pages of 4",
         order=seq("Observation", VITALS_EXAMPLE_DESC)),
    Case("Observation?patient=example&category=vital-signs&_sort=date,-_id", ids("Observation", VITALS_EXAMPLE_DESC),
         "oldest first, ties by descending id",
         order=seq("Observation", "vitals-panel respiratory-rate mbp heart-rate head-circumference body-temperature "
                   "body-length body-height bmi-using-related bmi blood-pressure-dar blood-pressure-cancel "
                   "blood-pressure satO2 example")),
    Case("Observation?subject=Patient/f001&_sort=status,_id", ids("Observation", OBS_F001),
         "token sort: cancelled before final", order=seq("Observation", "unsat ekg f001 f002 f003 f004 f005")),
    Case("Patient?birthdate=lt1960&_sort=birthdate,_id", ids("Patient", "glossy xcda f001 xds"),
         "1932-09-24 (two), 1944, 1956", order=seq("Patient", "glossy xcda f001 xds")),
    Case("Patient?birthdate=lt1960&_sort=-birthdate,-_id", ids("Patient", "glossy xcda f001 xds"),
         "reverse", order=seq("Patient", "xds f001 xcda glossy")),
    Case("Encounter?length:missing=false&_sort=length,_id", ids("Encounter", "f001 f002 f003 f202"),
         "quantity sort: 56, 90, 140, 140 min", order=seq("Encounter", "f202 f003 f001 f002")),
    Case("Organization?active=true&_sort=name", ids("Organization", "f002 f003 f201 f203 mmanu"),
         "string sort", order=seq("Organization", "mmanu f201 f203 f002 f003")),
    Case("Organization?active=true&_sort=-name", ids("Organization", "f002 f003 f201 f203 mmanu"),
         "descending string sort", order=seq("Organization", "f003 f002 f203 f201 mmanu")),
    Case("Slot?_sort=start", ids("Slot", "1 2 3 example"), "09:00, 09:15, 09:30, 09:45",
         order=seq("Slot", "1 example 3 2")),
    Case("Slot?_sort=-start", ids("Slot", "1 2 3 example"), "descending", order=seq("Slot", "2 3 example 1")),
    Case("MolecularSequence?window-start=lt100&_sort=window-start,_id",
         ids("MolecularSequence", "coord-0-base coord-1-base graphic-example-2"), "number sort: 0, 0, 1",
         order=seq("MolecularSequence", "coord-0-base graphic-example-2 coord-1-base")),
)

CONTEXTS = _cases(
    Case("?_type=Patient,Practitioner&family=van", ids("Patient", "f001") | ids("Practitioner", "f001 f006"),
         "system level: 'van de Heuvel', 'van den broek', 'van den Berk'"),
    Case("?_type=Patient,Practitioner&_id=f201", ids("Patient", "f201") | ids("Practitioner", "f201"),
         "system level _id over two types"),
    Case("?_id=f003",
         ids("CarePlan", "f003") | ids("Condition", "f003") | ids("Encounter", "f003") | ids("Observation", "f003")
         | ids("Organization", "f003") | ids("Practitioner", "f003") | ids("Procedure", "f003"),
         "system level without _type: every type that has an example with id f003"),
    Case("?_type=Patient,Practitioner&given=pieter", ids("Patient", "f001") | ids("Practitioner", "f002"),
         "POST [base]/_search (system level, form body)", method="POST"),
    Case("?_type=Observation,Condition&subject=Patient/f201",
         ids("Observation", OBS_F201) | ids("Condition", "f201 f202 f203 f204 f205"),
         "a parameter both types define"),
    Case("Patient/f001/Observation", ids("Observation", OBS_F001), "Patient compartment: subject (or performer)"),
    Case("Patient/example/Encounter?status=finished", ids("Encounter", "home"),
         "compartment plus a criterion (emerg and example are in-progress)"),
    Case("Patient/f201/Condition?clinical-status=resolved", ids("Condition", "f201 f202"), "compartment + token"),
    Case("Encounter/f203/Condition", ids("Condition", "f203 f204"), "Encounter compartment: encounter"),
    Case("Practitioner/f005/Observation", ids("Observation", OBS_BY_F005), "Practitioner compartment: performer"),
    Case("Observation?code=http://loinc.org|8310-5&_include=Observation:subject", ids("Observation", "body-temperature f202"),
         "POST [base]/Observation/_search with a form body", method="POST",
         included=ids("Patient", "example f201")),
    Case("Patient?gender=female&_total=accurate",
         ids("Patient", "animal genetics-example1 infant-mom infant-twin-1 mom pat4 proband"), "total = 7"),
    Case("Patient?gender=female&_total=none",
         ids("Patient", "animal genetics-example1 infant-mom infant-twin-1 mom pat4 proband"),
         "same matches; the Bundle must not carry a total (checked by the runner)"),
)

ALL_CASES: list[Case] = [
    *STRING, *TOKEN, *DATE, *NUMBER_QUANTITY, *REFERENCE, *URI, *COMPOSITE, *SPECIAL, *COMBINATIONS, *CHAIN,
    *HAS, *INCLUDE, *SORT, *CONTEXTS,
]

CATEGORIES: dict[str, list[Case]] = {
    "string": STRING, "token": TOKEN, "date": DATE, "number/quantity": NUMBER_QUANTITY, "reference": REFERENCE,
    "uri": URI, "composite": COMPOSITE, "special (_id … near)": SPECIAL, "OR/AND/escaping": COMBINATIONS,
    "chaining": CHAIN, "_has": HAS, "_include/_revinclude": INCLUDE, "_sort": SORT,
    "contexts (system, compartment, POST, _total)": CONTEXTS,
}


def by_query(cases: Iterable[Case]) -> dict[str, Case]:
    out: dict[str, Case] = {}
    for c in cases:
        assert c.query not in out, f"duplicate case {c.query}"
        out[c.query] = c
    return out
