"""The MQTT broker (connect with the configured credentials and TLS) and the window sink."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

from campus_energy.config import Config, MqttConfig
from campus_energy.errors import (
    BrokerAuthError,
    BrokerError,
    BrokerRefusedError,
    BrokerTimeoutError,
    BrokerTLSError,
)
from campus_energy.ops.doctor.checks import (
    Context,
    Identity,
    Result,
    Status,
    identity,
    readable_file,
    readable_fix,
)
from campus_energy.ops.doctor.checks.files import access_problem, open_read_only

BROKER_TIMEOUT_S = 5.0
SINK_TIMEOUT_S = 5.0

# --- the broker ---------------------------------------------------------------------------------


def _refused(mqtt: MqttConfig) -> str:
    return (
        "start the broker: sudo systemctl start mosquitto "
        f"(or correct mqtt.host and mqtt.port: nothing listens on {mqtt.host}:{mqtt.port})"
    )


def _auth(mqtt: MqttConfig) -> str:
    if mqtt.username is None:
        return "the broker wants credentials: set mqtt.username and mqtt.password_file"
    return (
        f"check mqtt.username ({mqtt.username}) and the password in mqtt.password_file; on the "
        f"broker, set it again with: sudo mosquitto_passwd /etc/mosquitto/passwd {mqtt.username}"
    )


def _tls(mqtt: MqttConfig) -> str:
    return (
        f"check that mqtt.tls_ca_file signed the broker's certificate, that the certificate is "
        f"for {mqtt.host!r}, and that port {mqtt.port} is the broker's TLS listener"
    )


def _timeout(mqtt: MqttConfig) -> str:
    return (
        f"no answer from {mqtt.host}:{mqtt.port}: check the address, a firewall, and that the "
        "port is the broker's MQTT listener"
    )


def _other(mqtt: MqttConfig) -> str:
    return (
        f"check mqtt.host ({mqtt.host}) and mqtt.port ({mqtt.port}), and that the broker runs: "
        "sudo systemctl status mosquitto"
    )


# broker failure -> what to do about it
BROKER_FIXES: dict[type[BrokerError], Callable[[MqttConfig], str]] = {
    BrokerRefusedError: _refused,
    BrokerAuthError: _auth,
    BrokerTLSError: _tls,
    BrokerTimeoutError: _timeout,
    BrokerError: _other,
}


def _broker_files(mqtt: MqttConfig, who: Identity) -> Result | None:
    files = {
        "mqtt.password_file": mqtt.password_file,
        "mqtt.tls_ca_file": mqtt.tls_ca_file,
        "mqtt.tls_cert_file": mqtt.tls_cert_file,
        "mqtt.tls_key_file": mqtt.tls_key_file,
    }
    for key, path in files.items():
        if path is None:
            continue
        problem = readable_file(key, path, who)
        if problem is not None:
            return Result(Status.FAIL, "broker", problem, readable_fix(path, who))
    return None


async def broker(ctx: Context) -> list[Result]:
    """Connect and disconnect with the configured credentials and TLS, as the services do."""
    from campus_energy.runtime.mqtt import connect  # the MQTT client is an extra

    mqtt = ctx.config.mqtt
    problem = _broker_files(mqtt, identity())
    if problem is not None:
        return [problem]
    how = f"{mqtt.host}:{mqtt.port}"
    if mqtt.username is not None:
        how += f" as {mqtt.username}"
    if mqtt.tls_ca_file is not None or mqtt.tls_cert_file is not None:
        how += " with TLS"
    started = time.monotonic()
    try:
        async with connect(
            mqtt, client_id=f"campus-energy-doctor-{os.getpid()}", timeout_s=BROKER_TIMEOUT_S
        ):
            latency_ms = (time.monotonic() - started) * 1000
    except BrokerError as exc:
        fix = next(BROKER_FIXES[k] for k in type(exc).__mro__ if k in BROKER_FIXES)
        return [Result(Status.FAIL, "broker", str(exc).removeprefix("broker "), fix(mqtt))]
    found = [Result(Status.OK, "broker", f"{how}: connected in {latency_ms:.0f} ms")]
    group = ctx.config.bridge.shared_group
    if group is not None:
        found.append(
            Result(
                Status.WARN,
                "bridge subscription",
                f"bridge.shared_group {group!r}: Mosquitto 2.0 does not restore a shared "
                "subscription when it restarts (readings published before the bridges "
                "subscribe again reach none), and the MQTT of RabbitMQ 3.10 and NATS 2.9 "
                "delivers nothing to one",
                "give each bridge its own meters with bridge.topic_filters instead "
                "(docs/brokers.md), or run a broker that keeps shared subscriptions",
            )
        )
    return found


# --- the window sink ------------------------------------------------------------------------------


def _sqlite_sink(config: Config) -> Result:
    path = config.bridge.sqlite.path.absolute()
    title = "sink sqlite"
    problem = access_problem(path, title, f": the bridge cannot create {path}")
    if problem is not None:
        return problem
    if not path.exists():
        return Result(Status.OK, title, f"{path}: not created yet; its folder is writable")
    try:
        with open_read_only(path, deadline_s=SINK_TIMEOUT_S) as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        return Result(
            Status.FAIL,
            title,
            f"{path}: {exc}",
            "see the line 'sqlite windows' (restore the file from a backup if it is damaged)",
        )
    return Result(Status.OK, title, f"{path}: opens, writable")


async def _sqlite(ctx: Context) -> Result:
    return await asyncio.to_thread(_sqlite_sink, ctx.config)


# psycopg's message (lower case) -> what to do about it
POSTGRES_FIXES: tuple[tuple[str, str], ...] = (
    (
        r"connection refused",
        "start PostgreSQL (sudo systemctl start postgresql), or correct the host and port "
        "of bridge.postgres.dsn",
    ),
    (
        r"password|authentication|role .* does not exist",
        "check the user and password of bridge.postgres.dsn ($CAMPUS_ENERGY_POSTGRES_DSN), "
        "and the server's pg_hba.conf",
    ),
    (
        r"database .* does not exist",
        "create the database (sudo -u postgres createdb -O <user> <dbname>), or correct the DSN",
    ),
    (
        r"permission denied|must be owner",
        "grant the bridge's user what the sink needs: GRANT CREATE ON DATABASE <dbname> TO "
        "<user>; and, for an existing schema, GRANT USAGE, CREATE ON SCHEMA <schema> TO <user>",
    ),
    (r"timeout|timed out", "check the host of bridge.postgres.dsn, the network and a firewall"),
    (r"", "check bridge.postgres.dsn and that PostgreSQL runs"),
)


def _postgres_fix(message: str) -> str:
    text = message.lower()
    return next(fix for pattern, fix in POSTGRES_FIXES if re.search(pattern, text))


async def _postgres(ctx: Context) -> Result:
    """The bridge's own statements (schema, table, one row) in a transaction that is rolled back."""
    import psycopg
    from psycopg import sql

    from campus_energy.backends.postgres.connection import endpoint
    from campus_energy.backends.postgres.schema import TABLE

    settings = ctx.config.bridge.postgres
    assert settings.dsn is not None  # validated: sink 'postgres' needs a DSN
    title, where = "sink postgres", endpoint(settings.dsn)
    schema = settings.schema_name
    table = sql.Identifier(schema, "window_aggregates")
    timeout_ms = int(SINK_TIMEOUT_S * 1000)
    try:
        conn = await psycopg.AsyncConnection.connect(
            settings.dsn, connect_timeout=int(SINK_TIMEOUT_S)
        )
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Result(Status.FAIL, title, f"{where}: {message}", _postgres_fix(message))
    try:
        async with conn.transaction(force_rollback=True):
            await conn.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
            await conn.execute(f"SET LOCAL lock_timeout = {timeout_ms}")
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
            await conn.execute(sql.SQL(TABLE).format(table=table))
            await conn.execute(
                sql.SQL(
                    'INSERT INTO {} (meter_id, window_start, id, window_end, "timestamp") '
                    "VALUES ('campus-energy-doctor', now(), 'campus-energy-doctor', now(), now()) "
                    "ON CONFLICT DO NOTHING"
                ).format(table)
            )
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Result(
            Status.FAIL,
            title,
            f"{where} schema {schema}: cannot write: {message}",
            _postgres_fix(message),
        )
    finally:
        await conn.close()
    return Result(Status.OK, title, f"{where} schema {schema}: connected, write rolled back")


