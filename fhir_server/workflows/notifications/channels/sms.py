"""SMS through an HTTP gateway.

``gateway`` (the documented request format, docs/notifications.md)::

    POST {FHIR_NOTIFY__SMS_URL}
    Authorization: Bearer {FHIR_NOTIFY__SMS_TOKEN}
    Content-Type: application/json
    {"to": "+34600111222", "body": "…", "reference": "Communication/<id>"}

    → any 2xx; a JSON body with "id" is kept as the message id.  4xx (other than 408/429) is permanent.

``twilio`` (Twilio's Messages API, or anything compatible)::

    POST {FHIR_NOTIFY__SMS_URL}/2010-04-01/Accounts/{SID}/Messages.json
    Authorization: Basic base64(SID:TOKEN)
    Content-Type: application/x-www-form-urlencoded
    To=…&From=…&Body=…            → 201 {"sid": "SM…", …}
"""

from __future__ import annotations

import httpx

from fhir_server.settings import NotifySettings
from fhir_server.workflows.notifications.channels.base import DeliveryError, Outgoing

_RETRYABLE_4XX = {408, 425, 429}


class GatewaySms:
    name = "sms"

    def __init__(self, settings: NotifySettings) -> None:
        if not settings.sms_url:
            raise ValueError("FHIR_NOTIFY__SMS_URL is not set")
        self.settings = settings

    async def send(self, message: Outgoing) -> str | None:
        s = self.settings
        headers = {"Authorization": f"Bearer {s.sms_token.get_secret_value()}"} if s.sms_token else {}
        payload = {"to": message.to, "body": message.body, "reference": message.reference}
        response = await _post(str(s.sms_url), s.sms_timeout_s, json=payload, headers=headers)
        return _message_id(response, "id")


class TwilioSms:
    name = "sms"

    def __init__(self, settings: NotifySettings) -> None:
        if not settings.sms_url or not settings.sms_account_sid or not settings.sms_token or not settings.sms_from:
            raise ValueError("the twilio SMS adapter needs FHIR_NOTIFY__SMS_URL, _SMS_ACCOUNT_SID, _SMS_TOKEN "
                             "and _SMS_FROM")
        self.settings = settings

    async def send(self, message: Outgoing) -> str | None:
        s = self.settings
        sid = str(s.sms_account_sid)
        url = f"{str(s.sms_url).rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
        assert s.sms_token is not None
        response = await _post(url, s.sms_timeout_s, data={"To": message.to, "From": str(s.sms_from),
                                                            "Body": message.body},
                               auth=(sid, s.sms_token.get_secret_value()))
        return _message_id(response, "sid")


async def _post(url: str, timeout_s: float, **kwargs: object) -> httpx.Response:
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.post(url, **kwargs)  # type: ignore[arg-type]
    except httpx.HTTPError as exc:
        raise DeliveryError(f"the SMS gateway could not be reached: {type(exc).__name__}") from exc
    if response.status_code >= 300:
        permanent = 400 <= response.status_code < 500 and response.status_code not in _RETRYABLE_4XX
        raise DeliveryError(f"the SMS gateway answered {response.status_code}", permanent=permanent)
    return response


def _message_id(response: httpx.Response, field: str) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get(field) if isinstance(body, dict) else None
    return str(value) if value is not None else None
