"""Everything in a compartment (``Patient/[id]/$everything``) on SQLite: a few index queries per page.

The result has three sections (see :class:`~fhir_server.storage.base.EverythingRequest`), each in rid order, and
one keyset cursor ``(section, rid)`` pages through them, so pages stay stable while other requests write:

0. the compartment resource (instance level), or every resource of the compartment type (type level);
1. members: resources with a ``links`` reference to the compartment (type level: to any resource of its type),
   found through the primary key of ``idx_reference`` (``pid, id, type, rid``), one seek per link parameter;
2. includes: what the compartment resource and the members reference through ``follow`` parameters
   (``idx_reference_rid``) that is in no compartment of the type.

A page asks only for rids (no bodies) with ``LIMIT count + 1`` per section until it is full, then reads the bodies
of the page's rows.  Index rows exist only for current, non-deleted versions, and parameter ids (``pid``) are
specific to one resource type, so a set of pids also says which types a row can come from.
"""

from __future__ import annotations

import bisect
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir_server.errors import InvalidRequest
from fhir_server.storage.base import EverythingRequest, SearchPage, StoredVersion
from fhir_server.storage.cursors import decode_cursor, encode_cursor
from fhir_server.storage.sqlite._index_rows import ParamIds

_COLUMNS = "r.rid, r.type, r.id, r.version, v.last_updated, v.method, v.body"
_SECTIONS = (0, 1, 2)


class _ParamTable:
    """Every (resource type, code) → pid of the store, reloaded when a new pair has been committed.

    A page resolves hundreds of parameters, most of which no resource has used yet (no pid); asking the
    database for each miss would cost more than the page.  Committed pairs are never removed, so the largest
    committed pid tells whether the table is current.
    """

    def __init__(self) -> None:
        self.max_pid = -1
        self.pids: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()
        # id(mapping) -> (mapping, pid list): a service passes the same mappings page after page
        self._resolved: dict[int, tuple[Mapping[str, Iterable[str]], str]] = {}

    def refresh(self, conn: sqlite3.Connection) -> None:
        max_pid = int(conn.execute("SELECT coalesce(max(pid), 0) FROM search_params").fetchone()[0])
        with self.lock:
            if max_pid != self.max_pid:
                rows = conn.execute("SELECT type, code, pid FROM search_params").fetchall()
                self.pids = {(t, c): int(p) for t, c, p in rows}
                self.max_pid = max_pid
                self._resolved.clear()

    def resolve(self, params: Mapping[str, Iterable[str]], *, cache: bool = True) -> str:
        """The pids (a comma list) of the parameters that some resource has used."""
        with self.lock:
            cached = self._resolved.get(id(params))
            if cached is not None and cached[0] is params:
                return cached[1]
            found = {self.pids.get((rtype, code)) for rtype, codes in params.items() for code in codes}
            result = _in(sorted(pid for pid in found if pid is not None))
            if not cache:
                return result
            if len(self._resolved) >= 64:
                self._resolved.clear()
            self._resolved[id(params)] = (params, result)
            return result


_TABLES: weakref.WeakKeyDictionary[ParamIds, _ParamTable] = weakref.WeakKeyDictionary()
_TABLES_LOCK = threading.Lock()


def _param_table(ids: ParamIds) -> _ParamTable:
    with _TABLES_LOCK:
        table = _TABLES.get(ids)
        if table is None:
            table = _TABLES[ids] = _ParamTable()
        return table


def _in(values: Iterable[int]) -> str:
    return ",".join(str(int(v)) for v in values)


def _marks(values: Iterable[Any]) -> str:
    return ",".join("?" for _ in values)


