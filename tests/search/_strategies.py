"""Hypothesis strategies for the search property tests: small worlds of valid R4 resources, and search queries
over them for every parameter type, modifier and prefix.

Values come from small shared pools (names with accents and case variants, LOINC-like codes, convertible units,
dates at every precision), so that generated queries hit generated data often.  Some queries are drawn from the
data of the world itself (a prefix of a stored name, the ``lastUpdated`` of a stored resource).

The generated space deliberately leaves out the cases where the SQLite compiler is known to disagree with the
specification (see ``KNOWN`` in ``test_properties.py``): ``_id:missing``, ``_lastUpdated:missing``,
``:below`` on URIs that differ only in case (all URIs here are lower case), and quantities without a canonical
unit whose code or unit is one a query could canonicalise (non-UCUM units here are never convertible).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from fhir_server.jsonio import FhirDecimal

BASE = "http://infirmary.test/fhir"
FOREIGN = "http://other.example/fhir"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
GENDER = "http://hl7.org/fhir/administrative-gender"
MRN = "https://infirmary.example.org/mrn"
NATIONAL = "http://hospital.example/national-id"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
TAGS = "http://example.org/tags"
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
OBS_STATUS_VS = "http://hl7.org/fhir/ValueSet/observation-status"

Resource = dict[str, Any]
Params = tuple[tuple[str, str], ...]
Kinds = list[st.SearchStrategy[tuple[str, str]]]


@dataclass(frozen=True)
class Query:
    resource_type: str
    params: Params

    def __str__(self) -> str:
        return f"{self.resource_type}?" + "&".join(f"{k}={v}" for k, v in self.params)


# -- pools ----------------------------------------------------------------------------------------------------

FAMILIES = ["Müller", "Muller", "MÜLLER", "Mueller", "Nguyễn", "Nguyen", "O'Brien", "Zoë", "Straße", "Strasse",
            "Ng", "Ngata", "Smith", "Smythe", "José", "Σίσυφος", "Ødegård", "van der Berg", "ﬁnch", "Doe, Jr"]
GIVENS = ["Anne", "Anna", "Ánna", "Jean-Luc", "Li", "Lí", "Zoe", "ZOË", "Émile"]
CITIES = ["Zürich", "Zurich", "São Paulo", "Köln", "KÖLN"]
STRING_QUERIES = ["mu", "Mü", "MUL", "muller", "Müller", "MÜLLER", "mueller", "nguy", "nguyen", "Nguyễn", "o'b",
                  "O'Brien", "zo", "zoë", "stra", "Straße", "strasse", "ss", "ng", "sm", "jos", "\u03c3\u03b9", "Σίσ", "ød",
                  "van", "van der", "der", "ﬁ", "fi", "an", "ánn", "jean", "luc", "e", "é", "x", "doe\\, jr",
                  "zur", "köln", "sao p", "Anne"]
NARRATIVE_WORDS = ["Patient", "Müller", "O'Brien", "x-ray", "Straße", "Σίσυφος", "ﬁne", "blood", "pressure",
                   "HIGH", "Zoë", "3.5kg", "-", "co-operative", "naïve", "Ödön"]
FULLTEXT_QUERIES = ["pat", "patient", "müller", "muller", "o'brien", "brien o", "x-ray", "ray", "strasse",
                    "straße", "σίσυφος", "fine", "blood pres", "pressure blood", "high", "zoe", "3.5", "5kg", "-",
                    "co-op", "naive", "odon", "weight", "final", "male", "nobody"]
IDENTIFIER_VALUES = ["A1", "a1", "B-2", "123"]
IDENTIFIER_TYPES: list[tuple[str, str, str | None] | None] = [
    None, (V2_0203, "MR", "Medical record number"), (V2_0203, "SB", None), (V2_0203, "MR", None)]
TELECOM = [("phone", "555-0100"), ("phone", "555-0199"), ("email", "a@example.org"), ("email", "A@example.org")]
TAG_CODES = [(TAGS, "vip", "Very important"), (TAGS, "VIP", None), (None, "test", "Test data")]
SOURCES = ["http://example.org/src", "http://example.org/src/a", "http://example.org/src/a/b",
           "http://example.org/srcx", "urn:uuid:0c1e6e2a-2f4e-4c4e-9a4e-3e2f6b1d9a01"]
PROFILES = ["http://example.org/fhir/StructureDefinition/vital", "http://example.org/fhir/StructureDefinition/v"]
URI_QUERIES = [*SOURCES, *PROFILES, "http://example.org", "http://example.org/src/a/b/c",
               "http://example.org/src/", "urn:uuid", "http://example.org/fhir/StructureDefinition/vital|1"]
CODES: list[tuple[str | None, str, str | None]] = [
    (LOINC, "8480-6", "Systolic blood pressure"), (LOINC, "8462-4", "Diastolic blood pressure"),
    (LOINC, "29463-7", "Body weight"), (LOINC, "85354-9", "Blood pressure panel"),
    (SNOMED, "27113001", "Body weight"), (None, "bw", None)]
CODE_TEXTS = [None, "Weight", "Blood pressure", "Pression artérielle"]
OBS_STATUSES = ["final", "amended", "preliminary", "registered"]
# (system, code, unit): UCUM units (most convertible), and units no query can canonicalise
UNITS: list[tuple[str | None, str | None, str | None]] = [
    (UCUM, "kg", "kg"), (UCUM, "g", "gram"), (UCUM, "mg", "mg"), (UCUM, "mm[Hg]", "mmHg"), (UCUM, "%", "%"),
    (UCUM, "mg/dL", "mg/dL"), (None, None, "tablets"), ("http://example.org/units", "U", "U"), (None, None, "U")]
DECIMALS = ["72.5", "72.50", "72", "7.25e1", "0.0725", "72500", "5.4", "5.40", "0.0054", "5400", "120", "80",
            "1e2", "-1", "0", "100.0"]
QUANTITY_QUERY_UNITS = ["", "||kg", "||g", "||mg", "|http://unitsofmeasure.org|kg", "|http://unitsofmeasure.org|mg",
                        "||mm[Hg]", "|http://unitsofmeasure.org|mm[Hg]", "||mmHg", "||tablets", "||U",
                        "|http://example.org/units|U", "||%", "||gram", "||mg/dL", "||g/L", "|http://unitsofmeasure.org|"]
COMPONENT_VALUES = ["120", "80", "95", "1.2e2", "80.0"]
PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
PROBABILITIES = ["0.5", "0.50", "0.25", "0.3", "1", "0", "5e-1", "0.05"]
NUMBER_QUERIES = ["0.5", "0.50", "5e-1", "0.3", "1", "0", "0.25", "0.2", "1e-1", "0.05", "0.045", "0.500", "1e0"]
YEARS = [1969, 1984, 1999, 2000, 2020, 2021]
MONTHS = [1, 2, 6, 12]
DAYS = [1, 15, 28]
TIMES = ["T00:00:00Z", "T10:30:00Z", "T10:30:00+02:00", "T23:59:59.999Z", "T00:00:00-05:00", "T12:00:00.5Z"]
QUERY_TIMES = ["", "T10:30", "T10:30Z", "T10:30:00+02:00", "T00:00:00-05:00", "T23:59:59.999Z", "T12:00:00.5Z"]
ENC_STATUSES = ["planned", "in-progress", "finished"]
ENC_CLASSES = ["AMB", "EMER", "IMP"]
DURATION_UNITS = [("min", "min"), ("h", "h"), ("d", "days")]


def esc(text: str) -> str:
    """A literal as a search value: ``\\``, ``,``, ``|`` and ``$`` escaped."""
    for ch in "\\,|$":
        text = text.replace(ch, "\\" + ch)
    return text


# -- resources ------------------------------------------------------------------------------------------------


def _date_text(year: int, month: int | None, day: int | None, time: str | None = None) -> str:
    text = f"{year:04d}"
    if month is not None:
        text += f"-{month:02d}"
        if day is not None:
            text += f"-{day:02d}"
            if time is not None:
                text += time
    return text


@st.composite
def fhir_dates(draw: st.DrawFn, with_time: bool = False) -> str:
    """A date (or dateTime) at a random precision."""
    year = draw(st.sampled_from(YEARS))
    month = draw(st.none() | st.sampled_from(MONTHS))
    day = draw(st.none() | st.sampled_from(DAYS)) if month is not None else None
    time = draw(st.none() | st.sampled_from(TIMES)) if with_time and day is not None else None
    return _date_text(year, month, day, time)


def periods() -> st.SearchStrategy[dict[str, str]]:
    start = st.none() | fhir_dates(with_time=True)
    end = st.none() | fhir_dates(with_time=True)
    return st.tuples(start, end).filter(lambda p: p != (None, None) and (
        None in p or sortable(p[0]) <= sortable(p[1]))).map(
        lambda p: {k: v for k, v in (("start", p[0]), ("end", p[1])) if v is not None})


def sortable(text: str | None) -> str:
    """Dates of a pool compare well enough as text to keep Period.start before Period.end (per.1)."""
    return (text or "")[:10]


def decimals(pool: Sequence[str] = DECIMALS) -> st.SearchStrategy[FhirDecimal]:
    return st.sampled_from(pool).map(FhirDecimal)


def narratives() -> st.SearchStrategy[dict[str, str] | None]:
    def div(words: list[str]) -> dict[str, str]:
        text = " ".join(words).replace("&", "&amp;").replace("<", "&lt;")
        return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{text}</p></div>'}

    return st.none() | st.lists(st.sampled_from(NARRATIVE_WORDS), min_size=1, max_size=4).map(div)


def metas() -> st.SearchStrategy[dict[str, Any] | None]:
    tag = st.sampled_from(TAG_CODES).map(lambda t: {k: v for k, v in zip(("system", "code", "display"), t,
                                                                            strict=True) if v is not None})
    return st.none() | st.fixed_dictionaries({}, optional={
        "source": st.sampled_from(SOURCES),
        "profile": st.lists(st.sampled_from(PROFILES), min_size=1, max_size=2, unique=True),
        "tag": st.lists(tag, min_size=1, max_size=2),
    }).filter(bool)


def _common(draw: st.DrawFn, resource: Resource) -> Resource:
    meta, text = draw(metas()), draw(narratives())
    out = {"resourceType": resource["resourceType"], "id": resource["id"]}
    if meta:
        out["meta"] = meta
    if text:
        out["text"] = text
    out.update({k: v for k, v in resource.items() if k not in out})
    return {k: v for k, v in out.items() if v not in (None, [], {})}


@st.composite
def identifiers(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kind = draw(st.sampled_from([*IDENTIFIER_TYPES, ("", "", "Passport")]))
    if kind is not None:
        system, code, text = kind
        kind_json: dict[str, Any] = {"coding": [{"system": system, "code": code}]} if code else {}
        if text:
            kind_json["text"] = text
        out["type"] = kind_json
    ident_system = draw(st.sampled_from([None, MRN, NATIONAL]))
    if ident_system:
        out["system"] = ident_system
    out["value"] = draw(st.sampled_from(IDENTIFIER_VALUES))
    return out


@st.composite
def patients(draw: st.DrawFn, id: str) -> Resource:
    names = st.fixed_dictionaries({}, optional={
        "family": st.sampled_from(FAMILIES),
        "given": st.lists(st.sampled_from(GIVENS), min_size=1, max_size=2),
        "text": st.sampled_from(["Dr. Anne Müller", "Li Ng"]),
    }).filter(bool)
    resource = {
        "resourceType": "Patient", "id": id,
        "identifier": draw(st.lists(identifiers(), max_size=2)),
        "active": draw(st.none() | st.booleans()),
        "name": draw(st.lists(names, min_size=1, max_size=2)) if draw(st.integers(0, 7)) else [],
        "telecom": [{"system": s, "value": v} for s, v in draw(st.lists(st.sampled_from(TELECOM), max_size=2,
                                                                         unique=True))],
        "gender": draw(st.none() | st.sampled_from(["male", "female", "other", "unknown"])),
        "birthDate": draw(st.none() | fhir_dates()),
        "address": [{"city": c} for c in draw(st.lists(st.sampled_from(CITIES), max_size=1))],
    }
    return _common(draw, resource)


def references(patient_ids: Sequence[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A reference to a patient in each form the indexer knows (some pointing at patients that do not exist)."""
    pid = st.sampled_from([*patient_ids, "p9"])
    return st.one_of(
        pid.map(lambda i: {"reference": f"Patient/{i}"}),
        pid.map(lambda i: {"reference": f"{BASE}/Patient/{i}"}),
        pid.map(lambda i: {"reference": f"{FOREIGN}/Patient/{i}"}),
        pid.map(lambda i: {"reference": f"Patient/{i}/_history/1"}),
        st.sampled_from(IDENTIFIER_VALUES).map(
            lambda v: {"type": "Patient", "identifier": {"system": MRN, "value": v}}),
        st.sampled_from(IDENTIFIER_VALUES).map(lambda v: {"identifier": {"value": v}}),
    )


