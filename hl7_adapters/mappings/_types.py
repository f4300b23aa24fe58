"""HL7 v2 data types → FHIR R4 data types (pure functions over parsed repetitions).

XPN → HumanName, XAD → Address, XTN → ContactPoint, CX/EI/HD → Identifier (system from the assigning authority),
CE/CWE/CNE → CodeableConcept (coding systems of HL7 table 0396 → FHIR URIs), XCN → Reference (display and
identifier; practitioners are not created), TS/DTM → date / dateTime / instant with the precision and offset sent,
NM/SN/ST/TX/FT/CE/CWE/DT/TS/TM OBX values → value[x], units → UCUM Quantity, OBX-7 → referenceRange,
OBX-8 → interpretation.

Decimals are ``orjson.Fragment`` so that they keep the digits sent; serialise Bundles with ``orjson.dumps``.

The HL7 null ``""`` (two double quotes) reads as absent here: a field sent as ``""`` clears the element, because
every mapped resource is written whole (conditional update).
"""

from __future__ import annotations

import functools
import re
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import orjson

from hl7_adapters.mappings._errors import MappingError
from hl7_adapters.v2.message import Repetition, Segment

JSON = dict[str, Any]

UCUM = "http://unitsofmeasure.org"
V2 = "http://terminology.hl7.org/CodeSystem/v2-"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
AUTHORITY_BASE = "urn:infirmary:hl7v2:authority:"
HL7_NULL = '""'