# google-api-core or google-auth exception name -> what to do about it
FIRESTORE_FIXES: dict[str, str] = {
    "PermissionDenied": "give the service account the role Cloud Datastore User "
    "(roles/datastore.user) in the project",
    "NotFound": "create the Firestore database of the project (Firestore in Native mode), or "
    "correct bridge.firestore.project",
    "Unauthenticated": "use a valid service account key in bridge.firestore.credentials_file",
    "DefaultCredentialsError": "set bridge.firestore.credentials_file to a service account key "
    "(or configure Application Default Credentials)",
    "RefreshError": "the service account key was refused: create a new key and put it in "
    "bridge.firestore.credentials_file",
    "DeadlineExceeded": "check network access to firestore.googleapis.com (DNS, proxy, firewall)",
    "ServiceUnavailable": "check network access to firestore.googleapis.com (DNS, proxy, firewall)",
}
FIRESTORE_DEFAULT_FIX = "check bridge.firestore (project, credentials_file) and network access"


def _firestore_read(config: Config) -> int:
    """Documents seen by a one-document read of the collection (nothing is written)."""
    from google.cloud import firestore

    from campus_energy.backends.firestore.client import close_client

    settings = config.bridge.firestore
    credentials: Any = None
    if settings.credentials_file is not None:
        from google.oauth2 import service_account

        credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            str(settings.credentials_file)
        )
    client = firestore.Client(project=settings.project, credentials=credentials)
    try:
        query = client.collection(settings.collection).limit(1)
        return len(query.get(retry=None, timeout=SINK_TIMEOUT_S))
    finally:
        close_client(client)


async def _firestore(ctx: Context) -> Result:
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    settings = ctx.config.bridge.firestore
    title = "sink firestore"
    where = f"collection {settings.collection}"
    if settings.project:
        where = f"project {settings.project} {where}"
    if settings.credentials_file is not None:
        who = identity()
        problem = readable_file("bridge.firestore.credentials_file", settings.credentials_file, who)
        if problem is not None:
            return Result(Status.FAIL, title, problem, readable_fix(settings.credentials_file, who))
    try:
        seen = await asyncio.to_thread(_firestore_read, ctx.config)
    except (GoogleAPIError, GoogleAuthError, OSError, ValueError) as exc:
        name = type(exc).__name__
        reason = str(exc).splitlines()[0][:300] if str(exc) else name
        fix = FIRESTORE_FIXES.get(name, FIRESTORE_DEFAULT_FIX)
        return Result(Status.FAIL, title, f"{where}: {name}: {reason}", fix)
    state = "has documents" if seen else "is empty"
    return Result(Status.OK, title, f"{where}: readable ({state}); nothing was written")


SINK_CHECKS: dict[str, Callable[[Context], Awaitable[Result]]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
    "firestore": _firestore,
}


async def sink(ctx: Context) -> list[Result]:
    """The configured window sink: reachable, and writable without touching its data."""
    return [await SINK_CHECKS[ctx.config.bridge.sink](ctx)]
