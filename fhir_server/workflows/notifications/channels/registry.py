"""Which channels this server has (from ``FHIR_NOTIFY__*``) and the adapter for each."""

from __future__ import annotations

from fhir_server.settings import NotifySettings
from fhir_server.workflows.notifications._codes import EMAIL, IN_APP, SMS
from fhir_server.workflows.notifications.channels.base import Channel


def available(settings: NotifySettings) -> set[str]:
    found = {IN_APP}
    if settings.smtp_host:
        found.add(EMAIL)
    if settings.sms_url:
        found.add(SMS)
    return found


def channel_for(name: str, settings: NotifySettings) -> Channel:
    if name == EMAIL:
        from fhir_server.workflows.notifications.channels.email import EmailChannel

        return EmailChannel(settings)
    if name == SMS:
        from fhir_server.workflows.notifications.channels.sms import GatewaySms, TwilioSms

        return TwilioSms(settings) if settings.sms_kind == "twilio" else GatewaySms(settings)
    raise ValueError(f"no delivery channel {name!r}")