@dataclass
class _Plan:
    conn: sqlite3.Connection
    request: EverythingRequest
    links: str  # pids (comma list) of the link parameters
    follow: str  # pids of the followed parameters
    follow_self: str  # pids of the followed parameters of the compartment type itself
    dates: str  # pids of the care-date parameters
    link_types: list[str]  # member types other than the compartment type
    crid: int | None = None  # instance level: the compartment resource's rid, when it exists and is not deleted
    _every: dict[int, list[int]] = field(default_factory=dict)

    @classmethod
    def build(cls, conn: sqlite3.Connection, ids: ParamIds, request: EverythingRequest) -> _Plan:
        ctype = request.compartment_type
        table = _param_table(ids)
        table.refresh(conn)
        own = {ctype: tuple(request.follow.get(ctype, ()))}
        plan = cls(
            conn, request,
            links=table.resolve(request.links),
            follow=table.resolve(request.follow),
            follow_self=table.resolve(own, cache=False),
            dates=table.resolve({t: (c,) for t, c in request.care_dates.items()}, cache=False),
            link_types=sorted(t for t in request.links if t != ctype),
        )
        if request.compartment_id is not None:
            row = conn.execute("SELECT rid, deleted FROM resources WHERE type = ? AND id = ?",
                               (ctype, request.compartment_id)).fetchone()
            if row is not None and not row[1]:
                plan.crid = int(row[0])
        return plan

    @property
    def instance(self) -> bool:
        return self.request.compartment_id is not None

    # -- conditions on a resources alias ------------------------------------------------------------------

    def care(self, a: str) -> tuple[str, list[Any]]:
        """True when ``a`` has no care date, or one that meets the range."""
        start, end = self.request.care_start, self.request.care_end
        if (start is None and end is None) or not self.dates:
            return "1", []
        bounds, args = [], []
        if start is not None:
            bounds.append("d.high > ?")
            args.append(start)
        if end is not None:
            bounds.append("d.low < ?")
            args.append(end)
        return (f"(NOT EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = {a}.rid AND +d.pid IN ({self.dates})) "
                f"OR EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = {a}.rid AND +d.pid IN ({self.dates}) "
                f"AND {' AND '.join(bounds)}))"), args

    def linked(self, a: str) -> str:
        """True when ``a`` is in some compartment of the type (one ``?``: the compartment type)."""
        return (f"EXISTS (SELECT 1 FROM idx_reference c WHERE c.rid = {a}.rid AND +c.pid IN ({self.links}) "
                f"AND c.type = ?)")

    def returned(self, a: str) -> tuple[str, list[Any]]:
        """The filters on what is returned: ``types`` and ``since``."""
        parts, args = [], []
        types = self.request.types
        if types is not None:
            parts.append(f"+{a}.type IN ({_marks(types)})")
            args.extend(sorted(types))
        if self.request.since is not None:
            parts.append(f"(SELECT lv.last_updated FROM versions lv WHERE lv.seq = {a}.current_seq) >= ?")
            args.append(self.request.since)
        return " AND ".join(parts) or "1", args

    # -- sections -------------------------------------------------------------------------------------------

    def members_sql(self) -> tuple[str, list[Any]]:
        """Instance level: the rids with a link reference to the compartment resource (deleted or not)."""
        return (f"SELECT DISTINCT x.rid AS rid FROM idx_reference x WHERE x.pid IN ({self.links}) "
                f"AND x.id = ? AND x.type = ?"), [self.request.compartment_id, self.request.compartment_type]

    def section(self, number: int, after: int, limit: int | None) -> tuple[str, list[Any]]:
        """``SELECT rid …`` of one section: rids greater than ``after``, in order, at most ``limit``."""
        sql, args = [self._section0, self._section1, self._section2][number](after)
        if limit is not None:
            sql += " ORDER BY 1 LIMIT ?"
            args.append(limit)
        return sql, args

    def _section0(self, after: int) -> tuple[str, list[Any]]:
        ret, ret_args = self.returned("r")
        if self.instance:
            if self.crid is None:
                return "SELECT NULL WHERE 0", []
            return (f"SELECT r.rid FROM resources r WHERE r.rid = ? AND r.rid > ? AND {ret}",
                    [self.crid, after, *ret_args])
        return (f"SELECT r.rid FROM resources r WHERE r.type = ? AND r.deleted = 0 AND r.rid > ? AND {ret}",
                [self.request.compartment_type, after, *ret_args])

    def _section1(self, after: int) -> tuple[str, list[Any]]:
        ctype = self.request.compartment_type
        care, care_args = self.care("r")
        ret, ret_args = self.returned("r")
        if self.instance:
            members, m_args = self.members_sql()
            return (f"SELECT r.rid FROM ({members} AND x.rid > ?) m CROSS JOIN resources r ON r.rid = m.rid "
                    f"WHERE r.deleted = 0 AND r.rid IS NOT ? AND {care} AND {ret}",
                    [*m_args, after, self.crid, *care_args, *ret_args])
        # type level: scan in rid order (the unary + keeps SQLite off the type index, which would need a sort)
        return (f"SELECT r.rid FROM resources r WHERE r.rid > ? AND r.deleted = 0 "
                f"AND +r.type IN ({_marks(self.link_types)}) AND {self.linked('r')} AND {care} AND {ret}",
                [after, *self.link_types, ctype, *care_args, *ret_args])

    def _section2(self, after: int) -> tuple[str, list[Any]]:
        ctype = self.request.compartment_type
        ret, ret_args = self.returned("t")
        if self.instance:
            members, m_args = self.members_sql()
            care, care_args = self.care("r")
            own = " UNION ALL SELECT ?" if self.crid is not None else ""
            own_args = [self.crid] if self.crid is not None else []
            # the distinct (type, id) referenced, less the members' own, are few: only those are looked up
            return (
                f"WITH m(rid) AS MATERIALIZED ({members}), "
                f"src(rid) AS (SELECT r.rid FROM m CROSS JOIN resources r ON r.rid = m.rid "
                f"WHERE r.deleted = 0 AND {care}{own}), "
                f"refs(type, id) AS (SELECT ref.type, ref.id FROM src CROSS JOIN idx_reference ref "
                f"ON ref.rid = src.rid WHERE +ref.pid IN ({self.follow}) AND ref.type != ? AND ref.id != '' "
                f"EXCEPT SELECT r.type, r.id FROM m CROSS JOIN resources r ON r.rid = m.rid) "
                f"SELECT t.rid FROM refs CROSS JOIN resources t ON t.type = refs.type AND t.id = refs.id "
                f"WHERE t.rid > ? AND t.deleted = 0 AND NOT {self.linked('t')} AND {ret}",
                [*m_args, *care_args, *own_args, ctype, after, ctype, *ret_args],
            )
        care, care_args = self.care("s")
        # a source row is a member's when it comes from a resource of the compartment type, or from a resource
        # with a link reference to one
        source = (f"(s.pid IN ({self.follow_self}) OR EXISTS (SELECT 1 FROM idx_reference c2 WHERE c2.rid = s.rid "
                  f"AND +c2.pid IN ({self.links}) AND c2.type = ?))")
        return (
            f"SELECT t.rid FROM resources t WHERE t.rid > ? AND t.deleted = 0 AND +t.type != ? "
            f"AND NOT {self.linked('t')} AND {ret} "
            f"AND EXISTS (SELECT 1 FROM idx_reference s WHERE s.pid IN ({self.follow}) AND s.id = t.id "
            f"AND s.type = t.type AND {source} AND {care})",
            [after, ctype, ctype, *ret_args, ctype, *care_args],
        )

    def rids(self, number: int, after: int, limit: int) -> list[int]:
        if self.instance and number < 2:
            every = self.every(number)
            start = bisect.bisect_right(every, after)
            return every[start:start + limit]
        sql, args = self.section(number, after, limit)
        return [int(row[0]) for row in self.conn.execute(sql, args)]

    def every(self, number: int) -> list[int]:
        """Instance level: all the rids of section 0 or 1.  One patient's matches are few enough that one query
        for all of them serves both the page and the total."""
        if number not in self._every:
            sql, args = self.section(number, 0, None)
            self._every[number] = [int(row[0]) for row in self.conn.execute(f"{sql} ORDER BY 1", args)]
        return self._every[number]

    def count_matches(self) -> int:
        if self.instance:
            return len(self.every(0)) + len(self.every(1))
        total = 0
        for number in (0, 1):
            sql, args = self.section(number, 0, None)
            total += int(self.conn.execute(f"SELECT count(*) FROM ({sql})", args).fetchone()[0])
        return total


