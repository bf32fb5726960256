"""A virtual RS-485 cable: a pseudo-terminal pair made by socat."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.processes import require_program
from tests.support.waiting import wait_for


class SocatPair:
    """Two linked device paths in `folder`: the simulator serves one, the logger opens the other."""

    def __init__(self, folder: Path) -> None:
        self.server_end = str(folder / "ttySIM")
        self.client_end = str(folder / "ttyLOGGER")
        self.process: subprocess.Popen[bytes] | None = None

    def plug(self) -> None:
        socat = require_program("socat")
        self.process = subprocess.Popen(
            [
                socat,
                f"pty,raw,echo=0,link={self.server_end}",
                f"pty,raw,echo=0,link={self.client_end}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(
            lambda: os.path.exists(self.server_end) and os.path.exists(self.client_end),
            what="socat's device paths",
        )

    def unplug(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
        wait_for(lambda: not os.path.exists(self.client_end), what="socat's device paths gone")
