"""The MongoDB search compiler: the filter documents it generates for every search feature, and what they find.

Each test checks the generated filter (so a change in the compiled form is seen) and runs it against the MongoDB
under test (``FHIR_TEST_MONGODB_URL`` or the emulator, tests/mongo_server.py) over a small fixed world of index
entries, so the filter is also known to find the right resources.  Sorting, paging, totals and includes are
compared with the SQLite backend on the same writes: the two must answer identically.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fhir_server.indexing.entries import (
    CompositeEntry,
    DateEntry,
    IndexEntries,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from fhir_server.search.model import (
    AnyOf,
    Chain,
    Clause,
    CompositeValue,
    Criterion,
    DateValue,
    Has,
    MissingValue,
    NearValue,
    Not,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.storage.base import HistoryQuery, IncludeSpec, Repository, SearchRequest, WriteOp
from fhir_server.storage.mongo._compile import Compiler
from fhir_server.storage.mongo._schema import client_options
from fhir_server.storage.mongo._search import Column, columns, keyset, sort_spec
from fhir_server.storage.mongo._write import criteria_key
from fhir_server.storage.mongo.repository import MongoConfigurationError, MongoRepository
from fhir_server.storage.sqlite.repository import SQLiteRepository
from tests.mongo_server import MongoTarget, mongo_target

G = "http://hl7.org/fhir/administrative-gender"
MRN = "urn:mrn"
UCUM = "http://unitsofmeasure.org"
Y1984 = (441763200.0, 473385600.0)
Y1990_06 = (644198400.0, 646790400.0)
Y2020 = (1577836800.0, 1609459200.0)


def _op(rtype: str, id: str, **lists: Any) -> WriteOp:
    entries = IndexEntries()
    for name, items in lists.items():
        if name in ("narrative", "content"):
            setattr(entries, name, items)
        else:
            getattr(entries, name).extend(items)
    return WriteOp("update", rtype, id=id, resource={"resourceType": rtype, "id": id}, index=entries)


def world() -> list[WriteOp]:
    return [
        _op("Patient", "pa",
            strings=[StringEntry("family", "muller", "Müller"), StringEntry("given", "anne", "Anne")],
            tokens=[TokenEntry("gender", G, "male"),
                    TokenEntry("identifier", MRN, "A1", "medical record", "v2", "MR")],
            dates=[DateEntry("birthdate", *Y1984)],
            uris=[UriEntry("_source", "http://example.org/src/a")],
            references=[ReferenceEntry("general-practitioner", "Practitioner", "dr")],
            narrative="O'Brien had an x-ray", content="Müller Anne"),
        _op("Patient", "pb",
            strings=[StringEntry("family", "smith", "Smith")],
            tokens=[TokenEntry("gender", G, "female"), TokenEntry("identifier", None, "A1")],
            dates=[DateEntry("birthdate", *Y1990_06)],
            content="Smith"),
        _op("Patient", "pc"),
        _op("Practitioner", "dr", strings=[StringEntry("name", "house", "House")]),
        _op("Observation", "o1",
            references=[ReferenceEntry("subject", "Patient", "pa"),
                        ReferenceEntry("performer", url="http://x/y", version="2")],
            tokens=[TokenEntry("code", "http://loinc.org", "29463-7", "body weight")],
            quantities=[QuantityEntry("value-quantity", 72.5, 72.45, 72.55, UCUM, "kg", "kg", "g", 72500.0,
                                      72450.0, 72550.0)],
            dates=[DateEntry("date", *Y2020)],
            composites=[CompositeEntry("code-value-quantity", (
                (TokenEntry("code", "http://loinc.org", "29463-7"),),
                (QuantityEntry("value-quantity", 72.5, 72.45, 72.55, UCUM, "kg", "kg"),)))]),
        _op("Observation", "o2",
            references=[ReferenceEntry("subject", "Patient", "pb"),
                        ReferenceEntry("based-on", identifier_system=MRN, identifier_value="ORD-1")],
            tokens=[TokenEntry("code", "http://loinc.org", "8480-6")],
            quantities=[QuantityEntry("value-quantity", 100.0, 99.5, 100.5, None, None, "U")],
            dates=[DateEntry("date", 1600000000.0, math.inf)]),
        _op("RiskAssessment", "r1", numbers=[NumberEntry("probability", 0.5, 0.45, 0.55)]),
        _op("List", "l0", references=[ReferenceEntry("item", "Patient", "pb")]),
        _op("Location", "loc", composites=[CompositeEntry("near", (
            (NumberEntry("near", 52.52, 52.52, 52.52),), (NumberEntry("near", 13.40, 13.40, 13.40),)))]),
    ]


@pytest.fixture(scope="module")
def target() -> MongoTarget:
    return mongo_target()


@pytest.fixture
async def repo(target: MongoTarget) -> AsyncIterator[MongoRepository]:
    repository = target.repository()
    await repository.open()
    await repository.write(world())
    try:
        yield repository
    finally:
        await repository.close()


async def run(repo: MongoRepository, rtype: str, *criteria: Criterion) -> tuple[dict[str, Any], set[str]]:
    """The compiled filter (without the type and live conditions) and the ids it finds."""
    compiler = Compiler(repo.resources)
    flt = await compiler.query(criteria, rtype)
    found = {d["id"] async for d in repo.resources.find(flt, {"id": 1})}
    base = {"type": rtype, "del": False}
    if flt == base:
        return {}, found
    assert flt["$and"][0] == base
    rest = flt["$and"][1:]
    return (rest[0] if len(rest) == 1 else {"$and": rest}), found


def s(text: str) -> StringValue:
    return StringValue(text, text.lower().replace("ü", "u"))


def tok(system: str | None, code: str | None) -> TokenValue:
    return TokenValue(system, code)


async def test_strings(repo: MongoRepository) -> None:
    flt, ids = await run(repo, "Patient", Clause("family", "string", (s("MUL"),)))
    assert flt == {"ix.s": {"$elemMatch": {"p": "family", "n": {"$gte": "mul", "$lt": "mul\U0010ffff"}}}}
    assert ids == {"pa"}
    flt, ids = await run(repo, "Patient", Clause("family", "string", (StringValue("Müller", "muller"),), "exact"))
    assert flt == {"ix.s": {"$elemMatch": {"p": "family", "e": "Müller"}}} and ids == {"pa"}
    assert (await run(repo, "Patient", Clause("family", "string", (s("muller"),), "exact")))[1] == set()
    flt, ids = await run(repo, "Patient", Clause("family", "string", (s("i.h"), s("ll")), "contains"))
    assert flt == {"$or": [{"ix.s": {"$elemMatch": {"p": "family", "n": {"$regex": "i\\.h"}}}},
                           {"ix.s": {"$elemMatch": {"p": "family", "n": {"$regex": "ll"}}}}]}
    assert ids == {"pa"}  # "i.h" is literal: "smith" has no dot


async def test_tokens(repo: MongoRepository) -> None:
    def gender(*values: TokenValue, modifier: str | None = None) -> Clause:
        return Clause("gender", "token", values, modifier)

    flt, ids = await run(repo, "Patient", gender(tok(None, "male")))
    assert flt == {"ix.t": {"$elemMatch": {"p": "gender", "c": "male"}}} and ids == {"pa"}
    flt, ids = await run(repo, "Patient", gender(tok(G, "female")))
    assert flt == {"ix.t": {"$elemMatch": {"p": "gender", "c": "female", "s": G}}} and ids == {"pb"}
    flt, ids = await run(repo, "Patient", gender(tok(G, None)))
    assert flt == {"ix.t": {"$elemMatch": {"p": "gender", "s": G}}} and ids == {"pa", "pb"}
    flt, ids = await run(repo, "Patient", Clause("identifier", "token", (tok("", "A1"),)))
    assert flt == {"ix.t": {"$elemMatch": {"p": "identifier", "c": "A1", "s": ""}}} and ids == {"pb"}
    flt, ids = await run(repo, "Patient", Clause("identifier", "token", (tok(None, "medical r"),), "text"))
    assert flt == {"ix.t": {"$elemMatch": {"p": "identifier", "x": {"$gte": "medical r",
                                                                    "$lt": "medical r\U0010ffff"}}}}
    assert ids == {"pa"}
    of_type = TokenValue(None, "A1", "v2", "MR")
    flt, ids = await run(repo, "Patient", Clause("identifier", "token", (of_type,), "of-type"))
    assert flt == {"ix.t": {"$elemMatch": {"p": "identifier", "ts": "v2", "tc": "MR", "c": "A1"}}}
    assert ids == {"pa"}
    flt, ids = await run(repo, "Patient", Not(gender(tok(None, "male"))))
    assert flt == {"$nor": [{"ix.t": {"$elemMatch": {"p": "gender", "c": "male"}}}]}
    assert ids == {"pb", "pc"}  # :not also finds resources without a gender


async def test_dates_every_prefix(repo: MongoRepository) -> None:
    june = DateValue("eq", 455328000.0, 457920000.0)  # 1984-06
    expected = {
        "eq": ({"lo": {"$gte": june.low}, "hi": {"$lte": june.high}}, set()),
        "ne": ([{"lo": {"$lt": june.low}}, {"hi": {"$gt": june.high}}], {"pa", "pb"}),
        "gt": ({"hi": {"$gt": june.high}}, {"pa", "pb"}),
        "lt": ({"lo": {"$lt": june.low}}, {"pa"}),
        "ge": ([{"hi": {"$gt": june.high}}, {"lo": {"$gte": june.low}, "hi": {"$lte": june.high}}], {"pa", "pb"}),
        "le": ([{"lo": {"$lt": june.low}}, {"lo": {"$gte": june.low}, "hi": {"$lte": june.high}}], {"pa"}),
        "sa": ({"lo": {"$gte": june.high}}, {"pb"}),
        "eb": ({"hi": {"$lte": june.low}}, set()),
    }
    for prefix, (conds, ids) in expected.items():
        value = DateValue(prefix, june.low, june.high)  # type: ignore[arg-type]
        flt, found = await run(repo, "Patient", Clause("birthdate", "date", (value,)))
        alts = conds if isinstance(conds, list) else [conds]
        matches = [{"ix.d": {"$elemMatch": {"p": "birthdate", **alt}}} for alt in alts]
        assert flt == (matches[0] if len(matches) == 1 else {"$or": matches}), prefix
        assert found == ids, prefix
    ap = DateValue("ap", *Y1984)
    flt, found = await run(repo, "Patient", Clause("birthdate", "date", (ap,)))
    cond = flt["ix.d"]["$elemMatch"]
    assert cond["lo"]["$lt"] > Y1984[1] and cond["hi"]["$gt"] < Y1984[0] and found == {"pa"}
    # an open-ended period (o2 from 2020-09 on) is after any date
    assert (await run(repo, "Observation", Clause("date", "date", (DateValue("gt", 2e9, 2e9 + 1),))))[1] == {"o2"}


async def test_last_updated_and_id(repo: MongoRepository) -> None:
    stored = await repo.read("Patient", "pb")
    assert stored is not None
    lu = (await repo.resources.find_one({"_id": "Patient/pb"}))["lu"]  # type: ignore[index]
    flt, ids = await run(repo, "Patient", Clause("_lastUpdated", "lastUpdated", (DateValue("ge", lu, lu + 1),)))
    assert flt == {"$or": [{"lu": {"$gt": lu + 1}}, {"lu": {"$gte": lu, "$lte": lu + 1}}]}
    assert ids == {"pb", "pc"}
    flt, ids = await run(repo, "Patient", Clause("_id", "id", (tok(None, "pa"), tok(None, "zz"))))
    assert flt == {"_id": {"$in": ["Patient/pa", "Patient/zz"]}} and ids == {"pa"}
    flt, ids = await run(repo, "Patient", Clause("_id", "id", (MissingValue(False),), "missing"))
    assert flt == {} and ids == {"pa", "pb", "pc"}


async def test_numbers_and_quantities(repo: MongoRepository) -> None:
    flt, ids = await run(repo, "RiskAssessment",
                         Clause("probability", "number", (NumberValue("ne", Decimal("0.5"), 0.45, 0.55),)))
    assert flt == {"$or": [{"ix.n": {"$elemMatch": {"p": "probability", "v": {"$lt": 0.45}}}},
                           {"ix.n": {"$elemMatch": {"p": "probability", "v": {"$gte": 0.55}}}}]}
    assert ids == set()
    grams = QuantityValue("eq", Decimal("72500"), 72499.5, 72500.5, None, "g", "g", 72500.0, 72499.5, 72500.5)
    flt, ids = await run(repo, "Observation", Clause("value-quantity", "quantity", (grams,)))
    assert flt == {"$or": [
        {"ix.q": {"$elemMatch": {"p": "value-quantity", "cc": "g", "cv": {"$gte": 72499.5, "$lt": 72500.5}}}},
        {"ix.q": {"$elemMatch": {"p": "value-quantity", "cc": "", "c": "g", "v": {"$gte": 72499.5,
                                                                                   "$lt": 72500.5}}}},
        {"ix.q": {"$elemMatch": {"p": "value-quantity", "cc": "", "u": "g", "v": {"$gte": 72499.5,
                                                                                   "$lt": 72500.5}}}},
    ]}
    assert ids == {"o1"}  # 72.5 kg, in canonical units
    units = QuantityValue("ge", Decimal("100"), 99.5, 100.5, None, "U")
    flt, ids = await run(repo, "Observation", Clause("value-quantity", "quantity", (units,)))
    assert flt == {"$or": [{"ix.q": {"$elemMatch": {"p": "value-quantity", "c": "U", "v": {"$gte": 100.0}}}},
                           {"ix.q": {"$elemMatch": {"p": "value-quantity", "u": "U", "v": {"$gte": 100.0}}}}]}
    assert ids == {"o2"}  # found by its unit text
    plain = QuantityValue("lt", Decimal("80"), 79.5, 80.5, UCUM, None)
    flt, ids = await run(repo, "Observation", Clause("value-quantity", "quantity", (plain,)))
    assert flt == {"ix.q": {"$elemMatch": {"p": "value-quantity", "s": UCUM, "v": {"$lt": 80.0}}}}
    assert ids == {"o1"}


async def test_references(repo: MongoRepository) -> None:
    def subject(value: ReferenceValue, param: str = "subject") -> Clause:
        return Clause(param, "reference", (value,))

    flt, ids = await run(repo, "Observation", subject(ReferenceValue("Patient", "pa")))
    assert flt == {"ix.r": {"$elemMatch": {"p": "subject", "t": "Patient", "i": "pa"}}} and ids == {"o1"}
    assert (await run(repo, "Observation", subject(ReferenceValue(id="pb"))))[1] == {"o2"}
    flt, ids = await run(repo, "Observation", subject(ReferenceValue(url="http://x/y", version="2"), "performer"))
    assert flt == {"ix.r": {"$elemMatch": {"p": "performer", "u": "http://x/y", "v": "2"}}} and ids == {"o1"}
    assert (await run(repo, "Observation", subject(ReferenceValue(url="http://x/y", version="3"), "performer")
                      ))[1] == set()
    flt, ids = await run(repo, "Observation", subject(
        ReferenceValue(identifier_system=MRN, identifier_value="ORD-1"), "based-on"))
    assert flt == {"ix.r": {"$elemMatch": {"p": "based-on", "iv": "ORD-1", "is": MRN}}} and ids == {"o2"}


async def test_uris(repo: MongoRepository) -> None:
    def source(value: str, modifier: str | None = None) -> Clause:
        return Clause("_source", "uri", (UriValue(value),), modifier)

    flt, ids = await run(repo, "Patient", source("http://example.org/src/a"))
    assert flt == {"ix.u": {"$elemMatch": {"p": "_source", "u": "http://example.org/src/a"}}} and ids == {"pa"}
    flt, ids = await run(repo, "Patient", source("http://example.org/src", "below"))
    assert flt == {"ix.u": {"$elemMatch": {"p": "_source", "u": {"$gte": "http://example.org/src",
                                                                 "$lt": "http://example.org/src\U0010ffff"}}}}
    assert ids == {"pa"}
    assert (await run(repo, "Patient", source("HTTP://EXAMPLE.ORG", "below")))[1] == set()  # case-sensitive
    flt, ids = await run(repo, "Patient", source("http://example.org/src/a/b", "above"))
    prefixes = flt["ix.u"]["$elemMatch"]["u"]["$in"]
    assert prefixes[0] == "" and prefixes[-1] == "http://example.org/src/a/b" and len(prefixes) == 27
    assert ids == {"pa"}


async def test_composite_matches_within_one_element(repo: MongoRepository) -> None:
    def combo(code: str, prefix: str, number: str) -> Clause:
        value = CompositeValue((tok(None, code), QuantityValue(prefix, Decimal(number), 0, 0, None, None)))  # type: ignore[arg-type]
        return Clause("code-value-quantity", "composite", (value,), None, ("token", "quantity"))

    flt, ids = await run(repo, "Observation", combo("29463-7", "gt", "70"))
    assert flt == {"ix.c": {"$elemMatch": {
        "p": "code-value-quantity",
        "k0": {"$elemMatch": {"k": "t", "c": "29463-7"}},
        "k1": {"$elemMatch": {"k": "q", "v": {"$gt": 70.0}}},
    }}}
    assert ids == {"o1"}
    assert (await run(repo, "Observation", combo("8480-6", "gt", "70")))[1] == set()
    flt, ids = await run(repo, "Observation", Clause("code-value-quantity", "composite", (MissingValue(True),),
                                                     "missing"))
    assert flt == {"ix.c.p": {"$ne": "code-value-quantity"}} and ids == {"o2"}


async def test_missing(repo: MongoRepository) -> None:
    flt, ids = await run(repo, "Patient", Clause("birthdate", "date", (MissingValue(True),), "missing"))
    assert flt == {"ix.d.p": {"$ne": "birthdate"}} and ids == {"pc"}
    flt, ids = await run(repo, "Patient", Clause("identifier", "token", (MissingValue(False),), "missing"))
    assert flt == {"ix.t.p": "identifier"} and ids == {"pa", "pb"}


async def test_fulltext(repo: MongoRepository) -> None:
    flt, ids = await run(repo, "Patient", Clause("_text", "text", (s("bri"),)))
    assert flt == {"ft.n": {"$gte": "bri", "$lt": "bri\U0010ffff"}} and ids == {"pa"}
    flt, ids = await run(repo, "Patient", Clause("_text", "text", (s("o'brien"),)))
    assert flt == {"$and": [{"ft.n": "o"}, {"ft.ns": {"$regex": "\\ o\\ brien"}}]} and ids == {"pa"}
    assert (await run(repo, "Patient", Clause("_text", "text", (s("ray-x"),))))[1] == set()  # not in order
    assert (await run(repo, "Patient", Clause("_text", "text", (s("x-ra"),))))[1] == {"pa"}  # last word: prefix
    flt, ids = await run(repo, "Patient", Clause("_content", "content", (s("-"),)))
    assert flt == {"_id": {"$in": []}} and ids == set()  # a word the tokenizer drops matches nothing
    flt, ids = await run(repo, "Patient", Clause("_content", "content", (s("zz"), s("smi"))))
    assert ids == {"pb"} and "$or" in flt


async def test_chain_has_list_near_resolve_first(repo: MongoRepository) -> None:
    compiler = Compiler(repo.resources)
    chain = Chain("subject", ("Patient", "Group"), Clause("gender", "token", (tok(None, "male"),)))
    flt = await compiler.criterion(chain, "Observation")
    assert flt == {"ix.r": {"$elemMatch": {"p": "subject", "t": "Patient", "i": {"$in": ["pa"]}}}}
    assert [t for t, _ in compiler.resolved] == ["Patient", "Group"]
    assert (await run(repo, "Observation", chain))[1] == {"o1"}
    two = Chain("subject", ("Patient",), Chain("general-practitioner", ("Practitioner",),
                                                Clause("name", "string", (s("hou"),))))
    assert (await run(repo, "Observation", two))[1] == {"o1"}

    has = Has("Observation", "subject", Clause("code", "token", (tok(None, "8480-6"),)))
    flt, ids = await run(repo, "Patient", has)
    assert flt == {"_id": {"$in": ["Patient/pb"]}} and ids == {"pb"}
    nested = Has("Observation", "subject", Has("List", "item", Clause("_id", "id", (tok(None, "l0"),))))
    assert (await run(repo, "Patient", nested))[1] == set()  # l0 lists a Patient, not an Observation
    flt, ids = await run(repo, "Patient", Clause("_list", "list", (tok(None, "l0"),)))
    assert flt == {"_id": {"$in": ["Patient/pb"]}} and ids == {"pb"}

    near = Clause("near", "near", (NearValue(52.5, 13.4, 5.0),))
    flt, ids = await run(repo, "Location", near)
    assert flt == {"_id": {"$in": ["Location/loc"]}} and ids == {"loc"}
    assert (await run(repo, "Location", Clause("near", "near", (NearValue(48.1, 11.6, 5.0),))))[1] == set()


async def test_any_of_and_not(repo: MongoRepository) -> None:
    compartment = AnyOf((Clause("subject", "reference", (ReferenceValue("Patient", "pa"),)),
                         Clause("performer", "reference", (ReferenceValue("Patient", "pa"),))))
    flt, ids = await run(repo, "Observation", compartment)
    assert list(flt) == ["$or"] and len(flt["$or"]) == 2 and ids == {"o1"}
    assert flt == {"$or": [{"ix.r": {"$elemMatch": {"p": "subject", "t": "Patient", "i": "pa"}}},
                           {"ix.r": {"$elemMatch": {"p": "performer", "t": "Patient", "i": "pa"}}}]}
    negated, ids = await run(repo, "Observation", Not(compartment))
    assert negated == {"$nor": [flt]} and ids == {"o2"}


def test_keyset_and_sort_spec() -> None:
    query = SearchQuery("Patient", sort=(SortKey("family", "string", True), SortKey("_id", "id")))
    cols = columns(query)
    assert cols == [Column("srt.family.e", True, flag=True), Column("srt.family.d", True), Column("id", False),
                    Column("rid", False), Column("_id", False)]
    assert sort_spec(cols, True) == [("srt.family.e", -1), ("srt.family.d", -1), ("id", 1), ("rid", 1), ("_id", 1)]
    assert sort_spec(cols, False) == [("srt.family.e", 1), ("srt.family.d", 1), ("id", -1), ("rid", -1),
                                      ("_id", -1)]
    row = [1, "smith", "pb", 7, "Patient/pb"]
    assert keyset(cols, row, True) == {"$or": [
        {"srt.family.e": None},
        {"$and": [{"srt.family.e": 1}, {"srt.family.d": {"$lt": "smith"}}]},
        {"$and": [{"srt.family.e": 1}, {"srt.family.d": "smith"}, {"id": {"$gt": "pb"}}]},
        {"$and": [{"srt.family.e": 1}, {"srt.family.d": "smith"}, {"id": "pb"}, {"rid": {"$gt": 7}}]},
        {"$and": [{"srt.family.e": 1}, {"srt.family.d": "smith"}, {"id": "pb"}, {"rid": 7},
                  {"_id": {"$gt": "Patient/pb"}}]},
    ]}
    # a row without a family: only rows without one come after it (missing sorts last both ways)
    no_family = [None, None, "pc", 9, "Patient/pc"]
    assert keyset(cols, no_family, True)["$or"][0] == {"$and": [{"srt.family.e": None}, {"srt.family.d": None},
                                                                {"id": {"$gt": "pc"}}]}
    assert len(keyset(cols, no_family, True)["$or"]) == 3
    # backwards from it: every row with a family comes before it
    assert keyset(cols, no_family, False)["$or"][0] == {"srt.family.e": {"$ne": None}}


def test_url_settings_win_over_defaults() -> None:
    options, db = client_options("mongodb://a:1,b:2/clinic?replicaSet=rs0&w=1")
    assert db == "clinic"
    assert "w" not in options and options["journal"] is True and options["readConcernLevel"] == "majority"
    assert options["retryWrites"] is True and options["retryReads"] is True
    options, db = client_options("mongodb://a/?readConcernLevel=local&retryWrites=false&journal=false")
    assert db == "infirmary" and options["w"] == "majority"
    assert not {"readConcernLevel", "retryWrites", "journal"} & set(options)
    options, db = client_options("mongodb+srv://u:p%40ss@cluster.example.org/wards?j=false")  # no DNS look-up
    assert db == "wards" and "journal" not in options and options["w"] == "majority"
    with pytest.raises(ValueError):
        client_options("postgres://db/x")


def test_conditional_create_key_ignores_parameter_order() -> None:
    a = Clause("identifier", "token", (tok(MRN, "1"),))
    b = Clause("family", "string", (s("x"),))
    assert criteria_key(SearchQuery("Patient", (a, b))) == criteria_key(SearchQuery("Patient", (b, a)))
    assert criteria_key(SearchQuery("Patient", (a,))) != criteria_key(SearchQuery("Practitioner", (a,)))


async def test_standalone_server_is_refused_at_start_up(target: MongoTarget) -> None:
    if not target.emulated:
        pytest.skip("the MongoDB under test is a replica set (the emulator is the standalone server here)")
    repository = MongoRepository(target.url, database="refused")
    with pytest.raises(MongoConfigurationError, match="replica set"):
        await repository.open()


# -- the same answers as SQLite --------------------------------------------------------------------------------


async def _both(tmp_path: Path, target: MongoTarget) -> tuple[SQLiteRepository, MongoRepository]:
    sqlite = SQLiteRepository(tmp_path / "same.db")
    mongo = target.repository()
    for repository in (sqlite, mongo):
        await repository.open()
        await repository.write(world())
        await repository.write([_op("Patient", "pd", strings=[StringEntry("family", "muller", "Muller")]),
                                _op("Patient", "pe", strings=[StringEntry("family", "abbot", "Abbot"),
                                                              StringEntry("family", "zed", "Zed")])])
    return sqlite, mongo


async def _pages(repo: Repository, query: SearchQuery, count: int) -> tuple[list[str], list[str], int | None]:
    """Every page forwards, then every page backwards from the last."""
    forward: list[str] = []
    cursor = None
    last_cursor = None
    total = None
    for _ in range(20):  # a cursor that does not move on would loop forever
        page = await repo.search(SearchRequest(query, count, cursor))
        total = page.total
        forward.extend(v.id for v in page.matches)
        if page.next_cursor is None:
            last_cursor = page.previous_cursor
            break
        cursor = page.next_cursor
    backward: list[str] = []
    cursor = last_cursor
    for _ in range(20):
        if cursor is None:
            break
        page = await repo.search(SearchRequest(query, count, cursor))
        backward[:0] = [v.id for v in page.matches]
        cursor = page.previous_cursor
    return forward, backward, total


async def test_sorting_and_paging_answer_as_sqlite(tmp_path: Path, target: MongoTarget) -> None:
    sqlite, mongo = await _both(tmp_path, target)
    try:
        sorts = [(), (SortKey("family", "string"),), (SortKey("family", "string", True),),
                 (SortKey("birthdate", "date", True), SortKey("_id", "id")), (SortKey("_lastUpdated", "lastUpdated",
                                                                                        True),),
                 (SortKey("gender", "token"), SortKey("family", "string", True))]
        for sort in sorts:
            query = SearchQuery("Patient", sort=sort)
            for count in (1, 2, 10):
                expected = await _pages(sqlite, query, count)
                got = await _pages(mongo, query, count)
                assert got == expected, (sort, count)
                forward, backward, total = got
                assert total == 5 and sorted(forward) == ["pa", "pb", "pc", "pd", "pe"]
                # backwards from the last page: the pages before it, in the same order
                assert backward == forward[: {1: 4, 2: 4, 10: 0}[count]]
        # families: Abbot/Zed, Müller, Muller, Smith, none — missing values last in both directions
        by_family = (await _pages(mongo, SearchQuery("Patient", sort=(SortKey("family", "string"),)), 2))[0]
        assert by_family == ["pe", "pa", "pd", "pb", "pc"]
        by_family_desc = (await _pages(mongo, SearchQuery("Patient", sort=(SortKey("family", "string", True),)),
                                       2))[0]
        assert by_family_desc == ["pe", "pb", "pa", "pd", "pc"]
    finally:
        await sqlite.close()
        await mongo.close()


async def test_includes_and_totals_answer_as_sqlite(tmp_path: Path, target: MongoTarget) -> None:
    sqlite, mongo = await _both(tmp_path, target)
    try:
        cases = [
            (SearchQuery("Observation"), (IncludeSpec("Observation", ("subject",)),)),
            (SearchQuery("Observation"), (IncludeSpec("Observation", ("subject",), "Patient", iterate=False),
                                          IncludeSpec("Patient", ("general-practitioner",), iterate=True))),
            (SearchQuery("Patient"), (IncludeSpec("Observation", ("subject",), reverse=True),)),
            (SearchQuery("Patient", (Clause("gender", "token", (tok(None, "male"),)),)),
             (IncludeSpec("List", ("item",), reverse=True), IncludeSpec("Observation", ("subject",), reverse=True))),
        ]
        for query, specs in cases:
            answers = []
            for repository in (sqlite, mongo):
                page = await repository.search(SearchRequest(query, 10, includes=specs))
                answers.append(([v.id for v in page.matches], [(v.resource_type, v.id) for v in page.included],
                                page.total))
            assert answers[0] == answers[1], (query, specs)
        page = await mongo.search(SearchRequest(SearchQuery("Observation"), 10,
                                                includes=(IncludeSpec("Observation", ("subject",), "Patient"),
                                                          IncludeSpec("Patient", ("general-practitioner",),
                                                                      iterate=True))))
        assert [(v.resource_type, v.id) for v in page.included] == [("Patient", "pa"), ("Patient", "pb"),
                                                                    ("Practitioner", "dr")]
        for query in (SearchQuery("Patient"), SearchQuery("Observation", (Clause("code", "token",
                                                                                 (tok(None, "8480-6"),)),))):
            assert await mongo.count_matches(query) == await sqlite.count_matches(query)
        assert await mongo.count("Patient") == await sqlite.count("Patient") == 5
        system = SearchQuery(None, types=("Patient", "Practitioner"),
                             criteria=(Clause("_id", "id", (tok(None, "pa"), tok(None, "dr"))),))
        assert await mongo.find(system, 10) == await sqlite.find(system, 10) == ["pa", "dr"]
    finally:
        await sqlite.close()
        await mongo.close()


async def test_concurrent_conditional_creates_make_one_resource(repo: MongoRepository) -> None:
    """20 identical If-None-Exist creates at once: one creates, the others find it (unique key, not luck)."""
    query = SearchQuery("Patient", (Clause("identifier", "token", (tok(MRN, "NEW-1"),)),))

    def create(i: int) -> WriteOp:
        op = _op("Patient", f"new-{i}", tokens=[TokenEntry("identifier", MRN, "NEW-1")])
        op.method, op.if_none_exist = "create", query
        return op

    outcomes = await asyncio.gather(*(repo.write([create(i)]) for i in range(20)))
    created = [o for (o,) in outcomes if o.created]
    assert len(created) == 1
    assert {o.id for (o,) in outcomes} == {created[0].id}
    assert await repo.find(query, 10) == [created[0].id]


async def test_conditional_create_key_moves_on(repo: MongoRepository) -> None:
    """The key stays with the version that created the resource; once the resource no longer matches (an
    update, or a chain that now leads elsewhere), a new conditional create creates again."""
    by_gp = SearchQuery("Patient", (Chain("general-practitioner", ("Practitioner",),
                                          Clause("name", "string", (s("wilson"),))),))
    await repo.write([_op("Practitioner", "wil", strings=[StringEntry("name", "wilson", "Wilson")])])

    def create(id: str) -> WriteOp:
        op = _op("Patient", id, references=[ReferenceEntry("general-practitioner", "Practitioner", "wil")])
        op.method, op.if_none_exist = "create", by_gp
        return op

    (first,) = await repo.write([create("g1")])
    (again,) = await repo.write([create("g2")])
    assert first.created and again.noop and again.id == "g1"
    # the practitioner is renamed: g1 (still holding the key) no longer matches
    await repo.write([_op("Practitioner", "wil", strings=[StringEntry("name", "house", "House")])])
    await repo.write([_op("Practitioner", "wil2", strings=[StringEntry("name", "wilson", "Wilson")])])
    op = create("g3")
    assert op.resource is not None and op.index is not None
    op.index.references[0] = ReferenceEntry("general-practitioner", "Practitioner", "wil2")
    (third,) = await repo.write([op])
    assert third.created and third.id == "g3"
    keys = repo.resources.database["conditional_keys"]
    assert await keys.find_one({"_id": criteria_key(by_gp)}, {"_id": 0, "h": 1, "v": 1}) == {"h": "Patient/g3",
                                                                                              "v": 1}


async def test_large_bodies_and_text_beyond_the_document_limit(repo: MongoRepository) -> None:
    """A 9 MB body is stored in pieces, and 1.6 MB of words in parts beside the document; both read back whole
    and are searched like any other."""
    words = " ".join(f"w{i}" for i in range(200_000)) + " o'brien zebra"
    note = "é" * 4_600_000  # 9.2 MB of UTF-8

    def big(version_words: str) -> WriteOp:
        op = _op("Basic", "big", content=version_words)
        op.resource = {"resourceType": "Basic", "id": "big", "note": note}
        return op

    (first,) = await repo.write([big(words)])
    stored = await repo.read("Basic", "big")
    assert stored is not None and stored.body is not None and len(stored.body) > 9_000_000
    assert first.version is not None and stored.body == first.version.body
    doc = await repo.resources.find_one({"_id": "Basic/big"}, {"body": 1, "bc": 1, "ftx": 1, "ft": 1})
    assert doc is not None and doc["body"] is None and doc["bc"] == 2 and doc["ftx"] and "ft" not in doc

    def content(text: str) -> Clause:
        return Clause("_content", "content", (s(text),))

    flt, ids = await run(repo, "Basic", content("zebr"))
    assert flt == {"$or": [{"ft.c": {"$gte": "zebr", "$lt": "zebr\U0010ffff"}}, {"_id": {"$in": ["Basic/big"]}}]}
    assert ids == {"big"}
    assert (await run(repo, "Basic", content("o'brien")))[1] == {"big"}
    assert (await run(repo, "Basic", content("w199999 w3")))[1] == {"big"}  # words in different parts
    assert (await run(repo, "Basic", content("brien-o")))[1] == set()

    (second,) = await repo.write([big("short text now")])
    assert second.version is not None
    assert (await run(repo, "Basic", content("zebra")))[1] == set()  # the old parts are gone
    assert (await run(repo, "Basic", content("short")))[1] == {"big"}
    old = await repo.vread("Basic", "big", 1)
    assert old is not None and old.body == stored.body
    page = await repo.search(SearchRequest(SearchQuery("Basic"), 10))
    assert [v.body for v in page.matches] == [second.version.body]
    history = await repo.history(HistoryQuery("Basic", "big"))
    assert [e.version.body for e in history.entries] == [second.version.body, stored.body]
