"""Delivery channels: email (SMTP), SMS (HTTP gateway or Twilio), in-app (the Communication is the message).

A channel's ``send`` returns on acceptance by the next hop and raises ``DeliveryError`` otherwise
(``permanent`` when trying again cannot help, e.g. a rejected address)."""

from __future__ import annotations

from fhir_server.workflows.notifications.channels.base import Channel, DeliveryError, Outgoing
from fhir_server.workflows.notifications.channels.registry import available, channel_for

__all__ = ["Channel", "DeliveryError", "Outgoing", "available", "channel_for"]