def codeable_concepts(pool: Sequence[tuple[str | None, str, str | None]] = CODES) -> st.SearchStrategy[
        dict[str, Any]]:
    def coding(entry: tuple[str | None, str, str | None]) -> dict[str, str]:
        system, code, display = entry
        return {k: v for k, v in (("system", system), ("code", code), ("display", display)) if v is not None}

    return st.builds(
        lambda codings, text: {k: v for k, v in (("coding", [coding(c) for c in codings]), ("text", text)) if v},
        st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True),
        st.sampled_from(CODE_TEXTS),
    )


@st.composite
def quantities(draw: st.DrawFn, units: Sequence[tuple[str | None, str | None, str | None]] = UNITS,
               numbers: Sequence[str] = DECIMALS) -> Resource:
    system, code, unit = draw(st.sampled_from(units))
    out: Resource = {"value": draw(decimals(numbers))}
    if draw(st.integers(0, 9)) == 0:
        out["comparator"] = draw(st.sampled_from(["<", ">="]))
    for key, value in (("unit", unit), ("system", system), ("code", code)):
        if value is not None:
            out[key] = value
    return out


@st.composite
def observations(draw: st.DrawFn, id: str, patient_ids: Sequence[str], encounter_ids: Sequence[str]) -> Resource:
    resource: Resource = {
        "resourceType": "Observation", "id": id,
        "status": draw(st.sampled_from(OBS_STATUSES)),
        "code": draw(codeable_concepts()),
        "subject": draw(st.none() | references(patient_ids)),
    }
    with_encounter: bool = draw(st.booleans())
    if encounter_ids and with_encounter:
        resource["encounter"] = {"reference": f"Encounter/{draw(st.sampled_from(encounter_ids))}"}
    effective = draw(st.sampled_from(["none", "dateTime", "Period"]))
    if effective == "dateTime":
        resource["effectiveDateTime"] = draw(fhir_dates(with_time=True))
    elif effective == "Period":
        resource["effectivePeriod"] = draw(periods())
    value = draw(st.sampled_from(["none", "Quantity", "Quantity", "string"]))
    if value == "Quantity":
        resource["valueQuantity"] = draw(quantities())
    elif value == "string":
        resource["valueString"] = draw(st.sampled_from([*FAMILIES, "Positive", "négatif"]))
    pressure = quantities([(UCUM, "mm[Hg]", "mmHg"), (UCUM, "kg", "kg")], COMPONENT_VALUES)
    components = draw(st.lists(st.tuples(st.sampled_from(CODES[:3]), pressure), max_size=2,
                               unique_by=lambda t: t[0]))
    if components:
        resource["component"] = [
            {"code": {"coding": [{"system": s, "code": c}]}, "valueQuantity": q} for (s, c, _), q in components
        ]
    return _common(draw, resource)


