"""The e-mail channel: a notice (or a report's message) sent over SMTP.

Stdlib `smtplib` in a worker thread (`asyncio.to_thread`), one connection per message:
security "starttls" (plain SMTP upgraded with STARTTLS, which is then required), "tls"
(implicit TLS, SMTP_SSL) or "none"; AUTH when a username is set (the password is the
channel's secret); the server's certificate checked against the system's CAs or `ca_file`.

Every failure becomes a `DeliveryError` (try again later: nothing listens, a timeout, a
4xx answer, TLS trouble) or a `DeliveryRefused` (a 5xx answer: recipients or credentials
refused), naming the channel and host:port and never the password.

A notice whose message some recipients accepted and others refused raises `DeliveryRefused`
(a retry would repeat it to those who have it); a report's message (`send_message`) counts
as sent, the refused addresses logged once at WARNING.

A notice's `Message-ID` is derived from its key, so a delivery retried after a crash
carries the same id and mail clients fold the duplicates.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
import smtplib
import ssl
import time
from collections.abc import Sequence
from copy import deepcopy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from campus_energy.core.timestamps import iso_utc
from campus_energy.incidents.values import DeliveryError, DeliveryRefused, Notice

log = logging.getLogger(__name__)

PORTS = {"starttls": 587, "tls": 465, "none": 25}
AUTH_MECHANISMS = ("PLAIN", "LOGIN")  # in order of preference (both need TLS to be safe)


def message_id(key: str, sender: str) -> str:
    """`<hash of key@...>`: the same for every delivery of one notice."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    domain = sender.rpartition("@")[2] or "campus-energy.invalid"
    return f"<alert.{digest}@{domain}>"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _facts(notice: Notice) -> list[tuple[str, str]]:
    t = notice.transition
    return [
        ("Event", t.event),
        ("Severity", t.severity),
        ("Rule", f"{t.rule} ({notice.kind}, scope {notice.scope})"),
        ("Subject", t.subject),
        ("At", iso_utc(t.at_ms)),
        ("Value", "" if t.value is None else f"{t.value:g}"),
        ("Detail", t.detail),
        ("Site", notice.site),
    ]


