"""What a Subscription may ask for: unsupported criteria and channels are refused with an OperationOutcome naming
the element, and nothing is stored; the server owns status and error."""

from __future__ import annotations

from typing import Any

import httpx

from tests.workflows.subscriptions.conftest import FHIR_JSON, subscription

HOOK = {"type": "rest-hook", "endpoint": "https://hooks.example.org/fhir"}


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("Observatio?code=1", HOOK, "Subscription.criteria"),
    ("Observation?no-such-param=1", HOOK, "Subscription.criteria"),
    ("Observation?code=1&_sort=date", HOOK, "Subscription.criteria"),
    ("Observation?code:in=http://example.org/vs", HOOK, "Subscription.criteria"),
    ("Observation?date=notadate", HOOK, "Subscription.criteria"),
    ("Observation?code=1", {"type": "rest-hook"}, "Subscription.channel.endpoint"),
    ("Observation?code=1", {"type": "rest-hook", "endpoint": "http://hooks.example.org/x"},
     "Subscription.channel.endpoint"),
    ("Observation?code=1", {"type": "rest-hook", "endpoint": "ftp://127.0.0.1/x"}, "Subscription.channel.endpoint"),
    ("Observation?code=1", {"type": "email", "endpoint": "mailto:a@example.org"}, "Subscription.channel.type"),
    ("Observation?code=1", {**HOOK, "payload": "text/plain"}, "Subscription.channel.payload"),
    ("Observation?code=1", {**HOOK, "header": ["no colon here"]}, "Subscription.channel.header[0]"),
]


async def test_unsupported_subscriptions_are_refused(client: httpx.AsyncClient) -> None:
    for criteria, channel, expression in REFUSED:  # one app for all cases: the checks are what is tested
        response = await client.post("Subscription", content=subscription(criteria, channel), headers=FHIR_JSON)
        assert response.status_code == 422, (criteria, channel, response.text)
        issue = response.json()["issue"][0]
        assert issue["expression"] == [expression], (criteria, channel, issue)
    assert (await client.get("Subscription")).json().get("total", 0) == 0


async def test_the_server_owns_status_and_error(client: httpx.AsyncClient) -> None:
    body = subscription("Observation?code=1", {"type": "rest-hook", "endpoint": "https://127.0.0.1:9/x"},
                        error="made up")
    body = body.replace(b'"status": "requested"', b'"status": "active"')
    created = await client.post("Subscription", content=body, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    stored = created.json()
    assert stored["status"] == "requested" and "error" not in stored


async def test_type_only_criteria_and_chains_are_accepted(client: httpx.AsyncClient) -> None:
    for criteria in ("Observation?", "Observation", "Observation?subject.name=alice", "Patient?_has:Observation:"
                     "subject:code=1234-5"):
        response = await client.post("Subscription", headers=FHIR_JSON, content=subscription(
            criteria, {"type": "websocket"}))
        assert response.status_code == 201, (criteria, response.text)
