"""Sending one rest-hook request: the channel's headers, the payload or none, 2xx or a failure."""

from __future__ import annotations

import httpx

from fhir_server.workflows.subscriptions.definition import FHIR_JSON, Channel


class DeliveryFailed(Exception):
    """The endpoint could not be reached or did not answer 2xx (the message says which, without the URL)."""


class RestHookSender:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        return self._client

    async def post(self, channel: Channel, body: bytes | None) -> None:
        """POST to the endpoint: ``body`` (the resource, ``application/fhir+json``) or nothing at all."""
        assert channel.endpoint is not None
        headers = dict(channel.headers)
        if body is not None:
            headers["Content-Type"] = f"{FHIR_JSON}; charset=utf-8"
        try:
            response = await self._http().post(channel.endpoint, content=body or b"", headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"the endpoint could not be reached ({type(exc).__name__})") from exc
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"the endpoint answered HTTP {response.status_code}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
