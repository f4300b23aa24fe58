"""Email over SMTP (aiosmtplib): STARTTLS on the submission port, implicit TLS (port 465), or none (a relay on
localhost).  The server's certificate is verified (against ``FHIR_NOTIFY__SMTP_CA_FILE`` when set)."""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib

from fhir_server.settings import NotifySettings
from fhir_server.workflows.notifications.channels.base import DeliveryError, Outgoing


class EmailChannel:
    name = "email"

    def __init__(self, settings: NotifySettings) -> None:
        if not settings.smtp_host:
            raise ValueError("FHIR_NOTIFY__SMTP_HOST is not set")
        self.settings = settings

    def _tls_context(self) -> ssl.SSLContext:
        cafile = str(self.settings.smtp_ca_file) if self.settings.smtp_ca_file else None
        return ssl.create_default_context(cafile=cafile)

    async def send(self, message: Outgoing) -> str | None:
        s = self.settings
        mail = EmailMessage()
        mail["From"] = s.smtp_from
        mail["To"] = message.to
        mail["Subject"] = message.subject
        msgid = make_msgid(idstring=message.reference.replace("/", "."), domain="infirmary")
        mail["Message-ID"] = msgid
        mail["X-Infirmary-Reference"] = message.reference
        mail.set_content(message.body)
        tls = s.smtp_tls
        try:
            await aiosmtplib.send(
                mail,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_user,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                use_tls=tls == "tls",
                start_tls=tls == "starttls",
                tls_context=self._tls_context() if tls != "none" else None,
                timeout=s.smtp_timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"the mail server refused the recipient: {exc}", permanent=True) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        return msgid
