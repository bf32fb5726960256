"""A real webhook receiver for the tests: a ThreadingHTTPServer that checks each POST's
signature and timestamp the way a receiver should, and answers with scripted statuses.

with webhook_receiver(secret="s3cret", answers=[500, 200]) as hook:
    ...  # hook.url; hook.calls: every request, with whether its signature held

`echo_path=True`: an answer other than 2xx is an HTML error page quoting the request's path
and query, as many servers' are (the URL's token with them).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FRESH_S = 300  # a receiver refuses a timestamp further off than this (a replay)


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]
    body: bytes
    signed: bool  # the signature matched the body and the timestamp, which was fresh
    status: int  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


def verified(secret: str, headers: dict[str, str], body: bytes, now_s: float) -> bool:
    """What a receiver checks: a fresh timestamp, and the HMAC over "<timestamp>.<body>"."""
    timestamp = headers.get("X-Campus-Energy-Timestamp", "")
    if not timestamp.isdigit() or abs(now_s - int(timestamp)) > FRESH_S:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    given = headers.get("X-Campus-Energy-Signature", "")
    return hmac.compare_digest(given, "sha256=" + expected.hexdigest())


@dataclass
class Receiver:
    url: str
    secret: str | None
    answers: list[int]  # statuses to answer in turn; the last one stays
    echo_path: bool = False  # a failure's page quotes the path and query
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            status = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            signed = self.secret is not None and verified(self.secret, headers, body, time.time())
            if self.secret is not None and not signed:
                status = 401
            self.calls.append(Call(path, headers, body, signed, status))
            return status


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = receiver.answer(self.path, dict(self.headers.items()), body)
            answer = json.dumps({"status": status}).encode()
            kind = "application/json"
            if receiver.echo_path and not 200 <= status < 300:
                page = f"<html><body><h1>{status}</h1><p>No route for POST {self.path}</p>"
                answer, kind = f"{page}</body></html>".encode(), "text/html"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(answer)))
            if 300 <= status < 400:
                self.send_header("Location", "http://elsewhere.invalid/hook")
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet

    return Handler


@contextlib.contextmanager
def webhook_receiver(
    *, secret: str | None = None, answers: list[int] | None = None, echo_path: bool = False
) -> Iterator[Receiver]:
    """A receiver on 127.0.0.1 and a free port, shut down (and its thread joined) after."""
    receiver = Receiver("", secret, list(answers or [200]), echo_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.block_on_close = True
    server.daemon_threads = False
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/energy?token=abc"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="webhook-receiver")
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
