"""Compile the query model to SQL over the SQLite index tables.

Every criterion becomes a condition on a resources row alias (``r.rid IN (SELECT rid FROM idx_… WHERE …)``);
index rows exist only for current, non-deleted versions, and their ``pid`` is specific to the resource type, so
index subqueries need no join.  Chains and ``_has`` join through ``idx_reference`` to the resources they point at
or come from, and recurse.  Semantics mirror :mod:`fhir_server.search.compare` exactly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
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
    "text": "idx_string", "content": "idx_string",
}
NOTHING = "0"


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass
class Compiler:
    conn: sqlite3.Connection
    ids: ParamIds
    args: list[Any] = field(default_factory=list)
    _alias: int = 0
    now: Callable[[], float] | None = None

    def pid(self, resource_type: str, code: str) -> int | None:
        return self.ids.get(self.conn, resource_type, code)

    def alias(self, stem: str) -> str:
        self._alias += 1
        return f"{stem}{self._alias}"

    # -- criteria -------------------------------------------------------------------------------------------

    def criterion(self, c: Criterion, resource_type: str, r: str) -> str:
        match c:
            case Clause():
                return self.clause(c, resource_type, r)
            case Not():
                return f"NOT ({self.criterion(c.inner, resource_type, r)})"
            case Chain():
                return self.chain(c, resource_type, r)
            case Has():
                return self.has(c, resource_type, r)
            case AnyOf():
                return "(" + (" OR ".join(self.criterion(i, resource_type, r) for i in c.criteria) or NOTHING) + ")"
        raise TypeError(c)

    def chain(self, c: Chain, resource_type: str, r: str) -> str:
        ref_pid = self.pid(resource_type, c.param)
        if ref_pid is None:
            return NOTHING
        ref, t = self.alias("ref"), self.alias("t")
        per_type = []
        for target in c.target_types:
            self.args.append(target)
            per_type.append(f"({t}.type = ? AND {self.criterion(c.inner, target, t)})")
        inner = " OR ".join(per_type) or NOTHING
        sql = (
            f"{r}.rid IN (SELECT {ref}.rid FROM idx_reference {ref} JOIN resources {t} "
            f"ON {t}.type = {ref}.type AND {t}.id = {ref}.id "
            f"WHERE {ref}.pid = {int(ref_pid)} AND {t}.deleted = 0 AND ({inner}))"
        )
        return sql

    def has(self, c: Has, resource_type: str, r: str) -> str:
        ref_pid = self.pid(c.source_type, c.ref_param)
        if ref_pid is None:
            return NOTHING
        ref, s = self.alias("ref"), self.alias("s")
        self.args.append(resource_type)
        inner = self.criterion(c.inner, c.source_type, s)
        return (
            f"{r}.id IN (SELECT {ref}.id FROM idx_reference {ref} WHERE {ref}.pid = {int(ref_pid)} "
            f"AND {ref}.type = ? AND {ref}.rid IN (SELECT {s}.rid FROM resources {s} "
            f"WHERE {s}.type = '{_quote(c.source_type)}' AND {s}.deleted = 0 AND ({inner})))"
        )

    def clause(self, c: Clause, resource_type: str, r: str) -> str:
        if c.type == "id":
            return self._ids(c, r)
        if c.type == "lastUpdated":
            return self._last_updated(c, r)
        if c.type == "list":
            return self._list(c, resource_type, r)
        if c.type in ("text", "content"):
            return self._fulltext(c, r)
        code = "_text" if c.type == "text" else "_content" if c.type == "content" else c.param
        pid = self.pid(resource_type, code)
        table = TABLE[c.type]
        if c.modifier == "missing":
            assert isinstance(c.values[0], MissingValue)
            if pid is None:
                return "1" if c.values[0].missing else NOTHING
            neg = "NOT " if c.values[0].missing else ""
            return f"{r}.rid {neg}IN (SELECT rid FROM {table} WHERE pid = {int(pid)})"
        if pid is None:
            return NOTHING
        if c.type == "composite":
            return self._composite(c, resource_type, r)
        ors = [self.value(c.type, c.modifier, v, "x") for v in c.values]
        return f"{r}.rid IN (SELECT x.rid FROM {table} x WHERE x.pid = {int(pid)} AND ({' OR '.join(ors)}))"

    def _ids(self, c: Clause, r: str) -> str:
        ids = [v.code for v in c.values if isinstance(v, TokenValue)]
        self.args.extend(ids)
        return f"{r}.id IN ({','.join('?' for _ in ids)})"

    def _last_updated(self, c: Clause, r: str) -> str:
        ors = []
        for v in c.values:
            assert isinstance(v, DateValue)
            # a point in time: the interval [lu, lu]
            ors.append(self._date_condition(v, f"{r}.lu", f"{r}.lu"))
        return "(" + " OR ".join(ors) + ")"

    def _list(self, c: Clause, resource_type: str, r: str) -> str:
        item_pid = self.pid("List", "item")
        if item_pid is None:
            return NOTHING
        ids = [v.code for v in c.values if isinstance(v, TokenValue)]
        lst, ref = self.alias("lst"), self.alias("ref")
        self.args.extend(ids)
        marks = ",".join("?" for _ in ids)
        self.args.append(resource_type)
        return (
            f"{r}.id IN (SELECT {ref}.id FROM resources {lst} JOIN idx_reference {ref} ON {ref}.rid = {lst}.rid "
            f"WHERE {lst}.type = 'List' AND {lst}.id IN ({marks}) AND {ref}.pid = {int(item_pid)} "
            f"AND {ref}.type = ?)"
        )

    def _fulltext(self, c: Clause, r: str) -> str:
        """``_text``/``_content``: every word of a value must start a word of the text (values are OR'd)."""
        ors = []
        for value in c.values:
            assert isinstance(value, StringValue)
            words = value.norm.split()
            if not words:
                continue
            column = "text" if c.type == "text" else "content"
            self.args.append(f"{column}: (" + " AND ".join(f'"{w.replace(chr(34), "")}"*' for w in words) + ")")
            ors.append("fulltext MATCH ?")
        if not ors:
            return NOTHING
        return f"{r}.rid IN (SELECT rowid FROM fulltext WHERE {' OR '.join(ors)})"

    def _composite(self, c: Clause, resource_type: str, r: str) -> str:
        pids = [self.pid(resource_type, component_code(c.param, i)) for i in range(len(c.components))]
        if any(pid is None for pid in pids):
            return NOTHING
        ors = []
        for value in c.values:
            assert isinstance(value, CompositeValue)
            joins, conds = [], []
            first = None
            for pid, ctype, part in zip(pids, c.components, value.parts, strict=True):
                assert pid is not None
                a = self.alias("c")
                cond = self.value(ctype, None, part, a)
                if first is None:
                    first = a
                    joins.append(f"{TABLE[ctype]} {a}")
                else:
                    joins.append(f"JOIN {TABLE[ctype]} {a} ON {a}.rid = {first}.rid AND {a}.grp = {first}.grp")
                conds.append(f"{a}.pid = {int(pid)} AND ({cond})")
            ors.append(f"{r}.rid IN (SELECT {first}.rid FROM {' '.join(joins)} WHERE {' AND '.join(conds)})")
        return "(" + (" OR ".join(ors) or NOTHING) + ")"

    # -- values -----------------------------------------------------------------------------------------------

    def value(self, ptype: str, modifier: str | None, v: Value, x: str) -> str:
        a = self.args
        match v:
            case StringValue():
                if modifier == "exact":
                    a.append(v.text)
                    return f"{x}.exact = ?"
                if modifier == "contains":
                    a.append(f"%{like_escape(v.norm)}%")
                    return f"{x}.norm LIKE ? ESCAPE '\\'"
                low, high = string_prefix_bounds(v.norm)
                a.extend((low, high))
                return f"({x}.norm >= ? AND {x}.norm < ?)"
            case TokenValue():
                return self._token(modifier, v, x)
            case DateValue():
                return self._date_condition(v, f"{x}.low", f"{x}.high")
            case NumberValue():
                return self._number(v.prefix, float(v.value), v.low, v.high, f"{x}.value")
            case QuantityValue():
                return self._quantity(v, x)
            case ReferenceValue():
                return self._reference(v, x)
            case UriValue():
                if modifier == "below":
                    a.append(f"{like_escape(v.uri)}%")
                    return f"{x}.uri LIKE ? ESCAPE '\\'"
                if modifier == "above":
                    a.append(v.uri)
                    return f"substr(?, 1, length({x}.uri)) = {x}.uri"
                a.append(v.uri)
                return f"{x}.uri = ?"
        raise NotSupported(f"cannot search {ptype} by {type(v).__name__}")

    def _token(self, modifier: str | None, v: TokenValue, x: str) -> str:
        a = self.args
        if modifier == "text":
            low, high = string_prefix_bounds(v.code or "")
            a.extend((low, high))
            return f"({x}.text >= ? AND {x}.text < ?)"
        parts = []
        if modifier == "of-type":
            a.extend((v.type_system or "", v.type_code or ""))
            parts.append(f"{x}.type_system = ? AND {x}.type_code = ?")
        if v.code is not None:
            a.append(v.code)
            parts.append(f"{x}.code = ?")
        if v.system is not None:
            a.append(v.system)
            parts.append(f"{x}.system = ?")
        if v.code is None and v.system is None:
            return NOTHING
        return "(" + " AND ".join(parts) + ")"

    def _date_condition(self, v: DateValue, low: str, high: str) -> str:
        a = self.args
        inside = f"({low} >= ? AND {high} <= ?)"
        match v.prefix:
            case "eq":
                a.extend((v.low, v.high))
                return inside
            case "ne":
                a.extend((v.low, v.high))
                return f"NOT {inside}"
            case "gt":
                a.append(v.high)
                return f"{high} > ?"
            case "lt":
                a.append(v.low)
                return f"{low} < ?"
            case "ge":
                a.extend((v.high, v.low, v.high))
                return f"({high} > ? OR {inside})"
            case "le":
                a.extend((v.low, v.low, v.high))
                return f"({low} < ? OR {inside})"
            case "sa":
                a.append(v.high)
                return f"{low} >= ?"
            case "eb":
                a.append(v.low)
                return f"{high} <= ?"
            case "ap":
                ap_low, ap_high = date_ap_range(v.low, v.high, self.now() if self.now else None)
                a.extend((ap_high, ap_low))
                return f"({low} < ? AND {high} > ?)"
        raise ValueError(v.prefix)

    def _number(self, prefix: str, s_value: float, s_low: float, s_high: float, col: str) -> str:
        a = self.args
        match prefix:
            case "eq":
                a.extend((s_low, s_high))
                return f"({col} >= ? AND {col} < ?)"
            case "ne":
                a.extend((s_low, s_high))
                return f"NOT ({col} >= ? AND {col} < ?)"
            case "gt" | "sa":
                a.append(s_value)
                return f"{col} > ?"
            case "lt" | "eb":
                a.append(s_value)
                return f"{col} < ?"
            case "ge":
                a.append(s_value)
                return f"{col} >= ?"
            case "le":
                a.append(s_value)
                return f"{col} <= ?"
            case "ap":
                ap_low, ap_high = number_ap_range(s_value)
                a.extend((ap_low, ap_high))
                return f"({col} >= ? AND {col} <= ?)"
        raise ValueError(prefix)

    def _quantity(self, v: QuantityValue, x: str) -> str:
        a = self.args
        if v.canonical_code is not None and v.canonical_value is not None:
            assert v.canonical_low is not None and v.canonical_high is not None
            a.append(v.canonical_code)
            cond = self._number(v.prefix, v.canonical_value, v.canonical_low, v.canonical_high, f"{x}.cvalue")
            return f"({x}.ccode = ? AND {cond})"
        parts = []
        if v.system is not None:
            a.append(v.system)
            parts.append(f"{x}.system = ?")
        if v.code is not None:
            a.extend((v.code, v.code))
            parts.append(f"({x}.code = ? OR {x}.unit = ?)")
        parts.append(self._number(v.prefix, float(v.value), v.low, v.high, f"{x}.value"))
        return "(" + " AND ".join(parts) + ")"

    def _reference(self, v: ReferenceValue, x: str) -> str:
        a = self.args
        if v.identifier_value is not None or v.identifier_system is not None:
            parts = []
            if v.identifier_value is not None:
                a.append(v.identifier_value)
                parts.append(f"{x}.ident_value = ?")
            if v.identifier_system is not None:
                a.append(v.identifier_system)
                parts.append(f"{x}.ident_system = ?")
            return "(" + " AND ".join(parts) + ")"
        if v.url is not None:
            a.append(v.url)
            cond = f"{x}.url = ?"
            if v.version is not None:
                a.append(v.version)
                cond += f" AND {x}.version = ?"
            return f"({cond})"
        parts = []
        if v.id is not None:
            a.append(v.id)
            parts.append(f"{x}.id = ?")
        if v.type is not None:
            a.append(v.type)
            parts.append(f"{x}.type = ?")
        if v.version is not None:
            a.append(v.version)
            parts.append(f"{x}.version = ?")
        return "(" + (" AND ".join(parts) or NOTHING) + ")"


def _quote(text: str) -> str:
    return text.replace("'", "''")
