"""Talking about a PostgreSQL server without giving it away: where it is, and its errors
with the DSN and password taken out (the sink, the source and `doctor` say the same)."""

from __future__ import annotations

import contextlib

import psycopg
from psycopg.conninfo import conninfo_to_dict

from campus_energy.core.validation import masked


def endpoint(dsn: str) -> str:
    """host:port/dbname of a DSN, without user or password (for messages)."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgres (unparsable DSN)"
    host, port = parts.get("host", "localhost"), parts.get("port", 5432)
    return f"postgres {host}:{port}/{parts.get('dbname', '')}"


def dsn_secrets(dsn: str | None) -> list[str]:
    """What of a DSN no message may show: the DSN itself (libpq echoes a malformed one) and
    its password."""
    if not dsn:
        return []
    found = [dsn]
    with contextlib.suppress(psycopg.Error):
        found.append(str(conninfo_to_dict(dsn).get("password") or ""))
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def error_text(exc: BaseException, dsn: str | None) -> str:
    """A driver error for a message: its first line, without the DSN or a password in it."""
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "no detail"
    return masked(text, dsn_secrets(dsn))