@st.composite
def encounters(draw: st.DrawFn, id: str, patient_ids: Sequence[str]) -> Resource:
    resource: Resource = {
        "resourceType": "Encounter", "id": id,
        "status": draw(st.sampled_from(ENC_STATUSES)),
        "class": {"system": ACT_CODE, "code": draw(st.sampled_from(ENC_CLASSES))},
        "subject": draw(st.none() | st.sampled_from(patient_ids).map(lambda i: {"reference": f"Patient/{i}"})),
        "period": draw(st.none() | periods()),
    }
    if draw(st.booleans()):
        code, unit = draw(st.sampled_from(DURATION_UNITS))
        resource["length"] = {"value": draw(decimals(["30", "90", "1.5", "0.5", "2"])), "unit": unit,
                              "system": UCUM, "code": code}
    return _common(draw, resource)


@st.composite
def risk_assessments(draw: st.DrawFn, id: str, patient_ids: Sequence[str]) -> Resource:
    def prediction(kind: str) -> st.SearchStrategy[dict[str, Any]]:
        if kind == "decimal":
            return decimals(PROBABILITIES).map(lambda d: {"probabilityDecimal": d})
        ends = st.fixed_dictionaries({}, optional={"low": decimals(["0.1", "0.25"]).map(lambda d: {"value": d}),
                                                   "high": decimals(["0.5", "0.75"]).map(lambda d: {"value": d})})
        return ends.filter(bool).map(lambda r: {"probabilityRange": r})

    kinds = draw(st.lists(st.sampled_from(["decimal", "decimal", "range"]), max_size=2))
    resource = {
        "resourceType": "RiskAssessment", "id": id, "status": "final",
        "subject": {"reference": f"Patient/{draw(st.sampled_from(patient_ids))}"},
        "prediction": [draw(prediction(k)) for k in kinds],
    }
    return _common(draw, resource)


