from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Outgoing:
    to: str
    subject: str
    body: str
    reference: str  # Communication/<id>: the gateway's reference, the email's Message-ID seed


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    name: str

    async def send(self, message: Outgoing) -> str | None:
        """Hand the message to the next hop; returns its id there (when it gives one)."""
        ...