# HL7 table 0396 (coding system names, v2.3 to v2.8 spellings) → FHIR code system URIs (terminology.hl7.org).
CODING_SYSTEMS: dict[str, str] = {
    "LN": "http://loinc.org",
    "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "SNOMED": "http://snomed.info/sct",
    "SNOMEDCT": "http://snomed.info/sct",
    "SNM3": "http://snomed.info/sct",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "I10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I10P": "http://www.cms.gov/Medicare/Coding/ICD10",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CDX": "http://hl7.org/fhir/sid/icd-9-cm",
    "ICD9": "http://hl7.org/fhir/sid/icd-9-cm",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "MVX": "http://hl7.org/fhir/sid/mvx",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "RXN": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "C4": "http://www.ama-assn.org/go/cpt",
    "C5": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "CPT4": "http://www.ama-assn.org/go/cpt",
    "HCPCS": "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "HCPT": "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "UCUM": UCUM,
    "NCIT": "http://ncithesaurus-stage.nci.nih.gov",
    "CDCREC": "urn:oid:2.16.840.1.113883.6.238",
    "CDCPHINVS": "urn:oid:2.16.840.1.114222.4.5.274",
    "ISO3166_1": "urn:iso:std:iso:3166",
    "ISO3166-1": "urn:iso:std:iso:3166",
    "ISO639": "urn:ietf:bcp:47",
    "NUCC": "http://nucc.org/provider-taxonomy",
    "NPI": "http://hl7.org/fhir/sid/us-npi",
    "ATC": "http://www.whocc.no/atc",
    "UPC": "urn:oid:2.16.840.1.113883.6.55",
    "ICD9PCS": "http://www.cms.gov/Medicare/Coding/ICD9",
}
_HL7_TABLE = re.compile(r"^HL7(\d{4})$|^HL7-?(\d{3,4})$")
_OID = re.compile(r"^[0-2](\.(0|[1-9]\d*))+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
# ASCII characters that ``quote(text, safe="")`` percent-encodes (all but letters, digits and ``_.-~``)
_PERCENT_ENCODED = {c: f"%{c:02X}" for c in range(128)
                    if not (chr(c).isalnum() or chr(c) in "_.-~")}


def present(text: str) -> str:
    """The value, with the HL7 null ``""`` read as empty."""
    return "" if text == HL7_NULL else text.strip()


# -- coding systems, codings, CodeableConcepts ------------------------------------------------------------------


def coding_system(name: str) -> str | None:
    """A v2 coding-system name (CWE-3/CWE-6) as a FHIR system URI; None when unknown or local (L, 99zzz)."""
    key = name.strip().upper()
    if not key:
        return None
    if key in CODING_SYSTEMS:
        return CODING_SYSTEMS[key]
    m = _HL7_TABLE.match(key)
    if m:
        return V2 + (m.group(1) or m.group(2)).zfill(4)
    if _OID.match(key):
        return f"urn:oid:{key}"
    return None


def _coding(code: str, display: str, system_name: str, version: str = "") -> JSON | None:
    code, display = present(code), present(display)
    if not code:
        return None
    out: JSON = {}
    system = coding_system(present(system_name))
    if system:
        out["system"] = system
    if version and system:
        out["version"] = version
    out["code"] = code
    if display:
        out["display"] = display
    return out


def codeable(rep: Repetition | None) -> JSON | None:
    """CE/CWE/CNE → CodeableConcept: the identifier triplet, the alternate triplet, original text (CWE-9)."""
    if rep is None:
        return None
    codings = [
        c for c in (
            _coding(rep.component(1), rep.component(2), rep.component(3), present(rep.component(7))),
            _coding(rep.component(4), rep.component(5), rep.component(6), present(rep.component(8))),
        ) if c
    ]
    text = present(rep.component(9)) or (present(rep.component(2)) if not codings else "")
    if not codings and not text:
        return None
    out: JSON = {}
    if codings:
        out["coding"] = codings
    if text:
        out["text"] = text
    return out


def codeable_field(seg: Segment, n: int) -> JSON | None:
    reps = seg.field(n).repetitions
    return codeable(reps[0]) if reps else None


def codeable_list(seg: Segment, n: int) -> list[JSON]:
    return [c for c in (codeable(rep) for rep in seg.field(n).repetitions) if c]


def text_or_code(seg: Segment, n: int) -> JSON | None:
    """A CWE that some senders fill with free text only (``EMERGENCY``): a CodeableConcept either way."""
    concept = codeable_field(seg, n)
    if concept and "coding" in concept and all("system" not in c for c in concept["coding"]):
        first = concept["coding"][0]
        return {"text": first.get("display") or first["code"]}
    return concept


def table_field(seg: Segment, n: int, table: str) -> JSON | None:
    """A CWE field of HL7 table ``table``: when the sender names no coding system (CWE-3 empty), the code is the
    table's (``http://terminology.hl7.org/CodeSystem/v2-<table>``)."""
    concept = codeable_field(seg, n)
    if concept and concept.get("coding") and not present(seg.value(n, 3)):
        concept["coding"][0]["system"] = V2 + table
    return concept


def v2_code(table: str, code: str, display: str | None = None) -> JSON:
    out: JSON = {"system": V2 + table, "code": code}
    if display:
        out["display"] = display
    return out


# -- identifiers -----------------------------------------------------------------------------------------------


def authority_system(namespace: str, universal: str, universal_type: str) -> str | None:
    """An assigning authority / HD → Identifier.system: ``urn:oid:`` for ISO OIDs, ``urn:uuid:`` for UUIDs, the
    URI itself for URI/URL, else ``urn:infirmary:hl7v2:authority:<namespace id>`` (percent-encoded)."""
    namespace, universal, kind = present(namespace), present(universal), present(universal_type).upper()
    if universal and (kind == "ISO" or (not kind and _OID.match(universal))) and _OID.match(universal):
        return f"urn:oid:{universal}"
    if universal and kind in ("UUID", "GUID") and _UUID.match(universal):
        return f"urn:uuid:{universal.lower()}"
    if universal and kind in ("URI", "URL") and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$", universal):
        return universal
    name = namespace or universal
    return AUTHORITY_BASE + quote(name, safe="") if name else None


def hd_system(rep: Repetition | None, component: int = 1) -> str | None:
    """HD written as components ``component``.. (MSH-4) → system."""
    if rep is None:
        return None
    return authority_system(rep.component(component), rep.component(component + 1), rep.component(component + 2))


def identifier_type(code: str) -> JSON:
    return {"coding": [v2_code("0203", code)]}


def cx(rep: Repetition, fallback_system: str | None) -> JSON | None:
    """CX → Identifier: value CX-1, system from CX-4 (else CX-9/CX-10, else the sender), type CX-5, period."""
    value = present(rep.component(1))
    if not value:
        return None
    system = authority_system(rep.component(4, 1), rep.component(4, 2), rep.component(4, 3))
    system = system or authority_system(rep.component(9, 1), rep.component(9, 2), rep.component(9, 3))
    system = system or fallback_system
    out: JSON = {}
    kind = present(rep.component(5))
    if kind:
        out["type"] = identifier_type(kind)
    if system:
        out["system"] = system
    out["value"] = value
    start, end = present(rep.component(7)), present(rep.component(8))
    period = {k: v for k, v in (("start", _plain_date(start)), ("end", _plain_date(end))) if v}
    if period:
        out["period"] = period
    return out


def ei(rep: Repetition | None, fallback_system: str | None, kind: str | None = None) -> JSON | None:
    """EI → Identifier (entity id, namespace / universal id / type); EIP's first component is an EI with
    subcomponents, which callers pass as ``rep.component(n, k)`` through :func:`ei_parts`."""
    if rep is None:
        return None
    return ei_parts(rep.component(1), rep.component(2), rep.component(3), rep.component(4), fallback_system, kind)


def ei_parts(value: str, namespace: str, universal: str, universal_type: str, fallback_system: str | None,
             kind: str | None = None) -> JSON | None:
    value = present(value)
    if not value:
        return None
    out: JSON = {}
    if kind:
        out["type"] = identifier_type(kind)
    system = authority_system(namespace, universal, universal_type) or fallback_system
    if system:
        out["system"] = system
    out["value"] = value
    return out


def token(identifier: JSON) -> str:
    """An Identifier as a search token ``system|value`` (escaped, percent-encoded for a URL query)."""
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")

    raw = f"{esc(identifier['system'])}|{esc(identifier['value'])}" if identifier.get("system") else \
        esc(identifier["value"])
    if raw.isascii():  # quote(raw, safe="") of ASCII text, in one pass
        return raw.translate(_PERCENT_ENCODED)
    return quote(raw, safe="")


# -- names, addresses, telecoms, people -----------------------------------------------------------------------

_NAME_USE = {"L": "official", "D": "usual", "M": "maiden", "A": "anonymous", "B": "official", "C": "old",
             "N": "nickname", "S": "anonymous", "U": "temp", "P": "usual", "R": "official", "T": "temp"}


def xpn(rep: Repetition, first: int = 1) -> JSON | None:
    """XPN (from component ``first``; XCN passes 2) → HumanName: family (FN.1), given + middle, suffix, prefix,
    degree as suffix, use from the name type code, period from validity dates."""
    c = first - 1
    family = present(rep.component(c + 1, 1))
    given = [g for g in (present(rep.component(c + 2)), present(rep.component(c + 3))) if g]
    suffix = [s for s in (present(rep.component(c + 4)), present(rep.component(c + 6))) if s]
    prefix = present(rep.component(c + 5))
    if not (family or given):
        return None
    out: JSON = {}
    use = _NAME_USE.get(present(rep.component(c + 7)).upper())
    if use:
        out["use"] = use
    if family:
        out["family"] = family
    if given:
        out["given"] = given
    if prefix:
        out["prefix"] = [prefix]
    if suffix:
        out["suffix"] = suffix
    return out


_ADDRESS_USE = {"H": ("home", None), "B": ("work", None), "O": ("work", None), "C": ("temp", None),
                "BA": ("billing", None), "BI": ("billing", None), "M": (None, "postal"), "P": ("home", None),
                "BR": ("home", None), "L": ("home", None), "RH": ("home", None), "N": ("home", None),
                "SH": ("home", "postal"), "V": ("temp", None), "PH": ("home", "physical")}


def xad(rep: Repetition) -> JSON | None:
    """XAD → Address: line (street SAD.1 / other designation), city, state, postalCode, country, use/type,
    district (county XAD-9)."""
    street, name, number = (present(rep.component(1, i)) for i in (1, 2, 3))
    if name and name not in street:  # SAD: street or mailing address & street name & dwelling number
        street = " ".join(x for x in (street, name, number) if x)
    lines = [x for x in (street, present(rep.component(2))) if x]
    out: JSON = {}
    use, kind = _ADDRESS_USE.get(present(rep.component(7)).upper(), (None, None))
    if use:
        out["use"] = use
    if kind:
        out["type"] = kind
    if lines:
        out["line"] = lines
    for key, comp in (("city", 3), ("district", 9), ("state", 4), ("postalCode", 5), ("country", 6)):
        value = present(rep.component(comp)) if comp != 9 else present(rep.component(comp, 1))
        if value:
            out[key] = value
    return out if set(out) - {"use", "type"} else None


_TELECOM_USE = {"PRN": "home", "ORN": "home", "VHN": "home", "WPN": "work", "PRS": "mobile", "EMR": "home",
                "ASN": "temp", "BPN": "work", "NET": "home"}
_TELECOM_SYSTEM = {"PH": "phone", "CP": "phone", "FX": "fax", "BP": "pager", "Internet": "email",
                   "X.400": "email", "MD": "other", "TDD": "other", "TTY": "other", "SAT": "phone"}


def xtn(rep: Repetition) -> JSON | None:
    """XTN → ContactPoint: value from the unformatted number (XTN-1, before v2.7) or country/area/local/extension
    (XTN-5..8) or the e-mail address (XTN-4); system from XTN-3, use from XTN-2 (CP → mobile)."""
    use_code, equipment = present(rep.component(2)), present(rep.component(3))
    email = present(rep.component(4))
    parts = [present(rep.component(i)) for i in (5, 6, 7)]
    extension = present(rep.component(8))
    unformatted = present(rep.component(12)) or present(rep.component(1))
    if equipment in ("Internet", "X.400") or (email and not any(parts) and not unformatted):
        value, system = email or unformatted, "email"
    else:
        if parts[2]:
            value = " ".join(p for p in (("+" + parts[0]) if parts[0] else "",
                                         f"({parts[1]})" if parts[1] else "", parts[2]) if p)
        else:
            value = unformatted
        if value and extension:
            value += f" ext. {extension}"
        system = _TELECOM_SYSTEM.get(equipment, "phone")
    if not value:
        return None
    out: JSON = {"system": system, "value": value}
    use = "mobile" if equipment == "CP" else _TELECOM_USE.get(use_code)
    if use:
        out["use"] = use
    return out


def xcn(rep: Repetition | None, fallback_system: str | None) -> JSON | None:
    """XCN (a person with an id) → Reference with display and identifier; no Practitioner resource is made."""
    if rep is None:
        return None
    name = xpn(rep, first=2)
    display = " ".join(p for p in (*(name or {}).get("prefix", []), *(name or {}).get("given", []),
                                    (name or {}).get("family", ""), *(name or {}).get("suffix", [])) if p)
    out: JSON = {}
    value = present(rep.component(1))
    if value:
        system = authority_system(rep.component(9, 1), rep.component(9, 2), rep.component(9, 3)) or fallback_system
        out["identifier"] = {**({"system": system} if system else {}), "value": value}
    if display:
        out["display"] = display
    return out or None


def xcn_field(seg: Segment, n: int, fallback_system: str | None) -> JSON | None:
    reps = seg.field(n).repetitions
    return xcn(reps[0], fallback_system) if reps else None


def location_display(rep: Repetition | None) -> str | None:
    """PL (point of care ^ room ^ bed ^ facility ...) → a display string ``facility point-of-care room bed``."""
    if rep is None:
        return None
    parts = [present(rep.component(i, 1)) for i in (4, 1, 2, 3, 9)]
    text = ", ".join(p for p in parts if p)
    return text or None


# -- dates and times ----------------------------------------------------------------------------------------------


class TimeStamp:
    """A parsed TS/DTM: its digits, optional fraction and offset (``+hhmm``), and precision (digits given)."""

    __slots__ = ("digits", "fraction", "offset")

    def __init__(self, digits: str, fraction: str, offset: str) -> None:
        self.digits, self.fraction, self.offset = digits, fraction, offset

    def date(self) -> str:
        d = self.digits
        return "-".join(x for x in (d[0:4], d[4:6], d[6:8]) if x)

    def datetime(self, default_offset: str | None) -> str:
        """FHIR dateTime: date precision as sent; with a time, seconds are filled and the offset is the one sent,
        else ``default_offset`` (the message's MSH-7 offset), else the time is dropped (date precision)."""
        if len(self.digits) <= 8:
            return self.date()
        offset = self.offset or default_offset
        if not offset:
            return self.date()
        d = self.digits.ljust(14, "0")
        time = f"{d[8:10]}:{d[10:12]}:{d[12:14]}{self.fraction}"
        return f"{self.date()}T{time}{_fhir_offset(offset)}"

    def instant(self, default_offset: str | None) -> str | None:
        """FHIR instant (needs a time to the second and an offset), or None."""
        if len(self.digits) < 12 or not (self.offset or default_offset):
            return None
        return self.datetime(default_offset)


def _fhir_offset(offset: str) -> str:
    return "Z" if offset in ("+0000", "-0000") else f"{offset[:3]}:{offset[3:]}"


def parse_ts(text: str) -> TimeStamp | None:
    """TS/DTM text → TimeStamp; None when empty; ValueError when not a valid date/time."""
    text = present(text)
    if not text:
        return None
    m = _TS.match(text)
    if not m or len(m.group(0)) == 0:
        raise ValueError(f"{text!r} is not an HL7 date/time (YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ])")
    digits = "".join(g for g in m.groups()[:6] if g)
    if len(digits) == 10 and m.group(7):
        raise ValueError(f"{text!r}: fractional seconds need seconds")
    try:
        datetime(int(digits[0:4]), int(digits[4:6] or 1), int(digits[6:8] or 1),
                 int(digits[8:10] or 0), int(digits[10:12] or 0), int(digits[12:14] or 0))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid date/time: {exc}") from None
    offset = m.group(8) or ""
    if offset and (int(offset[1:3]) > 14 or int(offset[3:5]) > 59):
        raise ValueError(f"{text!r} has an invalid UTC offset {offset}")
    return TimeStamp(digits, m.group(7) or "", offset)


def _plain_date(text: str) -> str | None:
    try:
        stamp = parse_ts(text)
    except ValueError:
        return None
    return stamp.date() if stamp else None


def message_offset(msh: Segment) -> str | None:
    """The UTC offset of MSH-7, used for times that carry none."""
    try:
        stamp = parse_ts(msh.value(7, 1))
    except ValueError:
        return None
    return stamp.offset or None if stamp else None


def ts(seg: Segment, n: int, offset: str | None, *, component: int = 1, repetition: int = 0,
       kind: str = "dateTime") -> str | None:
    """A TS/DTM field → FHIR ``date``, ``dateTime`` or ``instant``; a MappingError naming the field if invalid."""
    text = seg.value(n, component, repetition)
    try:
        return _fhir_time(text, offset, kind)
    except ValueError as exc:
        raise MappingError(seg.name, seg.index, n, str(exc), component if component > 1 else None) from None


@functools.lru_cache(maxsize=1024)
def _fhir_time(text: str, offset: str | None, kind: str) -> str | None:
    """:func:`ts` of one value (a pure function of its arguments: the times of a message repeat, and a
    sender's times repeat across messages)."""
    stamp = parse_ts(text)
    if stamp is None:
        return None
    if kind == "date":
        return stamp.date()
    if kind == "instant":
        return stamp.instant(offset)
    return stamp.datetime(offset)


def date_from_ts(seg: Segment, n: int, component: int = 1) -> str | None:
    """A date element (birthDate, expirationDate) from a TS/DT field: the date part, full precision or less."""
    value = ts(seg, n, None, component=component, kind="date")
    if value and len(value) == 10:
        date.fromisoformat(value)
    return value


# -- numbers, quantities, OBX values -------------------------------------------------------------------------------

# Units that senders spell in ISO+/ANSI+ or free text → UCUM.
UNITS_TO_UCUM: dict[str, str] = {
    "beats/min": "/min", "bpm": "/min", "/min": "/min", "breaths/min": "/min",
    "%": "%", "percent": "%", "mg/dl": "mg/dL", "g/dl": "g/dL", "mmol/l": "mmol/L", "umol/l": "umol/L",
    "mg/l": "mg/L", "g/l": "g/L", "meq/l": "meq/L", "iu/l": "[IU]/L", "u/l": "U/L", "ng/ml": "ng/mL",
    "pg/ml": "pg/mL", "fl": "fL", "pg": "pg", "mm[hg]": "mm[Hg]", "mmhg": "mm[Hg]", "kg": "kg", "g": "g",
    "lb": "[lb_av]", "lbs": "[lb_av]", "cm": "cm", "m": "m", "in": "[in_i]", "cel": "Cel", "degc": "Cel",
    "ml": "mL", "l": "L", "mg": "mg", "ug": "ug", "mcg": "ug", "s": "s", "sec": "s", "min": "min", "h": "h",
    "hr": "h", "d": "d", "kg/m2": "kg/m2", "tera.l-1": "10*12/L", "giga.l-1": "10*9/L", "10*12/l": "10*12/L",
    "10*9/l": "10*9/L", "10*3/ul": "10*3/uL", "10*6/ul": "10*6/uL", "x10e3/ul": "10*3/uL",
    "x10e6/ul": "10*6/uL", "mg/hr": "mg/h", "ml/hr": "mL/h", "meq": "meq",
}
_UCUM_SYSTEM_NAMES = {"UCUM", "ISO+", "ANSI+", "ISO", "ANS+"}


def decimal(text: str) -> orjson.Fragment | int | None:
    """An NM value as a JSON number that keeps its digits (``40.10`` stays ``40.10``): an ``orjson.Fragment``,
    which ``orjson.dumps`` (and ``fhir_server.jsonio.dumps``) write verbatim; None when not a number."""
    text = present(text)
    if not _NUMBER.match(text):
        return None
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("+-").partition(".")
    whole = whole.lstrip("0") or "0"
    if not fraction:
        number = int(sign + whole)
        return number if abs(number) < 2**53 else orjson.Fragment(f"{sign}{whole}")
    if sign and whole == "0" and not fraction.strip("0"):
        sign = ""
    return orjson.Fragment(f"{sign}{whole}.{fraction}")


def unit(rep: Repetition | None) -> JSON:
    """CE/CWE units (OBX-6) → Quantity unit/system/code: UCUM when the sender says so or the unit is a known
    spelling of a UCUM unit; otherwise the unit text only (a code without a system is not allowed)."""
    if rep is None:
        return {}
    return unit_parts(rep.component(1), rep.component(2), rep.component(3))


def unit_parts(code: str, text: str, system: str) -> JSON:
    code, text, system = present(code), present(text), present(system).upper()
    if not code and not text:
        return {}
    label = text or code
    ucum = UNITS_TO_UCUM.get(code.lower()) or UNITS_TO_UCUM.get(text.lower())
    if system == "UCUM" and code:
        return {"unit": label, "system": UCUM, "code": code}
    if ucum and (system in _UCUM_SYSTEM_NAMES or not system):
        return {"unit": label, "system": UCUM, "code": ucum}
    return {"unit": label}


def quantity(value: orjson.Fragment | int, units: JSON, comparator: str | None = None) -> JSON:
    out: JSON = {"value": value}
    if comparator:
        out["comparator"] = comparator
    out.update(units)
    return out


_COMPARATORS = {"<": "<", ">": ">", "<=": "<=", ">=": ">=", "=": None, "": None, "<>": None}


def reference_range(text: str, units: JSON) -> JSON | None:
    """OBX-7 → referenceRange: ``low-high``, ``>low``/``>=low``, ``<high``/``<=high``; anything else as text."""
    text = present(text)
    if not text:
        return None
    m = re.match(r"^\s*([+-]?[\d.]+)\s*-\s*([+-]?[\d.]+)\s*$", text)
    if m and decimal(m.group(1)) is not None and decimal(m.group(2)) is not None:
        return {"low": quantity(decimal(m.group(1)), units),  # type: ignore[arg-type]
                "high": quantity(decimal(m.group(2)), units),  # type: ignore[arg-type]
                "text": text}
    m = re.match(r"^\s*(<=|>=|<|>)\s*([+-]?[\d.]+)\s*$", text)
    if m and decimal(m.group(2)) is not None:
        bound = "low" if m.group(1).startswith(">") else "high"
        return {bound: quantity(decimal(m.group(2)), units), "text": text}  # type: ignore[arg-type]
    return {"text": text}


# HL7 table 0078 abnormal flags → v3 ObservationInterpretation (same codes in R4, a few renamed).
_INTERPRETATION = {
    "L": "Low", "H": "High", "LL": "Critical low", "HH": "Critical high", "N": "Normal", "A": "Abnormal",
    "AA": "Critical abnormal", "<": "Off scale low", ">": "Off scale high", "S": "Susceptible",
    "R": "Resistant", "I": "Intermediate", "MS": "moderately susceptible", "VS": "very susceptible",
    "U": "Significant change up", "D": "Significant change down", "B": "Better", "W": "Worse",
    "POS": "Positive", "NEG": "Negative", "IND": "Indeterminate", "DET": "Detected", "ND": "Not detected",
    "E": "Equivocal", "EX": "outside threshold", "HX": "above high threshold", "LX": "below low threshold",
    "NR": "Non-reactive", "RR": "Reactive", "WR": "Weakly reactive", "HU": "Significantly high",
    "LU": "Significantly low", "SDD": "Susceptible-dose dependent", "NS": "Non-susceptible",
    "CAR": "Carrier", "QCF": "Quality control failure", "TOX": "Cytotoxic substance present",
    "EXP": "Expected", "UNE": "Unexpected", "OBX": "Interpretation qualifiers in separate OBX segments",
}


def interpretation(rep: Repetition) -> JSON | None:
    """One OBX-8 abnormal flag → CodeableConcept in v3 ObservationInterpretation (unknown flags keep the v2
    table 0078 system)."""
    code = present(rep.component(1))
    if not code:
        return None
    if code in _INTERPRETATION:
        return {"coding": [{"system": V3_INTERPRETATION, "code": code, "display": _INTERPRETATION[code]}]}
    return {"coding": [v2_code("0078", code)]}


__all__ = [
    "CODING_SYSTEMS",
    "JSON",
    "TimeStamp",
    "authority_system",
    "codeable",
    "codeable_field",
    "codeable_list",
    "coding_system",
    "cx",
    "date_from_ts",
    "decimal",
    "ei",
    "ei_parts",
    "hd_system",
    "interpretation",
    "location_display",
    "message_offset",
    "parse_ts",
    "present",
    "quantity",
    "reference_range",
    "table_field",
    "text_or_code",
    "token",
    "ts",
    "unit",
    "unit_parts",
    "v2_code",
    "xad",
    "xcn",
    "xcn_field",
    "xpn",
    "xtn",
]