@dataclass
class World:
    """What is written: earlier versions, final versions, then deletions."""

    earlier: list[Resource]
    final: list[Resource]
    deleted: list[tuple[str, str]]

    def ids(self, resource_type: str) -> list[str]:
        return [r["id"] for r in self.final if r["resourceType"] == resource_type]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    pids = [f"p{i}" for i in range(draw(st.integers(2, 5)))]
    eids = [f"e{i}" for i in range(draw(st.integers(0, 2)))]
    oids = [f"o{i}" for i in range(draw(st.integers(1, 6)))]
    rids = [f"r{i}" for i in range(draw(st.integers(0, 3)))]
    makers: list[st.SearchStrategy[Resource]] = [
        *(patients(i) for i in pids),
        *(encounters(i, pids) for i in eids),
        *(observations(i, pids, eids) for i in oids),
        *(risk_assessments(i, pids) for i in rids),
    ]
    final = [draw(make) for make in makers]
    earlier = [draw(make) for make in makers if draw(st.integers(0, 4)) == 0]
    if draw(st.booleans()):
        items = [f"Patient/{i}" for i in pids] + [f"Observation/{i}" for i in oids] * 2 + ["Patient/p9"]
        members = draw(st.lists(st.sampled_from(items), min_size=1, max_size=4, unique=True))
        final.append({"resourceType": "List", "id": "l0", "status": "current", "mode": "working",
                      "entry": [{"item": {"reference": m}} for m in members]})
    deleted = [(r["resourceType"], r["id"]) for r in final if draw(st.integers(0, 6)) == 0]
    return World(earlier, final, deleted)


