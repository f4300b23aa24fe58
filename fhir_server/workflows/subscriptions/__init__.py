"""FHIR R4 criteria-based Subscriptions (rest-hook and websocket); guide: docs/subscriptions.md."""

from fhir_server.workflows.subscriptions.definition import Definition
from fhir_server.workflows.subscriptions.service import SubscriptionService

__all__ = ["Definition", "SubscriptionService"]
