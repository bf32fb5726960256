"""The HTTP front: a real nginx, with the shipped configuration, in front of a real Gunicorn.

The API runs as `campus-energy api` (Gunicorn, 1 worker × 4 threads) over a
small SQLite window store; nginx runs as this test's own process (`-p` a temp
folder, `daemon off`, free ports) with `deploy/nginx/campus-energy-proxy.conf`
included as shipped and the http-level part of `deploy/nginx/campus-energy.conf`
(upstream, zones) taken from the file, only the upstream's address changed.
Plain HTTP, except for the test that runs the whole shipped site with TLS.

What must hold:
- slowloris: 16 connections that send the start of a request and never finish
  it hold every Gunicorn thread (measured and printed: the "before"), while
  through nginx `/api/health` answers as usual, and nginx drops them itself;
- the systemd watchdog is pinged only while the app answers: the same attack
  straight on Gunicorn stops the pings, and they come back when it ends;
- what a client sees from the front: the API's security headers on every
  answer (nginx's own errors and the static files too), 414 and 431 as JSON
  whichever of nginx and Gunicorn refused, 405 with `Allow`, `/metrics` not
  served, a 503 that names no file, 502 when Gunicorn is gone;
- Gunicorn makes no control socket (`~/.gunicorn/gunicorn.ctl`).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.support.known_windows import config_for, windows, write
from tests.support.net import free_port
from tests.support.processes import campus_energy, require_program
from tests.support.systemd import WATCHDOG_S, NotifySocket
from tests.support.waiting import wait_for

from campus_energy.api.app import SECURITY_HEADERS
from campus_energy.api.probe import USER_AGENT

REPO = Path(__file__).parents[2]
SITE = REPO / "deploy" / "nginx" / "campus-energy.conf"
PROXY = REPO / "deploy" / "nginx" / "campus-energy-proxy.conf"
STATIC_ROOT = REPO / "src" / "campus_energy" / "api"
MIME_TYPES = Path("/etc/nginx/mime.types")
UPSTREAM = "server 127.0.0.1:8000;"
THREADS = 4  # Gunicorn's threads per worker (api.server), one worker here
SLOW_CLIENTS = 16
BEFORE_WAIT_S = 5.0  # how long the "before" request waits for Gunicorn's answer


def nginx_program() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    return found or require_program("nginx")  # skips, or fails under CI


def figure(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """A measured figure for the report (docs/operations.md quotes them)."""
    with capsys.disabled():
        print(f"\n[http front] {line}")


# --- the API under Gunicorn ---------------------------------------------------------------------


@dataclass
class Api:
    port: int
    log: Path
    home: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_api(tmp_path: Path, store: Path, env: dict[str, str] | None = None) -> Api:
    port = free_port()
    config = tmp_path / "api.toml"
    config.write_text(
        f'[site]\ntimezone = "Asia/Kolkata"\n[api]\nport = {port}\nworkers = 1\n'
        f'[bridge.sqlite]\npath = "{store}"\n',
        encoding="utf-8",
    )
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    environ = {k: v for k, v in (env or os.environ).items() if k != "XDG_RUNTIME_DIR"}
    environ["HOME"] = str(home)  # where Gunicorn would put its control socket
    log = tmp_path / "api.log"
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            campus_energy("api", "-c", config),
            stdout=stderr,  # Gunicorn's access log
            stderr=stderr,
            env=environ,
        )
    return Api(port, log, home, process)


def until_answering(api: Api) -> None:
    def answers() -> bool:
        assert api.process.poll() is None, api.log.read_text()
        return get(api.port, "/api/health", timeout=5).status in (200, 503)

    wait_for(lambda: _quietly(answers), timeout=60, interval=0.1)


def _quietly(check: Any) -> Any:
    try:
        return check()
    except (OSError, http.client.HTTPException):
        return False


@pytest.fixture
def store(tmp_path: Path) -> Path:
    config = config_for(tmp_path)  # three meters' windows, written by the real sink
    write(config, windows()[:24])
    return config.bridge.sqlite.path


@pytest.fixture
def api(tmp_path: Path, store: Path) -> Iterator[Api]:
    running = start_api(tmp_path, store)
    try:
        until_answering(running)
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()[-2000:]
        assert "Traceback" not in running.log.read_text()


# --- nginx --------------------------------------------------------------------------------------


def http_context(site: str) -> str:
    """The statements of a site file outside its `server` blocks (upstream, zones), as written."""
    text = "\n".join(line.split("#", 1)[0] for line in site.splitlines())
    kept, statement, depth = [], "", 0
    for char in text:
        statement += char
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if depth == 0 and char in ";}":
            if statement.split()[0] != "server":
                kept.append(statement.strip())
            statement = ""
    assert depth == 0 and not statement.strip(), "unbalanced site file"
    return "\n".join(kept)


@dataclass
class Nginx:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def error_log(self) -> str:
        return (self.folder / "error.log").read_text(errors="replace")


def nginx_conf(folder: Path, http: str, servers: str) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers that may read the test's files
    temp = "".join(
        f"    {kind}_temp_path {folder / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"daemon off;\n{user}worker_processes 1;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} info;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        f"    include {MIME_TYPES};\n"
        "    default_type application/octet-stream;\n"
        f"    access_log {folder / 'access.log'};\n"
        f"{temp}{http}\n{servers}\n}}\n"
    )


def run_nginx(folder: Path, conf: str, port: int) -> Nginx:
    program = nginx_program()
    if not MIME_TYPES.is_file():
        require_program("nginx-mime-types")  # Debian's nginx-common ships it with nginx
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nginx.conf").write_text(conf, encoding="utf-8")
    with (folder / "stderr.log").open("ab") as stderr:
        process = subprocess.Popen(
            [program, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    running = Nginx(port, folder, process)

    def listening() -> bool:
        assert process.poll() is None, (folder / "stderr.log").read_text()
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, timeout=30)
    return running


def stop_nginx(running: Nginx) -> None:
    if running.process.poll() is None:
        running.process.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
        try:
            running.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()


def front_for(folder: Path, api_port: int) -> tuple[str, int]:
    """nginx.conf: the shipped proxy snippet in a plain-HTTP server in front of `api_port`."""
    http = http_context(SITE.read_text(encoding="utf-8"))
    assert http.count(UPSTREAM) == 1, "the upstream's address in campus-energy.conf moved"
    http = http.replace(UPSTREAM, f"server 127.0.0.1:{api_port};")
    port = free_port()
    server = (
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        "        server_name localhost;\n"
        f"        root {STATIC_ROOT};\n"
        f"        include {PROXY};\n"
        "    }"
    )
    return nginx_conf(folder, http, server), port


@pytest.fixture
def nginx(tmp_path: Path, api: Api) -> Iterator[Nginx]:
    conf, port = front_for(tmp_path / "nginx", api.port)
    running = run_nginx(tmp_path / "nginx", conf, port)
    try:
        yield running
    finally:
        stop_nginx(running)


# --- clients ------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        assert self.headers["Content-Type"] == "application/json", self.headers
        return json.loads(self.body)


def get(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


class SlowClients:
    """Connections that each send the start of a request and then nothing, never closing."""

    START = b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n"

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.socks: list[socket.socket] = []

    def __enter__(self) -> SlowClients:
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            sock.sendall(self.START)
            self.socks.append(sock)
        return self

    def closed_by_server(self) -> int:
        """How many of them the server has closed (or answered) by now."""
        count = 0
        for sock in self.socks:
            try:
                sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                count += 1  # an answer (408) or the end of the stream
            except BlockingIOError:
                pass
            except OSError:
                count += 1  # reset
        return count

    def __exit__(self, *exc: object) -> None:
        for sock in self.socks:
            sock.close()


def timed_health(port: int, timeout: float) -> tuple[int | None, float]:
    """(status or None when no answer came within `timeout`, seconds waited)."""
    started = time.monotonic()
    try:
        status: int | None = get(port, "/api/health", timeout=timeout).status
    except (TimeoutError, OSError):
        status = None
    return status, time.monotonic() - started


def said(status: int | None, seconds: float) -> str:
    return f"no answer in {seconds:.1f} s" if status is None else f"{status} in {seconds:.3f} s"


# --- slowloris ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_slowloris_holds_gunicorn_but_not_nginx(
    api: Api, nginx: Nginx, capsys: pytest.CaptureFixture[str]
) -> None:
    assert get(api.port, "/api/health").status == 200
    with SlowClients(api.port, SLOW_CLIENTS):
        before = timed_health(api.port, BEFORE_WAIT_S)  # measured, not asserted
    until_answering(api)  # the threads are free once those clients go
    with SlowClients(nginx.port, SLOW_CLIENTS):
        after = [timed_health(nginx.port, 30) for _ in range(10)]
        assert [status for status, _ in after] == [200] * 10
    figure(
        capsys,
        f"slowloris, {SLOW_CLIENTS} unfinished requests ({THREADS} Gunicorn threads): "
        f"/api/health straight to Gunicorn: {said(*before)}; "
        f"through nginx: {said(*max(after, key=lambda a: a[1]))} (slowest of 10)",
    )


@pytest.mark.slow
def test_nginx_drops_a_client_that_never_finishes_its_request(
    nginx: Nginx, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    with SlowClients(nginx.port, SLOW_CLIENTS) as slow:
        wait_for(lambda: slow.closed_by_server() == SLOW_CLIENTS, timeout=60, interval=0.1)
        waited = time.monotonic() - started
    assert "client timed out" in nginx.error_log()
    assert get(nginx.port, "/api/health").status == 200
    figure(capsys, f"nginx closed {SLOW_CLIENTS} unfinished requests after {waited:.1f} s")


# --- the watchdog -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.long
def test_the_watchdog_is_pinged_only_while_the_app_answers(
    tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manager = NotifySocket()
    api = start_api(tmp_path, store, manager.environ())
    try:
        manager.until({"READY": "1"}, 60)
        until_answering(api)
        for _ in range(3):
            manager.until({"WATCHDOG": "1"}, WATCHDOG_S)
        with SlowClients(api.port, SLOW_CLIENTS):
            attacked = time.monotonic()
            stopped = manager.until({"STATUS": "not answering"}, 60)
            # systemd restarts a unit whose pings stop for WatchdogSec: none may come now
            manager.silent("WATCHDOG", 2 * WATCHDOG_S)
        released = time.monotonic()
        resumed = manager.until({"STATUS": "answering"}, 60)
        manager.until({"WATCHDOG": "1"}, WATCHDOG_S)
        log = api.log.read_text()
        assert log.count("no answer within 10 s; systemd's watchdog is no longer pinged") == 1
        assert "recovered after" in log
        assert '"GET /api/health HTTP/1.1" 200' in log  # the access log, without the probes
        assert USER_AGENT not in log
        assert api.stop() == 0
        figure(
            capsys,
            f"watchdog: pings stopped {stopped - attacked:.1f} s after {SLOW_CLIENTS} "
            f"unfinished requests held every thread (probe bound 10 s, WatchdogSec={WATCHDOG_S}); "
            f"resumed {resumed - released:.1f} s after the clients left",
        )
    finally:
        api.stop()
        manager.close()
    assert "Traceback" not in api.log.read_text()


def test_gunicorn_makes_no_control_socket(api: Api) -> None:
    assert get(api.port, "/api/health").status == 200  # the arbiter is past its start-up
    assert api.stop() == 0  # so it has done all it does
    assert not (api.home / ".gunicorn").exists()  # the folder outlives the socket it held
    assert "Control socket" not in api.log.read_text()


# --- what a client sees through the front -------------------------------------------------------


def assert_security_headers(answer: Answer) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers.get_all(name) == [value], (name, answer.status)


def test_every_answer_through_nginx_carries_the_apis_security_headers(nginx: Nginx) -> None:
    for path in ("/", "/api/health", "/api/summary", "/api/no-such", "/static/app.js"):
        answer = get(nginx.port, path)
        assert answer.status in (200, 404), (path, answer.status)
        assert_security_headers(answer)
    assert get(nginx.port, "/api/openapi.json").json()["openapi"].startswith("3.")


def test_static_files_come_from_nginx_with_validators(nginx: Nginx, api: Api) -> None:
    app_js = get(nginx.port, "/static/app.js")
    assert app_js.status == 200
    assert app_js.body == (STATIC_ROOT / "static" / "app.js").read_bytes()
    assert app_js.headers["Content-Type"] == "application/javascript"
    assert app_js.headers["Cache-Control"] == "no-cache" and app_js.headers["ETag"]
    again = get(nginx.port, "/static/app.js", headers={"If-None-Match": app_js.headers["ETag"]})
    assert again.status == 304
    vendor = get(nginx.port, "/static/vendor/uplot/uPlot.min.css")
    assert vendor.status == 200 and vendor.headers["Cache-Control"] == "max-age=604800"
    assert_security_headers(vendor)
    assert get(nginx.port, "/static/../probe.py").status == 404  # nothing beside static/
    assert get(nginx.port, "/static/no-such.js").status == 404
    served = api.log.read_text()
    assert "/static/app.js" not in served  # Gunicorn never saw them


@pytest.mark.parametrize(
    ("length", "who"),
    [(6_000, "gunicorn"), (12_000, "nginx")],  # Gunicorn's limit 4094 bytes, nginx's 8 KiB
)
def test_a_request_line_too_long_is_414_json(nginx: Nginx, length: int, who: str) -> None:
    answer = get(nginx.port, "/api/health?x=" + "a" * length)
    assert answer.status == 414, who
    assert answer.json() == {"error": "request line too long"}
    assert_security_headers(answer)
    assert b"gunicorn" not in answer.body.lower() and b"nginx" not in answer.body.lower()


@pytest.mark.parametrize(
    ("headers", "who"),
    [
        ({f"X-Many-{n}": "1" for n in range(120)}, "gunicorn"),  # over its 100 fields
        ({"X-Big": "a" * 10_000}, "nginx"),  # over its 8 KiB buffer
    ],
)
def test_header_fields_too_large_are_431_json(
    nginx: Nginx, headers: dict[str, str], who: str
) -> None:
    answer = get(nginx.port, "/api/health", headers=headers)
    assert answer.status == 431, who
    assert answer.json() == {"error": "request header fields too large"}
    assert_security_headers(answer)


def test_a_method_the_api_does_not_take_is_405_with_allow_through_nginx(nginx: Nginx) -> None:
    for method in ("POST", "PUT", "DELETE"):
        answer = get(nginx.port, "/api/summary", method=method)
        assert answer.status == 405, method
        assert set(answer.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
        assert answer.json() == {"error": "this API is read-only: GET only"}
        assert_security_headers(answer)


def test_metrics_are_not_served_publicly(nginx: Nginx, api: Api) -> None:
    assert get(api.port, "/metrics").status == 200  # Prometheus scrapes the API itself
    for path in ("/metrics", "/metrics?format=text", "/%6Detrics", "//metrics", "/./metrics"):
        answer = get(nginx.port, path)
        assert answer.status == 404, path
        assert answer.json() == {"error": "no such endpoint: /metrics"}
        assert b"campus_energy_api" not in answer.body


def test_an_unavailable_store_is_a_plain_503_through_nginx(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-folder" / "windows.db"  # a wrong path: 503 for every read
    api = start_api(tmp_path, missing)
    try:
        until_answering(api)
        conf, port = front_for(tmp_path / "nginx", api.port)
        front = run_nginx(tmp_path / "nginx", conf, port)
        try:
            answers = [get(port, path) for path in ("/api/health", "/api/summary", "/api/meters")]
        finally:
            stop_nginx(front)
    finally:
        assert api.stop() == 0
    for answer in answers:
        assert answer.status == 503
        assert answer.json()["error"] == "window store unavailable"
        assert str(missing.parent).encode() not in answer.body and b"windows.db" not in answer.body
        assert_security_headers(answer)
    log = api.log.read_text()
    assert log.count(f"{missing} does not exist yet") == 1  # the cause, once for the outage
    figure(capsys, f"503 body now: {answers[1].body.decode()} (the cause is in the API's log)")


def test_gunicorn_gone_is_502_json(nginx: Nginx, api: Api) -> None:
    assert api.stop() == 0
    answer = get(nginx.port, "/api/health")
    assert answer.status == 502
    assert answer.json() == {"error": "the API is not answering"}
    assert_security_headers(answer)
    static = get(nginx.port, "/static/app.css")  # the page's files do not need the API
    assert static.status == 200


# --- the shipped site as a whole, with TLS ------------------------------------------------------


def test_the_shipped_site_serves_https_and_sends_http_there(tmp_path: Path, api: Api) -> None:
    openssl = require_program("openssl")
    folder = tmp_path / "site"
    folder.mkdir()
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=energy.example.edu", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    http_port, https_port = free_port(), free_port()
    site = SITE.read_text(encoding="utf-8")
    for old, new in {  # what the deployment guide says to change, and the test's own paths
        UPSTREAM: f"server 127.0.0.1:{api.port};",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "/etc/letsencrypt/live/energy.example.edu/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/energy.example.edu/privkey.pem": str(key),
        "/opt/campus-energy/src/campus_energy/api;": f"{STATIC_ROOT};",
        "/var/log/nginx/campus-energy.access.log": str(folder / "access.log"),
        "/var/log/nginx/campus-energy.error.log": str(folder / "error.log"),
        "include snippets/campus-energy-proxy.conf;": f"include {PROXY};",
    }.items():
        assert site.count(old) == 1, old
        site = site.replace(old, new)
    running = run_nginx(folder, nginx_conf(folder, "", site), http_port)
    try:
        plain = get(http_port, "/api/summary?x=1", headers={"Host": "energy.example.edu"})
        assert plain.status == 301
        assert plain.headers["Location"] == "https://energy.example.edu/api/summary?x=1"
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False  # the name is the placeholder's, the address loopback
        conn = http.client.HTTPSConnection("127.0.0.1", https_port, timeout=30, context=context)
        try:
            conn.request("GET", "/api/health", headers={"Host": "energy.example.edu"})
            response = conn.getresponse()
            answer = Answer(response.status, response.headers, response.read())
            version = conn.sock.version() if conn.sock is not None else None
        finally:
            conn.close()
        assert answer.status == 200 and answer.json()["source"] == "sqlite"
        assert answer.headers["Strict-Transport-Security"] == "max-age=63072000"
        assert_security_headers(answer)
        assert version in ("TLSv1.2", "TLSv1.3")
    finally:
        stop_nginx(running)
    assert re.search(r"\[(emerg|alert|crit)\]", (folder / "stderr.log").read_text()) is None
