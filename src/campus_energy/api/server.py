"""Serving the API with Gunicorn (Flask's own server only for development).

Under systemd, Gunicorn's arbiter (the main process) says READY=1 by itself
once it listens; the arbiter here also pings the watchdog from its main loop
and says STOPPING=1 when it halts.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from campus_energy.config import Config
from campus_energy.errors import ServiceError
from campus_energy.notify import Notifier


class NotifyingArbiter(Arbiter):  # type: ignore[misc]
    """Gunicorn's arbiter, pinging systemd's watchdog each time round its main loop.

    The loop wakes at least once a second (to check on its workers), so a
    `WatchdogSec=` of a few seconds or more is kept alive while it runs.
    """

    def __init__(self, app: Gunicorn) -> None:
        self.notifier = app.notifier
        super().__init__(app)

    def manage_workers(self) -> None:
        super().manage_workers()
        if self.notifier.ping_interval_s is not None:
            self.notifier.watchdog()

    def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
        self.notifier.stopping()
        super().halt(reason, exit_status)


class Gunicorn(BaseApplication):  # type: ignore[misc]
    """Gunicorn run from Python with the app built once per worker from our config."""

    def __init__(
        self,
        config: Config,
        options: dict[str, Any] | None = None,
        *,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.options = {
            "bind": f"{config.api.host}:{config.api.port}",
            "workers": config.api.workers,
            "worker_class": "gthread",
            "threads": 4,
            "timeout": 30,
            "graceful_timeout": 10,
            "accesslog": "-",
            "errorlog": "-",
            "proc_name": "campus-energy-api",
            **(options or {}),
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        from campus_energy.api import create_app

        return create_app(self.config)

    def run(self) -> None:
        try:
            NotifyingArbiter(self).run()
        except RuntimeError as exc:
            raise ServiceError(f"gunicorn: {exc}") from None


def serve(config: Config, *, dev: bool = False, notifier: Notifier | None = None) -> None:
    if dev:
        from campus_energy.api import create_app

        create_app(config).run(host=config.api.host, port=config.api.port, debug=False)
        return
    Gunicorn(config, notifier=notifier).run()
