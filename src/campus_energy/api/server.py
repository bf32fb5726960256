"""Serving the API with Gunicorn (Flask's own server only for development)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from campus_energy.config import Config


class Gunicorn(BaseApplication):  # type: ignore[misc]
    """Gunicorn run from Python with the app built once per worker from our config."""

    def __init__(self, config: Config, options: dict[str, Any] | None = None) -> None:
        self.config = config
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


def serve(config: Config, *, dev: bool = False) -> None:
    if dev:
        from campus_energy.api import create_app

        create_app(config).run(host=config.api.host, port=config.api.port, debug=False)
        return
    Gunicorn(config).run()
