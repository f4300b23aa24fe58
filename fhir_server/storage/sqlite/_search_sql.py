"""Compile the query model to SQL over the SQLite index tables.

Two forms per criterion:

* a **condition** on a resources alias (``EXISTS (SELECT 1 FROM idx_… x WHERE x.rid = r.rid AND …)``), correlated
  so that checking one candidate costs a few index look-ups (``idx_*_rid``);
* for positive criteria, a **rid set** (``SELECT x.rid FROM idx_… x WHERE …``) that can *drive* the query: the
  search starts from the index rows of its most selective criterion instead of scanning every resource of the
  type, and checks the others as conditions.

Index rows exist only for current, non-deleted versions and their ``pid`` is specific to the resource type, so a
rid set needs no join.  Chains and ``_has`` go through ``idx_reference`` (primary key ``pid, type, id``) to the
resources they point at or come from, and recurse.  Value semantics mirror :mod:`fhir_server.search.compare`.
Every fragment carries its own argument list, so fragments can be combined in any order.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir_server.errors import NotSupported
from fhir_server.search.compare import date_ap_range, number_ap_range, string_prefix_bounds
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
    StringValue,
    TokenValue,
    UriValue,
    Value,
)
from fhir_server.storage.sqlite._index_rows import ParamIds, component_code

TABLE = {
    "string": "idx_string", "token": "idx_token", "date": "idx_date", "number": "idx_number",
    "quantity": "idx_quantity", "reference": "idx_reference", "uri": "idx_uri", "composite": "idx_token",
    "near": "idx_token",
}
NOTHING = "0"


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass
class Frag:
    sql: str
    args: list[Any] = field(default_factory=list)


@dataclass
class RidSet:
    """``SELECT {rid} FROM {source} WHERE {where}``: the rids of the resources a criterion matches."""

    source: str
    where: str
    rid: str
    args: list[Any]
    rank: int  # lower drives better (more selective kinds of criteria)

    def select(self) -> Frag:
        return Frag(f"SELECT DISTINCT {self.rid} FROM {self.source} WHERE {self.where}", list(self.args))


def _join(frags: Sequence[Frag], sep: str, empty: str) -> Frag:
    if not frags:
        return Frag(empty)
    return Frag(sep.join(f.sql for f in frags), [a for f in frags for a in f.args])


_RANK = {"id": 0, "reference": 1, "token": 2, "uri": 2, "string": 4, "quantity": 5, "number": 5,
         "composite": 5, "date": 6, "text": 7, "content": 7}


class TypeCounts:
    """Approximate number of resources per type (refreshed every ``ttl`` seconds), for choosing plans."""

    def __init__(self, ttl: float = 30.0) -> None:
        self._ttl = ttl
        self._counts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def get(self, conn: sqlite3.Connection, resource_type: str) -> int:
        now = time.monotonic()
        cached = self._counts.get(resource_type)
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        count = int(conn.execute("SELECT count(*) FROM resources WHERE type = ?", (resource_type,)).fetchone()[0])
        with self._lock:
            self._counts[resource_type] = (count, now)
        return count


SCAN_SHARE = 50  # a criterion matching more than 1/50 of a type is better checked row by row than driven
MIN_PROBE = 1000


@dataclass
class Compiler:
    conn: sqlite3.Connection
    ids: ParamIds
    now: Callable[[], float] | None = None
    counts: TypeCounts | None = None
    _alias: int = 0

    def pid(self, resource_type: str, code: str) -> int | None:
        return self.ids.get(self.conn, resource_type, code)

    def alias(self, stem: str) -> str:
        self._alias += 1
        return f"{stem}{self._alias}"

    # -- driving rid sets -------------------------------------------------------------------------------------

    def driver(
        self, criteria: Sequence[Criterion], resource_type: str, *, sorted_by_rid: bool = True
    ) -> tuple[RidSet | None, list[Criterion]]:
        """The criterion to start from (as a rid set) and the rest (to check as conditions).

        Each candidate is probed: its matches are counted up to a cap (a fiftieth of the type, at least 1,000).
        The one with the fewest drives.  When even that one reaches the cap and results come in rid order,
        no criterion drives: scanning the type in rid order meets a match every few dozen rows, and the page
        is full long before a driven plan would have gathered every match.
        """
        candidates = [(i, r) for i, c in enumerate(criteria) if (r := self.rids(c, resource_type)) is not None]
        if not candidates:
            return None, list(criteria)
        candidates.sort(key=lambda c: c[1].rank)
        total = self.counts.get(self.conn, resource_type) if self.counts is not None else 0
        cap = max(MIN_PROBE, total // SCAN_SHARE)
        best: tuple[int, int, RidSet] | None = None
        for index, rids in candidates:
            if len(candidates) == 1 and not sorted_by_rid:
                best = (0, index, rids)
                break
            size = self._probe(rids, cap)
            if best is None or size < best[0]:
                best = (size, index, rids)
            if size < MIN_PROBE:
                break  # selective enough: no need to probe the others
        assert best is not None
        size, best_index, chosen = best
        if size >= cap and sorted_by_rid and total > cap:
            return None, list(criteria)
        return chosen, [c for i, c in enumerate(criteria) if i != best_index]

    def _probe(self, rids: RidSet, cap: int) -> int:
        """How many index rows the rid set has, counting no further than ``cap``."""
        sql = f"SELECT count(*) FROM (SELECT 1 FROM {rids.source} WHERE {rids.where} LIMIT {int(cap)})"
        return int(self.conn.execute(sql, rids.args).fetchone()[0])

    def rids(self, c: Criterion, resource_type: str) -> RidSet | None:
        match c:
            case Clause(modifier="missing"):
                return None
            case Clause(type="id" | "lastUpdated" | "list"):
                return None
            case Clause(type="text" | "content"):
                f = self._fulltext(c)
                return RidSet("fulltext", f.sql, "rowid", f.args, _RANK[c.type])
            case Clause(type="composite"):
                return self._composite_rids(c, resource_type)
            case Clause(type="near"):
                return self._near_rids(c, resource_type)
            case Clause():
                pid = self.pid(resource_type, c.param)
                x = self.alias("x")
                if pid is None:
                    return RidSet(f"{TABLE[c.type]} {x}", NOTHING, f"{x}.rid", [], 0)
                values = _join([self.value(c.type, c.modifier, v, x) for v in c.values], " OR ", NOTHING)
                return RidSet(f"{TABLE[c.type]} {x}", f"{x}.pid = {int(pid)} AND ({values.sql})", f"{x}.rid",
                              values.args, _RANK.get(c.type, 5))
            case Chain():
                return self._chain_rids(c, resource_type)
            case Has():
                return self._has_rids(c, resource_type)
        return None

    def _chain_rids(self, c: Chain, resource_type: str) -> RidSet | None:
        ref_pid = self.pid(resource_type, c.param)
        ref = self.alias("ref")
        if ref_pid is None:
            return RidSet(f"idx_reference {ref}", NOTHING, f"{ref}.rid", [], 0)
        union: list[Frag] = []
        for target in c.target_types:
            inner = self.rids(c.inner, target)
            if inner is None:
                return None  # let the condition form handle it
            t = self.alias("t")
            sel = inner.select()
            union.append(Frag(
                f"SELECT {t}.type AS type, {t}.id AS id FROM ({sel.sql}) m{t} CROSS JOIN resources {t} "
                f"ON {t}.rid = m{t}.{_column(inner.rid)} WHERE {t}.type = ? AND {t}.deleted = 0", [*sel.args, target]))
        targets = _join(union, " UNION ALL ", "SELECT NULL AS type, NULL AS id WHERE 0")
        source = (f"({targets.sql}) tg CROSS JOIN idx_reference {ref} ON {ref}.pid = {int(ref_pid)} "
                  f"AND {ref}.type = tg.type AND {ref}.id = tg.id")
        return RidSet(source, "1", f"{ref}.rid", targets.args, 3)

    def _has_rids(self, c: Has, resource_type: str) -> RidSet | None:
        ref_pid = self.pid(c.source_type, c.ref_param)
        t = self.alias("t")
        if ref_pid is None:
            return RidSet(f"resources {t}", NOTHING, f"{t}.rid", [], 0)
        inner = self.rids(c.inner, c.source_type)
        if inner is None:
            return None
        ref = self.alias("ref")
        sel = inner.select()
        source = (f"({sel.sql}) m{ref} CROSS JOIN idx_reference {ref} ON {ref}.rid = m{ref}.{_column(inner.rid)} "
                  f"AND {ref}.pid = {int(ref_pid)} CROSS JOIN resources {t} ON {t}.type = {ref}.type "
                  f"AND {t}.id = {ref}.id")
        return RidSet(source, f"{ref}.type = ? AND {t}.deleted = 0", f"{t}.rid", [*sel.args, resource_type], 3)

    def _near_rids(self, c: Clause, resource_type: str) -> RidSet:
        """Locations within the distance: a latitude band from the index, then the great-circle distance."""
        lat_pid = self.pid(resource_type, component_code(c.param, 0))
        lon_pid = self.pid(resource_type, component_code(c.param, 1))
        a, b = self.alias("lat"), self.alias("lon")
        source = f"idx_number {a} JOIN idx_number {b} ON {b}.rid = {a}.rid AND {b}.grp = {a}.grp"
        if lat_pid is None or lon_pid is None:
            return RidSet(source, NOTHING, f"{a}.rid", [], 0)
        ors: list[Frag] = []
        for value in c.values:
            assert isinstance(value, NearValue)
            band = value.distance_km / 111.0 + 1e-9
            ors.append(Frag(
                f"({a}.value BETWEEN ? AND ? AND great_circle_km({a}.value, {b}.value, ?, ?) <= ?)",
                [value.latitude - band, value.latitude + band, value.latitude, value.longitude,
                 value.distance_km]))
        joined = _join(ors, " OR ", NOTHING)
        return RidSet(source, f"{a}.pid = {int(lat_pid)} AND {b}.pid = {int(lon_pid)} AND ({joined.sql})",
                      f"{a}.rid", joined.args, 5)

    def _composite_rids(self, c: Clause, resource_type: str) -> RidSet | None:
        pids = [self.pid(resource_type, component_code(c.param, i)) for i in range(len(c.components))]
        if any(pid is None for pid in pids):
            x = self.alias("x")
            return RidSet(f"idx_token {x}", NOTHING, f"{x}.rid", [], 0)
        selects: list[Frag] = []
        for value in c.values:
            assert isinstance(value, CompositeValue)
            joins: list[str] = []
            conds: list[Frag] = []
            first = ""
            for pid, ctype, part in zip(pids, c.components, value.parts, strict=True):
                a = self.alias("c")
                if not first:
                    first = a
                    joins.append(f"{TABLE[ctype]} {a}")
                else:
                    joins.append(f"JOIN {TABLE[ctype]} {a} ON {a}.rid = {first}.rid AND {a}.grp = {first}.grp")
                cond = self.value(ctype, None, part, a)
                conds.append(Frag(f"{a}.pid = {int(pid or 0)} AND ({cond.sql})", cond.args))
            where = _join(conds, " AND ", "1")
            selects.append(Frag(f"SELECT {first}.rid AS rid FROM {' '.join(joins)} WHERE {where.sql}", where.args))
        union = _join(selects, " UNION ", "SELECT NULL AS rid WHERE 0")
        return RidSet(f"({union.sql}) u", "1", "u.rid", union.args, _RANK["composite"])

    # -- conditions -----------------------------------------------------------------------------------------

    def cond(self, c: Criterion, resource_type: str, r: str) -> Frag:
        """A condition that is true for the resources row ``r`` when it matches ``c``."""
        match c:
            case Not():
                inner = self.cond(c.inner, resource_type, r)
                return Frag(f"NOT ({inner.sql})", inner.args)
            case AnyOf():
                parts = [self.cond(i, resource_type, r) for i in c.criteria]
                joined = _join(parts, " OR ", NOTHING)
                return Frag(f"({joined.sql})", joined.args)
            case Chain():
                return self._chain_cond(c, resource_type, r)
            case Has():
                return self._has_cond(c, resource_type, r)
            case Clause():
                return self._clause_cond(c, resource_type, r)
        raise TypeError(c)

    def _clause_cond(self, c: Clause, resource_type: str, r: str) -> Frag:
        if c.modifier == "missing" and c.type in ("id", "lastUpdated"):
            assert isinstance(c.values[0], MissingValue)
            return Frag(NOTHING if c.values[0].missing else "1")  # every resource has an id and a lastUpdated
        if c.type == "id":
            ids = [v.code for v in c.values if isinstance(v, TokenValue)]
            return Frag(f"{r}.id IN ({','.join('?' for _ in ids)})", list(ids))
        if c.type == "lastUpdated":
            parts = [self._date(v, f"{r}.lu", f"{r}.lu") for v in c.values if isinstance(v, DateValue)]
            joined = _join(parts, " OR ", NOTHING)
            return Frag(f"({joined.sql})", joined.args)
        if c.type == "list":
            return self._list(c, resource_type, r)
        if c.modifier == "missing":
            assert isinstance(c.values[0], MissingValue)
            pid = self.pid(resource_type, c.param)
            if pid is None:
                return Frag("1" if c.values[0].missing else NOTHING)
            x = self.alias("x")
            exists = f"EXISTS (SELECT 1 FROM {TABLE[c.type]} {x} WHERE {x}.rid = {r}.rid AND {x}.pid = {int(pid)})"
            return Frag(f"NOT {exists}" if c.values[0].missing else exists)
        rids = self.rids(c, resource_type)
        assert rids is not None
        if c.type in ("text", "content", "composite", "near"):
            sel = rids.select()
            return Frag(f"{r}.rid IN ({sel.sql})", sel.args)
        return Frag(f"EXISTS (SELECT 1 FROM {rids.source} WHERE {rids.rid} = {r}.rid AND {rids.where})", rids.args)

    def _chain_cond(self, c: Chain, resource_type: str, r: str) -> Frag:
        ref_pid = self.pid(resource_type, c.param)
        if ref_pid is None:
            return Frag(NOTHING)
        ref, t = self.alias("ref"), self.alias("t")
        per_type = []
        for target in c.target_types:
            inner = self.cond(c.inner, target, t)
            per_type.append(Frag(f"({t}.type = ? AND {inner.sql})", [target, *inner.args]))
        targets = _join(per_type, " OR ", NOTHING)
        return Frag(
            f"EXISTS (SELECT 1 FROM idx_reference {ref} JOIN resources {t} ON {t}.type = {ref}.type "
            f"AND {t}.id = {ref}.id WHERE {ref}.rid = {r}.rid AND {ref}.pid = {int(ref_pid)} "
            f"AND {t}.deleted = 0 AND ({targets.sql}))", targets.args)

    def _has_cond(self, c: Has, resource_type: str, r: str) -> Frag:
        ref_pid = self.pid(c.source_type, c.ref_param)
        if ref_pid is None:
            return Frag(NOTHING)
        ref, s = self.alias("ref"), self.alias("s")
        inner = self.cond(c.inner, c.source_type, s)
        return Frag(
            f"EXISTS (SELECT 1 FROM idx_reference {ref} JOIN resources {s} ON {s}.rid = {ref}.rid "
            f"WHERE {ref}.pid = {int(ref_pid)} AND {ref}.type = ? AND {ref}.id = {r}.id AND {s}.deleted = 0 "
            f"AND ({inner.sql}))", [resource_type, *inner.args])

    def _list(self, c: Clause, resource_type: str, r: str) -> Frag:
        item_pid = self.pid("List", "item")
        if item_pid is None:
            return Frag(NOTHING)
        ids = [v.code for v in c.values if isinstance(v, TokenValue)]
        lst, ref = self.alias("lst"), self.alias("ref")
        marks = ",".join("?" for _ in ids)
        return Frag(
            f"EXISTS (SELECT 1 FROM resources {lst} JOIN idx_reference {ref} ON {ref}.rid = {lst}.rid "
            f"WHERE {lst}.type = 'List' AND {lst}.deleted = 0 AND {lst}.id IN ({marks}) "
            f"AND {ref}.pid = {int(item_pid)} AND {ref}.type = ? AND {ref}.id = {r}.id)", [*ids, resource_type])

    def _fulltext(self, c: Clause) -> Frag:
        """``_text``/``_content``: every word of a value must start a word of the text (values are OR'd)."""
        column = "text" if c.type == "text" else "content"
        queries = []
        for value in c.values:
            assert isinstance(value, StringValue)
            words = value.norm.split()
            if words:
                queries.append("(" + " AND ".join(f'"{w.replace(chr(34), "")}"*' for w in words) + ")")
        if not queries:
            return Frag(NOTHING)
        return Frag("fulltext MATCH ?", [f"{column}: ({' OR '.join(queries)})"])

    # -- values -----------------------------------------------------------------------------------------------

    def value(self, ptype: str, modifier: str | None, v: Value, x: str) -> Frag:
        match v:
            case StringValue():
                if modifier == "exact":
                    return Frag(f"{x}.exact = ?", [v.text])
                if modifier == "contains":
                    return Frag(f"{x}.norm LIKE ? ESCAPE '\\'", [f"%{like_escape(v.norm)}%"])
                low, high = string_prefix_bounds(v.norm)
                return Frag(f"({x}.norm >= ? AND {x}.norm < ?)", [low, high])
            case TokenValue():
                return self._token(modifier, v, x)
            case DateValue():
                return self._date(v, f"{x}.low", f"{x}.high")
            case NumberValue():
                return self._number(v.prefix, float(v.value), v.low, v.high, f"{x}.value")
            case QuantityValue():
                return self._quantity(v, x)
            case ReferenceValue():
                return self._reference(v, x)
            case UriValue():
                if modifier == "below":
                    low, high = string_prefix_bounds(v.uri)  # case-sensitive, and the index serves it
                    return Frag(f"({x}.uri >= ? AND {x}.uri < ?)", [low, high])
                if modifier == "above":
                    return Frag(f"substr(?, 1, length({x}.uri)) = {x}.uri", [v.uri])
                return Frag(f"{x}.uri = ?", [v.uri])
        raise NotSupported(f"cannot search {ptype} by {type(v).__name__}")

    def _token(self, modifier: str | None, v: TokenValue, x: str) -> Frag:
        if modifier == "text":
            low, high = string_prefix_bounds(v.code or "")
            return Frag(f"({x}.text >= ? AND {x}.text < ?)", [low, high])
        parts: list[str] = []
        args: list[Any] = []
        if modifier == "of-type":
            parts.append(f"{x}.type_system = ? AND {x}.type_code = ?")
            args.extend((v.type_system or "", v.type_code or ""))
        if v.code is not None:
            parts.append(f"{x}.code = ?")
            args.append(v.code)
        if v.system is not None:
            parts.append(f"{x}.system = ?")
            args.append(v.system)
        if v.code is None and v.system is None:
            return Frag(NOTHING)
        return Frag("(" + " AND ".join(parts) + ")", args)

    def _date(self, v: DateValue, low: str, high: str) -> Frag:
        inside = f"({low} >= ? AND {high} <= ?)"
        match v.prefix:
            case "eq":
                # low <= high for every entry, so "low <= v.high" adds nothing but bounds the (pid, low) range the
                # index scans: without it a day's search reads every later entry of the parameter
                return Frag(f"({low} >= ? AND {low} <= ? AND {high} <= ?)", [v.low, v.high, v.high])
            case "ne":
                return Frag(f"NOT {inside}", [v.low, v.high])
            case "gt":
                return Frag(f"{high} > ?", [v.high])
            case "lt":
                return Frag(f"{low} < ?", [v.low])
            case "ge":
                return Frag(f"({high} > ? OR {inside})", [v.high, v.low, v.high])
            case "le":
                return Frag(f"({low} < ? OR {inside})", [v.low, v.low, v.high])
            case "sa":
                return Frag(f"{low} >= ?", [v.high])
            case "eb":
                return Frag(f"{high} <= ?", [v.low])
            case "ap":
                ap_low, ap_high = date_ap_range(v.low, v.high, self.now() if self.now else None)
                return Frag(f"({low} < ? AND {high} > ?)", [ap_high, ap_low])
        raise ValueError(v.prefix)

    def _number(self, prefix: str, s_value: float, s_low: float, s_high: float, col: str) -> Frag:
        match prefix:
            case "eq":
                return Frag(f"({col} >= ? AND {col} < ?)", [s_low, s_high])
            case "ne":
                return Frag(f"NOT ({col} >= ? AND {col} < ?)", [s_low, s_high])
            case "gt" | "sa":
                return Frag(f"{col} > ?", [s_value])
            case "lt" | "eb":
                return Frag(f"{col} < ?", [s_value])
            case "ge":
                return Frag(f"{col} >= ?", [s_value])
            case "le":
                return Frag(f"{col} <= ?", [s_value])
            case "ap":
                ap_low, ap_high = number_ap_range(s_value)
                return Frag(f"({col} >= ? AND {col} <= ?)", [ap_low, ap_high])
        raise ValueError(prefix)

    def _quantity(self, v: QuantityValue, x: str) -> Frag:
        direct = self._quantity_as_written(v, x)
        if v.canonical_code is not None and v.canonical_value is not None:
            # values in a convertible UCUM unit compare in canonical units; values whose unit has no canonical
            # form (another system, or only a unit text) still match on code or unit as written
            assert v.canonical_low is not None and v.canonical_high is not None
            cond = self._number(v.prefix, v.canonical_value, v.canonical_low, v.canonical_high, f"{x}.cvalue")
            # "ccode != ''" lets SQLite use the partial index on canonical units
            return Frag(f"(({x}.ccode = ? AND {x}.ccode != '' AND {cond.sql}) OR ({x}.ccode = '' AND {direct.sql}))",
                        [v.canonical_code, *cond.args, *direct.args])
        return direct

    def _quantity_as_written(self, v: QuantityValue, x: str) -> Frag:
        parts: list[str] = []
        args: list[Any] = []
        if v.system is not None:
            parts.append(f"{x}.system = ?")
            args.append(v.system)
        if v.code is not None:
            parts.append(f"({x}.code = ? OR {x}.unit = ?)")
            args.extend((v.code, v.code))
        number = self._number(v.prefix, float(v.value), v.low, v.high, f"{x}.value")
        parts.append(number.sql)
        args.extend(number.args)
        return Frag("(" + " AND ".join(parts) + ")", args)

    def _reference(self, v: ReferenceValue, x: str) -> Frag:
        parts: list[str] = []
        args: list[Any] = []

        def add(column: str, value: str | None) -> None:
            if value is not None:
                parts.append(f"{x}.{column} = ?")
                args.append(value)
                if column in ("url", "ident_value"):
                    parts.append(f"{x}.{column} != ''")  # lets SQLite use the partial index

        if v.identifier_value is not None or v.identifier_system is not None:
            add("ident_value", v.identifier_value)
            add("ident_system", v.identifier_system)
        elif v.url is not None:
            add("url", v.url)
            add("version", v.version)
        else:
            add("type", v.type)
            add("id", v.id)
            add("version", v.version)
        return Frag("(" + (" AND ".join(parts) or NOTHING) + ")", args)


def _column(qualified: str) -> str:
    """``x3.rid`` → ``rid`` (the name of the column a DISTINCT subquery exposes)."""
    return qualified.rsplit(".", 1)[-1]