# -- queries --------------------------------------------------------------------------------------------------


StoredQuantity = tuple[str, str | None, str | None, str | None]  # value text, system, code, unit


@dataclass
class Facts:
    """What queries may borrow from a written world: its strings, narrative words, codes, quantities, references
    and the ``lastUpdated`` of each live resource by type."""

    world: World
    last_updated: dict[str, list[float]] = field(default_factory=dict)
    strings: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    codes: list[tuple[str | None, str]] = field(default_factory=list)
    quantities: list[StoredQuantity] = field(default_factory=list)
    references: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, world: World, last_updated: dict[str, list[float]]) -> Facts:
        facts = cls(world, last_updated)
        for r in world.final:
            facts._collect(r)
        for name in ("strings", "words", "references"):
            setattr(facts, name, sorted(set(getattr(facts, name))))
        facts.codes = sorted(set(facts.codes), key=str)
        facts.quantities = sorted(set(facts.quantities), key=str)
        return facts

    def _collect(self, r: Resource) -> None:
        for name in r.get("name", []):
            self.strings += [s for s in (name.get("family"), *name.get("given", [])) if s]
        self.strings += [a["city"] for a in r.get("address", [])] + ([r["valueString"]] if "valueString" in r else [])
        div = r.get("text", {}).get("div", "")
        self.words += re.sub(r"<[^>]*>", " ", div).replace("&amp;", "&").replace("&lt;", "<").split()
        for element in [r, *r.get("component", [])]:
            for coding in element.get("code", {}).get("coding", []) if "valueQuantity" in element else []:
                self.codes.append((coding.get("system"), coding["code"]))
            q = element.get("valueQuantity")
            if q is not None:
                self.quantities.append((str(q["value"]), q.get("system"), q.get("code"), q.get("unit")))
        subject = r.get("subject", {}).get("reference")
        if subject:
            self.references.append(subject)


def _or(values: st.SearchStrategy[str], most: int = 3) -> st.SearchStrategy[str]:
    """One value, or an OR list of up to ``most``."""
    return st.lists(values, min_size=1, max_size=most).map(",".join)


def _param(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, str]]:
    return values.map(lambda v: (name, v))


def _stored_prefix(facts: Facts) -> st.SearchStrategy[str]:
    if not facts.strings:
        return st.sampled_from(STRING_QUERIES)

    @st.composite
    def prefix(draw: st.DrawFn) -> str:
        text = draw(st.sampled_from(facts.strings))
        size = draw(st.integers(1, len(text)))
        case = draw(st.sampled_from(["as stored", "upper", "lower"]))
        text = text[:size]
        return esc(text.upper() if case == "upper" else text.lower() if case == "lower" else text)

    return prefix()


def string_params(facts: Facts, params: Sequence[str]) -> st.SearchStrategy[tuple[str, str]]:
    value = st.sampled_from(STRING_QUERIES) | _stored_prefix(facts)
    stored = st.sampled_from(facts.strings or FAMILIES)
    exact = st.one_of(stored.map(esc), stored.map(lambda s: esc(s.upper())),
                      st.sampled_from([*FAMILIES, *GIVENS, *CITIES]).map(esc), _stored_prefix(facts))

    @st.composite
    def param(draw: st.DrawFn) -> tuple[str, str]:
        name = draw(st.sampled_from(params))
        modifier = draw(st.sampled_from(["", ":exact", ":contains"]))
        return name + modifier, draw(_or(exact if modifier == ":exact" else value))

    return param()