def notice_message(notice: Notice, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """The notice as a multipart/alternative message (plain text and a small HTML part)."""
    message = EmailMessage()
    message["Subject"] = _one_line(notice.subject_line)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(notice.transition.at_ms / 1000, usegmt=True)
    message["Message-ID"] = message_id(notice.key, sender)
    facts = _facts(notice)
    width = max(len(name) for name, _ in facts)
    text = [notice.subject_line, ""]
    text += [f"{name + ':':<{width + 1}} {value}" for name, value in facts if value]
    text += ["", f"Notification {notice.key}", ""]
    message.set_content("\n".join(text))
    rows = "".join(
        f"<tr><th align='left'>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
        for name, value in facts
        if value
    )
    message.add_alternative(
        "<!DOCTYPE html><html><body>"
        f"<p><strong>{html.escape(notice.subject_line)}</strong></p>"
        f"<table>{rows}</table>"
        f"<p style='color:#777'>Notification {html.escape(notice.key)}</p>"
        "</body></html>",
        subtype="html",
    )
    return message


class EmailChannel:
    """Sends notices and report messages by SMTP; see the module's docstring."""

    def __init__(
        self,
        name: str,
        *,
        host: str,
        sender: str,
        recipients: Sequence[str],
        security: str = "starttls",
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 30.0,
        ca_file: Path | None = None,
    ) -> None:
        if security not in PORTS:
            raise ValueError(f"security must be one of {', '.join(PORTS)}, got {security!r}")
        self.name = name
        self.host = host
        self.port = port or PORTS[security]
        self.sender = sender
        self.recipients = tuple(recipients)
        self.security = security
        self.username = username
        self._password = password
        self.timeout_s = timeout_s
        self.ca_file = ca_file

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:  # never the password
        return f"EmailChannel({self.name!r}, {self.endpoint}, {self.security})"

    async def send(self, notice: Notice) -> None:
        """Mail the notice to the channel's recipients; DeliveryRefused when any refused."""
        refused = await self._submit(notice_message(notice, self.sender, self.recipients))
        if refused:  # the others have it: sending again would repeat it to them
            raise DeliveryRefused(
                self._say(f"delivered to the others; refused: {_refused(refused)}")
            )

    async def send_message(self, message: EmailMessage) -> None:
        """Mail a message built elsewhere (a report): From and To default to the channel's,
        Date to now, Message-ID to a fresh one. The caller's message is left as it is.
        Sent when any recipient accepted it (those refused are logged at WARNING); raises
        DeliveryRefused when every one refused it, DeliveryError when it may go later."""
        copy = deepcopy(message)
        defaults = {
            "From": self.sender,
            "To": ", ".join(self.recipients),
            "Date": formatdate(time.time(), usegmt=True),
            "Message-ID": make_msgid("report", self.sender.rpartition("@")[2] or None),
        }
        for header, value in defaults.items():
            if copy[header] is None:
                copy[header] = value
        refused = await self._submit(copy)
        if refused:
            log.warning("%s", self._say(f"sent, but refused: {_refused(refused)}"))

    async def close(self) -> None:
        """Nothing held open: each message has its own connection."""

    async def _submit(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        """Send it; the recipients refused while others accepted it (address: answer)."""
        try:
            return await asyncio.to_thread(self._deliver, message)
        except DeliveryError:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            kind = DeliveryRefused if all(500 <= c < 600 for c in codes) else DeliveryError
            raise kind(self._say(f"recipients refused: {_refused(exc.recipients)}")) from None
        except smtplib.SMTPResponseException as exc:  # auth, sender, data, HELO: a coded answer
            code = exc.smtp_code
            kind = DeliveryRefused if 500 <= code < 600 else DeliveryError
            what = type(exc).__name__.removeprefix("SMTP")
            raise kind(self._say(f"{what}: {code} {_text(exc.smtp_error)}")) from None
        except ssl.SSLError as exc:
            raise DeliveryError(self._say(f"TLS failed: {exc.reason or exc}")) from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timeout, no STARTTLS
            raise DeliveryError(self._say(f"{type(exc).__name__}: {exc}")) from None

    def _say(self, what: str) -> str:
        text = f"e-mail channel {self.name} ({self.endpoint}): {what}"
        if self._password:
            text = text.replace(self._password, "***")
        return text

    def _deliver(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        """One SMTP session (in a worker thread): connect, secure, log in, send, quit; the
        recipients refused while others accepted it."""
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )
        client: smtplib.SMTP
        if self.security == "tls":
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        with client:
            client.ehlo()
            if self.security == "starttls":
                if not client.has_extn("starttls"):
                    raise DeliveryError(self._say("the server offers no STARTTLS"))
                client.starttls(context=context)
                client.ehlo()
            if self.username is not None:
                self._log_in(client)
            return client.send_message(message)

    def _log_in(self, client: smtplib.SMTP) -> None:
        """AUTH with one mechanism the server offers (PLAIN, else LOGIN): one try, not one
        per mechanism as `SMTP.login` does, so a wrong password counts once against the
        account."""
        offered = (client.esmtp_features.get("auth") or "").upper().split()
        mechanism = next((m for m in AUTH_MECHANISMS if m in offered), None)
        if mechanism is None:
            said = f"offers {', '.join(offered)}" if offered else "offers no AUTH"
            raise DeliveryError(self._say(f"the server {said} (need PLAIN or LOGIN)"))
        client.user, client.password = self.username or "", self._password or ""
        authenticate = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        client.auth(mechanism, authenticate, initial_response_ok=True)


def _text(answer: bytes | str) -> str:
    raw = answer.decode(errors="replace") if isinstance(answer, bytes) else answer
    return _one_line(raw)[:200]


def _refused(recipients: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{address}: {code} {_text(text)}" for address, (code, text) in recipients.items()
    )
