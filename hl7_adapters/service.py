"""HL7 v2 in the application: the MLLP listener, started and stopped with it.  (Outbound orders are job-queue
tasks and post-write reactions: ``hl7_adapters/outbound/tasks.py``.)

``create_app`` makes one :class:`Hl7Service`; its ``start``/``stop`` run in the application's lifespan, so
``infirmary serve`` runs the listener beside the FHIR API (``FHIR_HL7__ENABLED``), and ``infirmary mllp`` runs
the same lifespan without HTTP. With several worker processes each binds the port with ``SO_REUSEPORT`` and the
kernel spreads connections over them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hl7_adapters.mllp.server import MllpServer, ServerLimits, server_ssl_context

if TYPE_CHECKING:
    from fhir_server.api.context import FhirContext
    from hl7_adapters.inbound import InboundPipeline

log = logging.getLogger("hl7_adapters")


class Hl7Service:
    def __init__(self, fhir: FhirContext) -> None:
        self.fhir = fhir
        self.settings = fhir.settings.hl7
        self.server: MllpServer | None = None
        self._pipeline: InboundPipeline | None = None

    @property
    def pipeline(self) -> InboundPipeline:
        if self._pipeline is None:
            from hl7_adapters.inbound import InboundPipeline

            self._pipeline = InboundPipeline(self.fhir, self.settings)
        return self._pipeline

    async def start(self) -> None:
        if not self.settings.enabled:
            return
        s = self.settings
        ssl_context = server_ssl_context(s.tls_cert, s.tls_key, s.tls_client_ca) if s.tls_cert else None
        limits = ServerLimits(s.max_connections, s.idle_timeout_s, s.read_timeout_s, s.max_message_bytes)
        self.server = MllpServer(self.pipeline.handle, limits, ssl_context)
        await self.server.start(s.host, s.port, reuse_port=self.fhir.settings.server.workers > 1)
        log.info("MLLP listener on %s:%d%s", s.host, self.server.port, " (TLS)" if ssl_context else "")

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(self.settings.shutdown_grace_s)
            self.server = None
