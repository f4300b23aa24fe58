"""A Subscription as the server understands it: criteria parsed as a search, the channel checked.

Checked on every client write (``ResourceService.before_write``), so an unsupported Subscription is refused with an
OperationOutcome naming the element and nothing is stored:

* ``criteria`` — ``Type?params``: a supported resource type and a search the server can evaluate (strictly parsed;
  result parameters such as ``_sort`` or ``_include`` are refused; ``Type?`` alone means every resource of the
  type).  Value-set modifiers (``:in``, ``:not-in``) are refused.  Criteria the in-memory matcher answers alone are
  evaluated on the written resource; chains, ``_has`` and ``_list`` are answered by the store (an ``_id``-limited
  search of the written resource) after the commit.
* ``channel.type`` — ``rest-hook`` (``endpoint`` required: ``https``, or ``http`` to a loopback address when
  ``FHIR_SUBSCRIPTIONS__ALLOW_HTTP_LOOPBACK`` is on) or ``websocket`` (no endpoint); ``email``, ``sms`` and
  ``message`` are not supported.
* ``channel.payload`` — absent (notify without content) or ``application/fhir+json`` (the resource);
  ``channel.header`` entries must be ``Name: value``.

The server owns ``status`` and ``error``: a client may ask for ``requested`` or ``off``; anything else it sends
(an ``active`` copied from a read) is taken as ``requested``, and ``error`` is dropped.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fhir_server.errors import FhirError, ValidationFailed
from fhir_server.search.model import AnyOf, Chain, Clause, Criterion, Has, Not, SearchQuery
from fhir_server.search.parse import CONTROL, parse_query_string, parse_search
from fhir_server.search.registry import SearchRegistry

FHIR_JSON = "application/fhir+json"
PAYLOADS = frozenset({FHIR_JSON, "application/json", "application/fhir+json; fhirVersion=4.0"})
CHANNELS = frozenset({"rest-hook", "websocket"})
CLIENT_STATUSES = frozenset({"requested", "off"})
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[ \t]*[^\r\n]*$")
_LOOPBACK_NAMES = frozenset({"localhost"})

CriteriaParser = Callable[[str, str], SearchQuery]


@dataclass(frozen=True)
class Channel:
    type: str
    endpoint: str | None
    payload: str | None
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Definition:
    """What one Subscription listens for and where it tells."""

    id: str
    version: int
    status: str
    resource_type: str
    query: SearchQuery
    channel: Channel
    needs_store: bool  # criteria the in-memory matcher cannot answer alone (chains, _has, _list)
    access: dict[str, Any] | None  # the writer's access (auth/stamps.py); None: unrestricted


def _invalid(message: str, element: str) -> ValidationFailed:
    return ValidationFailed(message, expression=f"Subscription.{element}")


def parse_criteria(criteria: Any, registry: SearchRegistry, parse: CriteriaParser) -> SearchQuery:
    if not isinstance(criteria, str) or not criteria.strip():
        raise _invalid("a Subscription needs criteria such as 'Observation?code=1234-5'", "criteria")
    resource_type, _, query = criteria.strip().partition("?")
    if not registry.is_resource_type(resource_type):
        raise _invalid(f"criteria must start with a FHIR R4 resource type, not {resource_type!r}", "criteria")
    params = parse_query_string(query)
    for name, _value in params:
        if name.split(":", 1)[0] in CONTROL:
            raise _invalid(f"{name} does not select resources and cannot be used in criteria", "criteria")
    try:
        parsed = parse(resource_type, query) if params else SearchQuery(resource_type)
    except FhirError as exc:
        raise _invalid(f"criteria are not a search this server supports: {exc.diagnostics}", "criteria") from exc
    for criterion in parsed.criteria:
        _check_supported(criterion)
    return parsed


def strict_parser(registry: SearchRegistry, base_urls: tuple[str, ...],
                  canonicalise: Any) -> CriteriaParser:
    def parse(resource_type: str, query: str) -> SearchQuery:
        return parse_search(resource_type, parse_query_string(query), registry, strict=True, base_urls=base_urls,
                            canonicalise=canonicalise).query

    return parse


def _check_supported(c: Criterion) -> None:
    match c:
        case Clause(type="token", modifier="in" | "not-in"):
            raise _invalid(f"{c.param}:{c.modifier} (value sets) is not supported in Subscription criteria",
                           "criteria")
        case Not():
            _check_supported(c.inner)
        case AnyOf():
            for inner in c.criteria:
                _check_supported(inner)
        case Chain() | Has():
            _check_supported(c.inner)


def needs_store(criteria: Iterable[Criterion]) -> bool:
    """Whether the criteria need other resources (chains, ``_has``, ``_list``) to be answered."""
    for c in criteria:
        match c:
            case Chain() | Has():
                return True
            case Clause(type="list"):
                return True
            case Not() if needs_store((c.inner,)):
                return True
            case AnyOf() if needs_store(c.criteria):
                return True
    return False


def parse_channel(resource: dict[str, Any], allow_http_loopback: bool) -> Channel:
    channel = resource.get("channel")
    if not isinstance(channel, dict):
        raise _invalid("a Subscription needs a channel", "channel")
    kind = channel.get("type")
    if kind not in CHANNELS:
        raise _invalid(f"channel type {kind!r} is not supported (rest-hook, websocket)", "channel.type")
    endpoint = channel.get("endpoint")
    if kind == "rest-hook":
        _check_endpoint(endpoint, allow_http_loopback)
    payload = channel.get("payload")
    if payload is not None and payload not in PAYLOADS:
        raise _invalid(f"payload {payload!r} is not supported: leave it out (notification without content) or "
                       f"use {FHIR_JSON}", "channel.payload")
    headers: list[tuple[str, str]] = []
    for i, header in enumerate(channel.get("header") or ()):
        if not isinstance(header, str) or not _HEADER.match(header):
            raise _invalid("a channel header must be 'Name: value'", f"channel.header[{i}]")
        name, _, value = header.partition(":")
        headers.append((name.strip(), value.strip()))
    return Channel(kind, endpoint if isinstance(endpoint, str) else None, payload, tuple(headers))


def _check_endpoint(endpoint: Any, allow_http_loopback: bool) -> None:
    if not isinstance(endpoint, str) or not endpoint:
        raise _invalid("a rest-hook channel needs an endpoint URL", "channel.endpoint")
    parts = urlsplit(endpoint)
    if not parts.hostname:
        raise _invalid("the endpoint must be an absolute https URL", "channel.endpoint")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and allow_http_loopback and _loopback(parts.hostname):
        return
    raise _invalid("the endpoint must be an https URL" + (
        " (http is accepted for loopback addresses only)" if allow_http_loopback else ""), "channel.endpoint")


def _loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalise_status(resource: dict[str, Any]) -> None:
    """A client write: ``requested`` unless it asks for ``off``; the server's ``error`` is not the client's."""
    if resource.get("status") not in CLIENT_STATUSES:
        resource["status"] = "requested"
    resource.pop("error", None)
