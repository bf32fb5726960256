"""A real SMTP server for the tests (aiosmtpd in its own thread), and a self-signed certificate.

with smtp_server(port, tls="starttls", certificate=cert, users={"energy": "pw"}) as inbox:
    ...  # inbox.messages: what it accepted, parsed
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from tests.support.processes import require_program


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def self_signed(folder: Path) -> Certificate:
    """A certificate for localhost and 127.0.0.1 (its own CA), made with `openssl req -x509`."""
    openssl = require_program("openssl")
    cert, key = folder / "server.crt", folder / "server.key"
    command = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]  # fmt: skip
    subprocess.run(
        command,
        check=True,
        capture_output=True,
        timeout=30,
    )
    return Certificate(cert, key)


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    login: str | None


@dataclass
class Inbox:
    """The server's handler: accepts mail, refusing the recipients in `refuse` (550).
    `asked`: every recipient a client gave (RCPT), accepted or refused."""

    refuse: set[str] = field(default_factory=set)
    messages: list[Received] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.asked.append(address)
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data.login.decode() if session.authenticated else None
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed, login))
        return "250 OK"


class _Users:
    """An aiosmtpd authenticator for LOGIN and PLAIN against a table of users."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        if self.users.get(login) != password:
            return AuthResult(success=False, handled=False)  # aiosmtpd answers 535
        return AuthResult(success=True, auth_data=auth_data)


@contextlib.contextmanager
def smtp_server(
    port: int,
    *,
    security: str = "none",
    certificate: Certificate | None = None,
    users: dict[str, str] | None = None,
    inbox: Inbox | None = None,
    exclude: tuple[str, ...] = (),
) -> Iterator[Inbox]:
    """An SMTP server on 127.0.0.1:`port` ("none", "starttls" required, or implicit "tls"),
    with AUTH LOGIN/PLAIN (less the mechanisms in `exclude`) over TLS when `users` is given;
    stopped (thread and loop) after."""
    inbox = inbox if inbox is not None else Inbox()
    options: dict[str, Any] = {}
    if security == "starttls":
        assert certificate is not None
        options.update(tls_context=certificate.server_context(), require_starttls=True)
    elif security == "tls":
        assert certificate is not None
        options.update(ssl_context=certificate.server_context())
    if users is not None:
        # aiosmtpd knows TLS only from STARTTLS: on implicit TLS it takes AUTH as offered
        required = security != "tls"
        options.update(
            authenticator=_Users(users),
            auth_required=required,
            auth_require_tls=required,
            auth_exclude_mechanism=exclude,
        )
    loop = asyncio.new_event_loop()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, loop=loop, **options)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()
        loop.close()
