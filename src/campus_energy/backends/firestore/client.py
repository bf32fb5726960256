"""The Firestore client both sides share: opening it (with the configured credentials), its
retries, its errors in one line, and closing it with its gRPC channel.

google-cloud-firestore is imported when a client is first needed, so a site on
SQLite or PostgreSQL never loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from campus_energy.config import FirestoreSinkConfig
from campus_energy.errors import CampusEnergyError

T = TypeVar("T")


def open_client(config: FirestoreSinkConfig) -> Any:
    """A client of `config.project`: with the service account key `credentials_file` when one
    is set, else Application Default Credentials (or the emulator's FIRESTORE_EMULATOR_HOST)."""
    from google.cloud import firestore

    credentials = None
    if config.credentials_file is not None:
        from google.oauth2 import service_account

        credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            str(config.credentials_file)
        )
    return firestore.Client(project=config.project, credentials=credentials)


def close_client(client: Any) -> None:
    """Close a Firestore client, its gRPC channel included (`close()` leaves it open)."""
    client.close()
    transport = getattr(getattr(client, "_firestore_api_internal", None), "_transport", None)
    if transport is not None:
        transport.close()


def retry_policy(deadline_s: float, maximum_s: float) -> Any:
    """Firestore calls retried on transient errors (unavailable, deadline, internal) with
    exponential back-off up to `maximum_s` between attempts, for `deadline_s` in all."""
    from google.api_core import exceptions as api
    from google.api_core import retry

    return retry.Retry(
        initial=0.2,
        maximum=maximum_s,
        multiplier=2.0,
        timeout=deadline_s,
        predicate=retry.if_exception_type(
            api.ServiceUnavailable, api.DeadlineExceeded, api.InternalServerError
        ),
    )


def guarded(
    fn: Callable[[], T],
    *,
    error: type[CampusEnergyError],
    collection: str,
    reset: Callable[[], None],
    also: tuple[type[Exception], ...] = (),
) -> T:
    """`fn()`, with a failure of the client (or of a type in `also`) turned into `error`, naming
    the collection and the failure's first line; `reset` is called first, so the next call
    opens a fresh channel (gRPC's own reconnect back-off can reach minutes)."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    failures: tuple[type[BaseException], ...] = (
        api.GoogleAPIError,
        auth.GoogleAuthError,
        OSError,
        *also,
    )
    try:
        return fn()
    except failures as exc:
        reset()
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise error(f"firestore {collection}: {reason}") from None
