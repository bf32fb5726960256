"""Serving the API with Gunicorn (Flask's own server only for development).

Under systemd, Gunicorn's arbiter (the main process) says READY=1 by itself
once it listens; the arbiter here pings the watchdog from its main loop only
while the app answers a real `GET /api/live` on the socket it listens on
(`probe.HealthProbe`), and says STOPPING=1 when it halts.

Gunicorn's control socket is off: it would sit at one path per user
(`~/.gunicorn/gunicorn.ctl`), where each instance deletes another's.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from campus_energy.api.probe import PATH, USER_AGENT, HealthProbe, probe_address
from campus_energy.config import Config
from campus_energy.errors import ServiceError
from campus_energy.runtime.notify import Notifier


class NotifyingArbiter(Arbiter):  # type: ignore[misc]
    """Gunicorn's arbiter, pinging systemd's watchdog while the app answers.

    The loop wakes at least once a second (to check on its workers); each time
    it moves the health probe on and, while the app answers, pings. So a
    `WatchdogSec=` of a few seconds or more is kept alive while the app serves,
    and lapses when every worker thread is held and nothing answers.
    """

    def __init__(self, app: Gunicorn) -> None:
        self.notifier = app.notifier
        self.probe: HealthProbe | None = None
        self.answering = True
        super().__init__(app)

    def manage_workers(self) -> None:
        super().manage_workers()
        interval = self.notifier.ping_interval_s
        if interval is None or not self.LISTENERS:
            return
        if self.probe is None:
            self.probe = HealthProbe(probe_address(self.LISTENERS[0].sock), every_s=interval)
        self.probe.step()
        if self.probe.answering != self.answering:
            self.answering = self.probe.answering
            self.notifier.status(
                "answering" if self.answering else f"not answering on {self.probe.where}"
            )
        if self.answering:
            self.notifier.watchdog()

    def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
        self.notifier.stopping()
        if self.probe is not None:
            self.probe.close()
        super().halt(reason, exit_status)


class _NotTheProbe(logging.Filter):
    """Leaves the watchdog's own requests out of the access log (one every few seconds)."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args
        return not (
            isinstance(atoms, dict) and atoms.get("a") == USER_AGENT and atoms.get("U") == PATH
        )


def _leave_the_probe_out_of_the_access_log(worker: Any) -> None:
    """Gunicorn's `post_worker_init` hook: the filter, in each worker."""
    logging.getLogger("gunicorn.access").addFilter(_NotTheProbe())


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
            "control_socket_disable": True,
            "post_worker_init": _leave_the_probe_out_of_the_access_log,
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
