"""The cached SQL of conditional look-ups by one token parameter is exactly what the compiler builds."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from fhir_server.search.model import Clause, DateValue, SearchQuery, StringValue, TokenValue
from fhir_server.storage.sqlite import _search_exec
from fhir_server.storage.sqlite._index_rows import ParamIds
from fhir_server.storage.sqlite._schema import connect, initialise
from fhir_server.storage.sqlite._search_exec import _match, find_sql
from fhir_server.storage.sqlite._search_sql import Compiler
from fhir_server.storage.sqlite._token_lookup import token_shape


def _compiled(conn: object, ids: ParamIds, query: SearchQuery) -> tuple[str, list[object]]:
    match = _match(Compiler(conn, ids), query, sorted_by_rid=False)  # type: ignore[arg-type]
    return f"SELECT r.id FROM {match.source} WHERE {match.where} ORDER BY r.rid LIMIT ?", match.args


def _random_value(rng: random.Random) -> TokenValue:
    choices: list[str | None] = [None, "", "s", "urn:x"]
    return TokenValue(rng.choice(choices), rng.choice(choices), rng.choice(choices), rng.choice(choices))


@pytest.mark.parametrize("seed", range(3))
def test_cached_sql_and_arguments_equal_the_compilers(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    conn = connect(tmp_path / "t.db", 1000)
    initialise(conn)
    ids = ParamIds()
    for rtype in ("Patient", "Observation"):
        for code in ("identifier", "code"):
            ids.ensure(conn, rtype, code)
    _search_exec._FIND_SQL.clear()
    hits = 0
    for _ in range(400):
        query = SearchQuery(rng.choice(["Patient", "Observation"]), (Clause(
            rng.choice(["identifier", "code", "unknown"]), "token",
            tuple(_random_value(rng) for _ in range(rng.randint(1, 3))), rng.choice([None, "of-type", "text"])),))
        hits += token_shape(conn, ids, query) in _search_exec._FIND_SQL
        assert find_sql(conn, ids, query) == _compiled(conn, ids, query), query
    assert hits > 50  # many were answered from the cache (the rest compiled it first, or have no shape)
    conn.close()


def test_other_queries_have_no_shape(tmp_path: Path) -> None:
    conn = connect(tmp_path / "t.db", 1000)
    initialise(conn)
    ids = ParamIds()
    ids.ensure(conn, "Patient", "identifier")
    token = Clause("identifier", "token", (TokenValue("s", "v"),))
    assert token_shape(conn, ids, SearchQuery("Patient", (token,))) is not None
    for query in (SearchQuery("Patient", (token, token)), SearchQuery(None, (token,), types=("Patient",)),
                  SearchQuery("Patient", (Clause("name", "string", (StringValue("a", "a"),)),)),
                  SearchQuery("Patient", (Clause("birthdate", "date", (DateValue("eq", 0.0, 1.0),)),)),
                  SearchQuery("Patient", (Clause("identifier", "token", (TokenValue("s", "v"),), "text"),)),
                  SearchQuery("Patient", (Clause("gender", "token", (TokenValue(None, "f"),)),))):  # no pid yet
        assert token_shape(conn, ids, query) is None
    conn.close()
