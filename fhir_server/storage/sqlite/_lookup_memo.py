"""What a conditional look-up found, kept for the writer so that it need not search again (issue 6).

A transaction plan looks up its conditional criteria (``Repository.find_many``) on the event loop just before it
submits its write; the writer then resolves the same criteria again inside its transaction, because another
writer may have changed the matches in between.  The writer may use the look-up's answer instead of searching
when that answer is provably what its own search would return.  The argument:

1. **A generation counts every commit the look-up cannot have seen.**  :attr:`LookupMemo.generation` is advanced
   by the writer thread (only) after each of its transactions ends (committed or not), and at the start of a
   transaction when ``PRAGMA data_version`` of the writer connection changed since the last one — which SQLite
   guarantees whenever *any other* connection (another server process, a tool, a reindex on another connection)
   committed meanwhile.  The writer holds the write lock from ``BEGIN IMMEDIATE`` to ``COMMIT``, so nobody else
   commits while it works.
2. **The look-up reads the generation before its snapshot starts.**  :meth:`LookupMemo.stamp` is taken before the
   look-up's first statement; the statement's snapshot therefore contains every commit counted up to that stamp.
   A commit it might contain beyond the stamp advances the generation later, so the stamp no longer agrees (the
   writer searches: conservative).  Only look-ups on the event loop's own connection are recorded: it runs point
   reads and fully consumed look-ups only, so no statement keeps an older snapshot open on it (which would
   already break reading one's own writes).
3. **Same generation at the writer ⇒ the committed state is the one the look-up read.**
4. **Nothing written earlier in the transaction can change the answer.**  The writer's transaction also holds
   uncommitted writes of earlier requests of its batch and earlier ops of the same request.  The answer (the first
   ``limit`` matches by rid, ``limit`` ≥ 2) can only change through a written resource of the searched type that
   is among the matches found (updated or deleted: it may stop matching) or whose new version may match
   (:func:`may_match`, a necessary condition for matching).  Criteria that read other resource types (chains,
   ``_has``, ``_list``) are never answered from the memo.

When all four hold, :meth:`LookupMemo.take` returns the look-up's matches, and the writer applies them exactly as
it would apply its own search's; otherwise it searches as before.  A plan whose match vanished is still caught:
the vanishing commit advanced the generation, the writer searches, and ``preconditions.check_expected`` raises
``ConcurrentChange`` as it always did.
"""

from __future__ import annotations

import threading

from fhir_server.indexing.entries import IndexEntries
from fhir_server.search.model import Clause, SearchQuery, TokenValue

_MAX_ENTRIES = 1024  # look-ups the writer never asked for (a plan that failed) are dropped wholesale past this


class LookupMemo:
    """Shared by the repository (records look-ups) and its writer thread (advances, takes)."""

    def __init__(self) -> None:
        self.generation = 0
        self._found: dict[SearchQuery, tuple[int, int, list[str]]] = {}  # query → (stamp, limit, ids)
        self._lock = threading.Lock()

    def stamp(self) -> int:
        """Call before the look-up's first statement."""
        return self.generation

    def record(self, stamp: int, query: SearchQuery, limit: int, ids: list[str]) -> None:
        if limit < 2 or len(ids) > limit:
            return
        with self._lock:
            if len(self._found) >= _MAX_ENTRIES:
                self._found.clear()
            self._found[query] = (stamp, limit, ids)

    def advance(self) -> None:
        """Writer thread only: a commit happened (its own, or another connection's)."""
        with self._lock:
            self.generation += 1
            self._found.clear()

    def take(self, query: SearchQuery) -> list[str] | None:
        """The first two matches the look-up found, if it ran at the current generation (writer thread only)."""
        with self._lock:
            hit = self._found.pop(query, None)
        if hit is None or hit[0] != self.generation:
            return None
        return hit[2][:2]


def _token_codes(clause: Clause) -> set[str] | None:
    """The codes one of which a token clause requires (plain or ``:of-type``), or None when it requires none."""
    if clause.type != "token" or clause.modifier not in (None, "of-type") or not clause.values:
        return None
    codes = set()
    for value in clause.values:
        if not isinstance(value, TokenValue) or value.code is None:
            return None
        codes.add(value.code)
    return codes


def may_match(query: SearchQuery, entries: IndexEntries | None) -> bool:
    """False only when a resource indexed with ``entries`` certainly does not match ``query`` (criteria of the
    searched type only): some token criterion wants a code that none of its entries of that parameter has (the
    SQL compares ``code = ?`` exactly, grp 0 included).  None (entries not known) may match anything."""
    if entries is None:
        return True
    for criterion in query.criteria:
        if isinstance(criterion, Clause):
            codes = _token_codes(criterion)
            if codes is not None and not any(
                    e.param == criterion.param and (e.code or "") in codes for e in entries.tokens):
                return False
    return True
