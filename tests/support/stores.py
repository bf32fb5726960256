"""Window stores for one test or one module: a throw-away PostgreSQL schema, the emulator.

A store that is missing here skips the test (fails it under CI).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

from tests.support.emulator import EmulatorUnavailable, running_emulator
from tests.support.processes import unavailable

POSTGRES_BASE_DSN = os.environ.get(
    "CAMPUS_ENERGY_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


@contextlib.contextmanager
def postgres_schema() -> Iterator[tuple[str, str]]:
    """(DSN, a throw-away schema name) on the local PostgreSQL; the schema is dropped after."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(POSTGRES_BASE_DSN, connect_timeout=5, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL at {POSTGRES_BASE_DSN} is not reachable: {exc}")
    try:
        yield POSTGRES_BASE_DSN, schema
    finally:
        with psycopg.connect(POSTGRES_BASE_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@contextlib.contextmanager
def emulator_or_skip(shared: bool = False) -> Iterator[str]:
    """`running_emulator` for a test: 'host:port', or the test is skipped when it is missing."""
    with contextlib.ExitStack() as stack:
        try:
            host = stack.enter_context(running_emulator(shared=shared))
        except EmulatorUnavailable as exc:
            unavailable(str(exc))
        yield host
