"""The SMS adapters against a local HTTP endpoint: the documented gateway format and the Twilio-compatible one."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest

from fhir_server.settings import NotifySettings
from fhir_server.workflows.notifications.channels import DeliveryError, Outgoing, channel_for
from tests.workflows.notifications._servers import SmsEndpoint


@pytest.fixture
def endpoint() -> Iterator[SmsEndpoint]:
    e = SmsEndpoint()
    e.start()
    yield e
    e.stop()


async def test_gateway_posts_json_with_a_bearer_token(endpoint: SmsEndpoint) -> None:
    channel = channel_for("sms", NotifySettings(sms_url=f"{endpoint.url}/v1/sms", sms_token="t0k"))
    message_id = await channel.send(Outgoing("+34600000001", "subject", "hello", "Communication/1"))
    (request,) = endpoint.requests
    assert request.path == "/v1/sms" and request.headers["authorization"] == "Bearer t0k"
    assert request.json() == {"to": "+34600000001", "body": "hello", "reference": "Communication/1"}
    assert message_id == "gw-1"


async def test_twilio_posts_a_form_with_basic_auth(endpoint: SmsEndpoint) -> None:
    settings = NotifySettings(sms_url=endpoint.url, sms_kind="twilio", sms_account_sid="AC123", sms_token="secret",
                              sms_from="+15550001111")
    message_id = await channel_for("sms", settings).send(Outgoing("+34600000002", "s", "hola", "Communication/2"))
    (request,) = endpoint.requests
    assert request.path == "/2010-04-01/Accounts/AC123/Messages.json"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"AC123:secret").decode()
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.body.decode()) == {"To": ["+34600000002"], "From": ["+15550001111"], "Body": ["hola"]}
    assert message_id == "SM1"


async def test_gateway_errors_are_retryable_or_permanent(endpoint: SmsEndpoint) -> None:
    channel = channel_for("sms", NotifySettings(sms_url=f"{endpoint.url}/sms"))
    endpoint.fail["+1"] = 1
    with pytest.raises(DeliveryError) as err:
        await channel.send(Outgoing("+1", "s", "b", "Communication/3"))
    assert not err.value.permanent and "503" in str(err.value)
    endpoint.stop()
    with pytest.raises(DeliveryError, match="could not be reached") as err:
        await channel.send(Outgoing("+1", "s", "b", "Communication/3"))
    assert not err.value.permanent