def _decode(cursor: str) -> tuple[int, int]:
    values, forward = decode_cursor(cursor)
    if (not forward or len(values) != 2 or not all(isinstance(v, int) for v in values)
            or values[0] not in _SECTIONS):
        raise InvalidRequest("_cursor does not belong to this operation", expression="_cursor")
    return int(values[0]), int(values[1])


def _versions(conn: sqlite3.Connection, rids: list[int]) -> dict[int, StoredVersion]:
    if not rids:
        return {}
    rows = conn.execute(f"SELECT {_COLUMNS} FROM resources r JOIN versions v ON v.seq = r.current_seq "
                        f"WHERE r.rid IN ({_marks(rids)})", rids).fetchall()
    return {int(rid): StoredVersion(rtype, rid_id, version, lu, method, body)
            for rid, rtype, rid_id, version, lu, method, body in rows}


def _total(plan: _Plan, budget_ms: int | None) -> int | None:
    if budget_ms is None:
        return plan.count_matches()
    deadline = time.monotonic() + budget_ms / 1000
    plan.conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 2000)
    try:
        return plan.count_matches()
    except sqlite3.OperationalError as exc:
        if "interrupt" not in str(exc):
            raise
        return None
    finally:
        plan.conn.set_progress_handler(None, 0)


def everything_page(conn: sqlite3.Connection, ids: ParamIds, request: EverythingRequest) -> SearchPage:
    section, after = _decode(request.cursor) if request.cursor else (0, 0)
    conn.execute("BEGIN")  # one snapshot for the page and the total
    try:
        plan = _Plan.build(conn, ids, request)
        keys: list[tuple[int, int]] = []
        if request.count > 0:
            want = request.count + 1  # one more than the page: is there a next page?
            for number in _SECTIONS[section:]:
                start = after if number == section else 0
                keys.extend((number, rid) for rid in plan.rids(number, start, want - len(keys)))
                if len(keys) >= want:
                    break
        more = len(keys) > request.count
        keys = keys[: request.count]
        versions = _versions(conn, [rid for _, rid in keys])
        total = _total(plan, request.total_budget_ms) if request.total else None
    finally:
        conn.execute("COMMIT")
    matches = [versions[rid] for number, rid in keys if number < 2 and rid in versions]
    included = [versions[rid] for number, rid in keys if number == 2 and rid in versions]
    next_cursor = encode_cursor(list(keys[-1]), True) if more and keys else None
    return SearchPage(matches, included, total, next_cursor, None)
