"""Asking a local HTTP service, for a poll: an answer, or None (nothing useful) while it starts."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def get_json(url: str) -> Any:
    """The JSON body at `url`; None when nothing answers or the body is not JSON."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def status(url: str) -> int | None:
    """The HTTP status at `url`; None when nothing answers, or it answers with an error."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return None


def streamlit_health(port: int) -> str:
    """What Streamlit's health endpoint says ("ok" once it serves); "" when nothing answers."""
    try:
        url = f"http://127.0.0.1:{port}/_stcore/health"
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return ""
