"""``Appointment/$find``: free slots as proposed Appointments (IHE/Argonaut scheduling style).

Indexed Slot searches answer it — ``status=free``, ``start`` in the range, ``specialty``, ``service-type``
and ``schedule`` (the Schedules of the PractitionerRoles a ``practitioner``/``location`` filter selects: a
generated Schedule has its role's id) — one UTC day of the range at a time, sorted by start, until ``_count``
proposals are found; the ``next`` cursor is the day and the store's keyset cursor within it.  The participants of
each proposal come from the PractitionerRoles of the page (one ``_id`` search).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fhir_server.errors import InvalidRequest
from fhir_server.storage.base import StoredVersion
from fhir_server.workflows.scheduling._appointments import from_slot, schedule_id
from fhir_server.workflows.scheduling._model import instant
from fhir_server.workflows.scheduling._params import OpParams
from fhir_server.workflows.scheduling._store import Deps, current, search_all, search_page

PARAMS = ("specialty", "service-type", "visit-type", "practitioner", "practitioner-role", "location", "start", "end",
          "_count", "_cursor")
DEFAULT_COUNT = 20


class FindService:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def find(self, params: OpParams, base_url: str) -> dict[str, Any]:
        deps = self.deps
        start = params.instant("start") or datetime.fromtimestamp(deps.now(), UTC)
        end = params.instant("end") or start + timedelta(days=deps.settings.find_default_days)
        if end <= start:
            raise InvalidRequest("end must be after start", expression="end")
        count = params.integer("_count", 1, deps.settings.find_max_count) or \
            min(DEFAULT_COUNT, deps.settings.find_max_count)
        filters: list[tuple[str, str]] = [("status", "free")]
        for name, param in (("specialty", "specialty"), ("service-type", "service-type"),
                            ("visit-type", "service-type")):
            values = params.texts(name)
            if values:
                filters.append((param, ",".join(values)))
        schedules = await self._schedules(params)
        if schedules is not None:
            if not schedules:
                return _bundle(base_url, params, [], None, {})
            filters.append(("schedule", ",".join(f"Schedule/{s}" for s in sorted(schedules))))
        slots, cursor = await self._page(filters, start, end, count, params.text("_cursor"))
        return _bundle(base_url, params, slots, cursor, await self._roles(slots))

    async def _page(self, filters: list[tuple[str, str]], start: datetime, end: datetime, count: int,
                    cursor: str | None) -> tuple[list[StoredVersion], str | None]:
        """Up to ``count`` free slots in ``[start, end)``, soonest first, one UTC day at a time: a day
        (``start=eq2027-01-10``) is a small range of the date index that drives the search, where a whole window
        would be as large as the store and the planner would drive by ``status`` instead."""
        day, within = _decode(cursor) if cursor else (start.date(), None)
        day = max(day, start.date())
        last = (end - timedelta(microseconds=1)).date()
        found: list[StoredVersion] = []
        while day <= last:
            query = [*filters, ("start", f"eq{day.isoformat()}")]
            if day == start.date() and start > datetime.combine(day, time(0), UTC):
                query.append(("start", f"sa{instant(start - timedelta(seconds=1))}"))  # starts at or after start
            if day == end.date():
                query.append(("start", f"lt{instant(end)}"))
            page = await search_page(self.deps, "Slot", [*query, ("_sort", "start")], count - len(found), within)
            found.extend(page.matches)
            if page.next_cursor is not None:
                return found, _encode(day, page.next_cursor)
            day, within = day + timedelta(days=1), None
            if len(found) >= count:
                return found, _encode(day, None) if day <= last else None
        return found, None

    async def _schedules(self, params: OpParams) -> set[str] | None:
        """The Schedules (= PractitionerRole ids) a practitioner/role/location filter allows; None: any."""
        roles = set(params.texts("practitioner-role"))
        criteria: list[tuple[str, str]] = []
        for name in ("practitioner", "location"):
            values = params.texts(name)
            if values:
                criteria.append((name, ",".join(values)))
        if not criteria:
            return {r.split("/")[-1] for r in roles} if roles else None
        found = {c.resource["id"] async for c in search_all(self.deps, "PractitionerRole",
                                                             [*criteria, ("active:not", "false")])}
        return found & {r.split("/")[-1] for r in roles} if roles else found

    async def _roles(self, slots: list[StoredVersion]) -> dict[str, dict[str, Any]]:
        ids = sorted({sid for s in slots if (sid := schedule_id(current(s).resource)) is not None})
        if not ids:
            return {}
        page = await search_page(self.deps, "PractitionerRole", [("_id", ",".join(ids))], len(ids))
        return {v.id: current(v).resource for v in page.matches}


def _participants(role_id: str | None, roles: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    if role_id is None or role_id not in roles:
        return []
    role = roles[role_id]
    actors = [{"reference": f"PractitionerRole/{role_id}"}]
    if isinstance(role.get("practitioner"), dict):
        actors.append({k: v for k, v in role["practitioner"].items() if k in ("reference", "display")})
    actors += [{k: v for k, v in loc.items() if k in ("reference", "display")} for loc in role.get("location", ())]
    return [{"actor": a} for a in actors]


def _bundle(base_url: str, params: OpParams, slots: list[StoredVersion], cursor: str | None,
            roles: dict[str, dict[str, Any]]) -> dict[str, Any]:
    entries = []
    for stored in slots:
        slot = current(stored).resource
        proposal = from_slot(slot, _participants(schedule_id(slot), roles), "proposed", "needs-action")
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": proposal, "search": {"mode": "match"}})
    plain = params.as_query(leave_out=("_cursor",))
    link = [{"relation": "self", "url": f"{base_url}/Appointment/$find?{urlencode(plain)}"}]
    if cursor is not None:
        link.append({"relation": "next",
                     "url": f"{base_url}/Appointment/$find?{urlencode([*plain, ('_cursor', cursor)])}"})
    return {"resourceType": "Bundle", "type": "searchset", "link": link, "entry": entries}


def _encode(day: date, within: str | None) -> str:
    raw = json.dumps([day.isoformat(), within], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[date, str | None]:
    try:
        day, within = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return date.fromisoformat(day), within if isinstance(within, str) else None
    except (ValueError, TypeError, binascii.Error):
        raise InvalidRequest("_cursor is not a cursor of this operation", expression="_cursor") from None