def token_values(pool: Sequence[tuple[str | None, str]]) -> st.SearchStrategy[str]:
    """``code``, ``system|code``, ``|code`` and ``system|`` forms over ``(system, code)`` pairs."""
    pair = st.sampled_from(pool)
    return st.one_of(
        pair.map(lambda p: esc(p[1])),
        pair.map(lambda p: f"{esc(p[0] or '')}|{esc(p[1])}"),
        pair.map(lambda p: f"|{esc(p[1])}"),
        pair.filter(lambda p: p[0] is not None).map(lambda p: f"{esc(p[0] or '')}|"),
    )


def patient_token_params() -> Kinds:
    genders = [(GENDER, g) for g in ("male", "female", "other", "unknown")] + [(None, "male"), ("x", "male")]
    idents = [(s, v) for s in (MRN, NATIONAL, None) for v in IDENTIFIER_VALUES]
    tags = [(s, c) for s, c, _ in TAG_CODES] + [(TAGS, "test")]
    of_type = st.tuples(st.sampled_from([(V2_0203, "MR"), (V2_0203, "SB"), ("urn:x", "MR")]),
                        st.sampled_from(IDENTIFIER_VALUES)).map(lambda t: f"{t[0][0]}|{t[0][1]}|{t[1]}")
    return [
        _param("gender", _or(token_values(genders))),
        _param("gender:not", _or(token_values(genders), 2)),
        _param("gender:in", st.sampled_from([GENDER_VS])),
        _param("gender:not-in", st.sampled_from([GENDER_VS])),
        _param("identifier", _or(token_values(idents))),
        _param("identifier:not", token_values(idents)),
        _param("identifier:of-type", _or(of_type, 2)),
        _param("identifier:text", _or(st.sampled_from(["medical", "Medical record", "pass", "PASSPORT", "x"]), 2)),
        _param("telecom", _or(st.sampled_from([v for _, v in TELECOM]))),
        _param("phone", _or(st.sampled_from([v for _, v in TELECOM]))),
        _param("email", _or(token_values([(None, v) for _, v in TELECOM]))),
        _param("active", _or(st.sampled_from(["true", "false"]), 2)),
        _param("_tag", _or(token_values(tags))),
        _param("_tag:not", token_values(tags)),
        _param("_tag:text", st.sampled_from(["very", "Very Important", "test", "imp"])),
    ]


def _date_query(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(PREFIXES))
    year = draw(st.sampled_from([*YEARS, 1970, 2019, 2022]))
    month = draw(st.none() | st.sampled_from([*MONTHS, 3]))
    day = draw(st.none() | st.sampled_from([*DAYS, 14])) if month is not None else None
    time = draw(st.sampled_from(QUERY_TIMES)) if day is not None else ""
    return prefix + _date_text(year, month, day, time or None)


def date_values() -> st.SearchStrategy[str]:
    return _or(st.composite(_date_query)(), 2)


def number_values() -> st.SearchStrategy[str]:
    return _or(st.builds(lambda p, v: p + v, st.sampled_from(PREFIXES), st.sampled_from(NUMBER_QUERIES)), 2)


def quantity_values(numbers: Sequence[str] = DECIMALS, facts: Facts | None = None) -> st.SearchStrategy[str]:
    """Pool numbers with pool units, or a stored quantity with one of its units (code, unit text, system)."""
    one = st.builds(lambda p, v, u: p + v + u, st.sampled_from(PREFIXES), st.sampled_from(numbers),
                    st.sampled_from(QUANTITY_QUERY_UNITS))
    if facts is not None and facts.quantities:
        one = one | st.builds(_stored_quantity, st.sampled_from(PREFIXES), st.sampled_from(facts.quantities),
                              st.integers(0, 3))
    return _or(one, 2)


def _stored_quantity(prefix: str, stored: StoredQuantity, form: int) -> str:
    value, system, code, unit = stored
    units = ["", f"||{code or unit or ''}", f"|{system or ''}|{code or ''}", f"||{unit or ''}"][form]
    return prefix + value + (units if units.strip("|") else "")


def durations() -> st.SearchStrategy[str]:
    """Encounter lengths: minutes, hours and days convert to seconds."""
    one = st.builds(lambda p, v, u: p + v + u, st.sampled_from(PREFIXES),
                    st.sampled_from(["30", "90", "1.5", "0.5", "2", "1800", "5400", "0.0625"]),
                    st.sampled_from(["", "||min", "||h", f"|{UCUM}|min", "||d", "||s", "||days", "|x|min"]))
    return _or(one, 2)


def uri_params() -> st.SearchStrategy[tuple[str, str]]:
    return st.builds(lambda n, m, v: (n + m, v), st.sampled_from(["_source", "_profile"]),
                     st.sampled_from(["", ":above", ":below"]), _or(st.sampled_from(URI_QUERIES).map(esc), 2))


