"""A private Mosquitto broker process, for the demo and the tests.

Listens on loopback only, persists its state in its own folder (so messages
queued for persistent sessions survive a restart), and is sized for long
outages: a persistent session may queue up to `max_queued` messages. Like the
production broker (deploy/mosquitto/), it drops any message larger than
`message_size_limit` bytes of payload. It has started when its own process
listens on the port: another program listening there does not count.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psutil

from campus_energy.core.incoming import MAX_PAYLOAD_BYTES
from campus_energy.errors import ServiceError

# Four times the largest reading the bridge accepts: a reading too large still reaches the
# bridge, which counts it and keeps a bounded part in its dead letters; anything larger is
# dropped by the broker before it costs memory or disk anywhere.
MESSAGE_SIZE_LIMIT = 4 * MAX_PAYLOAD_BYTES
SEARCH_PATH = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def mosquitto_executable() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in SEARCH_PATH if Path(p).is_file()), None)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` itself has a TCP socket listening on `port`."""
    try:
        sockets = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:  # gone, or not ours to look at
        return False
    return any(s.status == psutil.CONN_LISTEN and s.laddr.port == port for s in sockets)


class Mosquitto:
    def __init__(
        self,
        folder: Path,
        port: int,
        *,
        max_queued: int = 1_000_000,
        message_size_limit: int = MESSAGE_SIZE_LIMIT,
    ) -> None:
        self.folder = folder
        self.port = port
        self.max_queued = max_queued
        self.message_size_limit = message_size_limit  # 0: MQTT's own limit (256 MiB)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def config_file(self) -> Path:
        return self.folder / "mosquitto.conf"

    def _write_config(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    f"user {getpass.getuser()}",  # keep our own user: it can write the folder
                    "persistence true",
                    f"persistence_location {self.folder}/",
                    "autosave_interval 1",
                    f"max_queued_messages {self.max_queued}",
                    "max_queued_bytes 0",
                    "max_inflight_messages 500",  # a subscriber that acknowledges in batches
                    f"message_size_limit {self.message_size_limit}",
                    f"log_dest file {self.folder / 'mosquitto.log'}",
                    "",
                ]
            ),
            encoding="utf-8",
        )

    def start(self, timeout_s: float = 10.0) -> None:
        executable = mosquitto_executable()
        if executable is None:
            raise ServiceError("mosquitto is not installed")
        self._write_config()
        self.process = subprocess.Popen(
            [executable, "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for us must not stop it before we flush
        )
        deadline = time.monotonic() + timeout_s
        while not listens(self.process.pid, self.port):
            code = self.process.poll()
            if code is not None:
                self.process = None
                if port_open("127.0.0.1", self.port):
                    raise ServiceError(
                        f"mosquitto cannot listen on port {self.port}: another program does"
                    )
                raise ServiceError(
                    f"mosquitto exited with status {code} (see {self.folder / 'mosquitto.log'})"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"mosquitto did not listen on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop gracefully (it saves its persistence file)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