def reference_values(facts: Facts) -> st.SearchStrategy[str]:
    pid = st.sampled_from([*facts.world.ids("Patient"), "p9"])
    return _or(st.one_of(
        st.sampled_from(facts.references or ["Patient/p0"]),
        pid.map(lambda i: f"Patient/{i}"),
        pid,
        pid.map(lambda i: f"{BASE}/Patient/{i}"),
        pid.map(lambda i: f"{FOREIGN}/Patient/{i}"),
        pid.map(lambda i: f"Patient/{i}/_history/1"),
    ), 2)


def missing(names: Sequence[str]) -> st.SearchStrategy[tuple[str, str]]:
    return st.builds(lambda n, v: (f"{n}:missing", v), st.sampled_from(names), st.sampled_from(["true", "false"]))


def fulltext_params(facts: Facts) -> st.SearchStrategy[tuple[str, str]]:
    """``_text``/``_content``: pool words, prefixes of stored narrative words and of stored names."""
    @st.composite
    def stored(draw: st.DrawFn) -> str:
        words = draw(st.lists(st.sampled_from(facts.words or NARRATIVE_WORDS), min_size=1, max_size=2))
        return " ".join(w[: draw(st.integers(1, len(w)))] for w in words)

    value = st.one_of(st.sampled_from(FULLTEXT_QUERIES), stored(), _stored_prefix(facts))
    return st.builds(lambda n, v: (n, v), st.sampled_from(["_text", "_content"]), _or(value.map(esc), 2))


def id_params(facts: Facts, resource_type: str) -> st.SearchStrategy[tuple[str, str]]:
    ids = st.sampled_from([*facts.world.ids(resource_type), "nope"])
    return st.builds(lambda n, v: (n, v), st.sampled_from(["_id", "_id:not"]), _or(ids))


def last_updated_params(facts: Facts, resource_type: str) -> st.SearchStrategy[tuple[str, str]]:
    """``_lastUpdated`` around the stored instants, at precisions from the year to the microsecond."""
    stored = facts.last_updated.get(resource_type)
    if not stored:
        return st.just(("_lastUpdated", "ge2000"))

    @st.composite
    def param(draw: st.DrawFn) -> tuple[str, str]:
        moment = datetime.fromtimestamp(draw(st.sampled_from(stored)), UTC)
        fmt = draw(st.sampled_from(["%Y", "%Y-%m-%d", "%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M:%SZ",
                                    *["%Y-%m-%dT%H:%M:%S.%fZ"] * 4, "%Y-%m-%dT%H:%M:%S.%f+00:00"]))
        return "_lastUpdated", draw(st.sampled_from(PREFIXES)) + moment.strftime(fmt)

    return param()


def patient_criteria(facts: Facts) -> Kinds:
    return [
        string_params(facts, ["name", "family", "given", "address-city"]),
        *patient_token_params(),
        _param("birthdate", date_values()),
        uri_params(),
        id_params(facts, "Patient"),
        last_updated_params(facts, "Patient"),
        last_updated_params(facts, "Patient"),
        missing(["name", "family", "given"]),
        missing(["gender", "identifier", "_tag", "active"]),
        missing(["birthdate"]),
        missing(["_source", "_profile"]),
        missing(["general-practitioner"]),
        _param("_has:Observation:subject:code", _or(token_values([(s, c) for s, c, _ in CODES]))),
        _param("_has:Observation:patient:value-quantity", quantity_values()),
        _param("_has:Observation:subject:status:not", st.sampled_from(OBS_STATUSES)),
        _param("_has:Encounter:subject:class", st.sampled_from(ENC_CLASSES)),
        _param("_has:RiskAssessment:subject:probability", number_values()),
        _param("_has:Observation:subject:_has:List:item:_id", st.just("l0")),
        _param("_has:Observation:subject:date", date_values()),
        _param("_list", st.sampled_from(["l0", "l1"])),
        fulltext_params(facts),
    ]


def observation_criteria(facts: Facts) -> Kinds:
    codes = [(s, c) for s, c, _ in CODES] + [(LOINC, "bw")]
    code_part = token_values([*codes[:4], (None, "8480-6"), *facts.codes])
    composite = st.builds(lambda c, q: f"{c}${q}", code_part,
                          quantity_values(facts=facts).map(lambda v: v.split(",")[0]))
    pressure = st.builds(lambda c, p, v, u: f"{c}${p}{v}{u}", st.sampled_from(["8480-6", f"{LOINC}|8462-4"]),
                         st.sampled_from(PREFIXES), st.sampled_from(COMPONENT_VALUES),
                         st.sampled_from(["", "||mm[Hg]", f"|{UCUM}|mm[Hg]"]))
    patients = st.sampled_from([*facts.world.ids("Patient"), "p9"])
    return [
        _param("code", _or(token_values(codes))),
        _param("code:not", token_values(codes)),
        _param("code:text", _or(st.sampled_from(["blood", "Body W", "pression arte", "weight", "systolic b"]), 2)),
        _param("combo-code", _or(token_values(codes))),
        _param("component-code", token_values(codes)),
        _param("status", _or(st.sampled_from(OBS_STATUSES))),
        _param("status:in", st.just(OBS_STATUS_VS)),
        _param("status:not-in", st.just(OBS_STATUS_VS)),
        _param("value-quantity", quantity_values()),
        _param("value-quantity", quantity_values(facts=facts)),
        _param("component-value-quantity", quantity_values([*COMPONENT_VALUES, "0.12"])),
        _param("combo-value-quantity", quantity_values(facts=facts)),
        _param("code-value-quantity", _or(composite, 2)),
        _param("component-code-value-quantity", _or(composite, 2)),
        _param("component-code-value-quantity", _or(pressure, 2)),
        _param("combo-code-value-quantity", composite),
        _param("combo-code-value-quantity", pressure),
        _param("date", date_values()),
        _param("subject", reference_values(facts)),
        _param("subject:Patient", _or(patients)),
        _param("patient", reference_values(facts)),
        _param("subject:identifier", _or(token_values([(MRN, v) for v in IDENTIFIER_VALUES] + [(None, "A1")]))),
        _param("encounter", _or(st.sampled_from(["Encounter/e0", "e1", f"{BASE}/Encounter/e0"]))),
        string_params(facts, ["value-string"]),
        string_params(facts, ["name", "family"]).map(lambda p: (f"subject:Patient.{p[0]}", p[1])),
        _param("patient.gender", _or(token_values([(GENDER, "male"), (None, "female")]))),
        _param("subject:Patient.birthdate", date_values()),
        _param("encounter.class", st.sampled_from(ENC_CLASSES)),
        _param("encounter.subject:Patient.gender", st.sampled_from(["male", "female", "other"])),
        _param("encounter.date", date_values()),
        _param("subject:Patient._id", _or(patients)),
        _param("subject:Patient._id:not", patients),
        _param("patient.gender:missing", st.sampled_from(["true", "false"])),
        id_params(facts, "Observation"),
        last_updated_params(facts, "Observation"),
        last_updated_params(facts, "Observation"),
        missing(["subject", "encounter"]),
        missing(["value-quantity"]),
        missing(["date"]),
        missing(["code-value-quantity", "component-code-value-quantity"]),
        missing(["value-string"]),
        missing(["combo-code"]),
        _param("_has:List:item:status", st.just("current")),
        _param("_list", st.just("l0")),
        fulltext_params(facts),
        uri_params(),
    ]


def encounter_criteria(facts: Facts) -> Kinds:
    return [
        _param("status", _or(st.sampled_from(ENC_STATUSES))),
        _param("class", _or(token_values([(ACT_CODE, c) for c in ENC_CLASSES]))),
        _param("date", date_values()),
        _param("length", durations()),
        _param("subject", reference_values(facts)),
        _param("subject:Patient.gender", st.sampled_from(["male", "female"])),
        _param("_has:Observation:encounter:code", token_values([(s, c) for s, c, _ in CODES])),
        missing(["length", "date", "subject"]),
        id_params(facts, "Encounter"),
    ]


def risk_criteria(facts: Facts) -> Kinds:
    return [
        _param("probability", number_values()),
        _param("probability", number_values()),
        missing(["probability"]),
        _param("subject", reference_values(facts)),
        _param("subject.name", st.sampled_from(STRING_QUERIES)),
    ]


def queries(facts: Facts) -> st.SearchStrategy[Query]:
    """A query over the world: a kind of criterion chosen uniformly among all kinds of every type, and now and
    then a second one (AND) of the same type."""
    per_type = {
        "Patient": patient_criteria(facts), "Observation": observation_criteria(facts),
        "Encounter": encounter_criteria(facts), "RiskAssessment": risk_criteria(facts),
    }
    kinds = [(rtype, kind) for rtype, found in per_type.items() for kind in found]

    @st.composite
    def query(draw: st.DrawFn) -> Query:
        rtype, first = draw(st.sampled_from(kinds))
        params = [draw(first)]
        if draw(st.integers(0, 3)) == 3:  # not 0: Hypothesis favours small integers
            params.append(draw(st.sampled_from(per_type[rtype]).flatmap(lambda k: k)))
        return Query(rtype, tuple(params))

    return query()
