"""The window backends, one package each (`sqlite`, `postgres`, `firestore`): a sink the bridge
writes through and a source the API reads, over one schema. `base` declares what both
offer; this module opens the one the configuration names, importing only that backend.
"""

from __future__ import annotations

from collections.abc import Callable

from campus_energy.backends.base import WindowSink, WindowSource
from campus_energy.config import Config


def _sqlite_sink(config: Config) -> WindowSink:
    from campus_energy.backends.sqlite.sink import SqliteSink

    return SqliteSink(config.bridge.sqlite.path, config.site.zone)


def _postgres_sink(config: Config) -> WindowSink:
    from campus_energy.backends.postgres.sink import PostgresSink

    return PostgresSink(config.bridge.postgres, config.site.zone)


def _firestore_sink(config: Config) -> WindowSink:
    from campus_energy.backends.firestore.sink import FirestoreSink

    return FirestoreSink(
        config.bridge.firestore,
        config.bridge.window_s,
        default_site=config.site.id,
        sites={m.id: config.site_of(m) for m in config.meters},
    )


def _sqlite_source(config: Config) -> WindowSource:
    from campus_energy.backends.sqlite.source import SqliteSource

    return SqliteSource(config.bridge.sqlite.path)


def _postgres_source(config: Config) -> WindowSource:
    from campus_energy.backends.postgres.source import PostgresSource

    return PostgresSource(config.bridge.postgres)


def _firestore_source(config: Config) -> WindowSource:
    from campus_energy.backends.firestore.source import FirestoreSource

    return FirestoreSource(config.bridge.firestore, config.site.zone, config.api.cache_s)


SINKS: dict[str, Callable[[Config], WindowSink]] = {
    "sqlite": _sqlite_sink,
    "postgres": _postgres_sink,
    "firestore": _firestore_sink,
}
SOURCES: dict[str, Callable[[Config], WindowSource]] = {
    "sqlite": _sqlite_source,
    "postgres": _postgres_source,
    "firestore": _firestore_source,
}


def open_sink(config: Config) -> WindowSink:
    """The sink of `bridge.sink`."""
    return SINKS[config.bridge.sink](config)


def open_source(config: Config) -> WindowSource:
    """The source of `api.source`, else of the bridge's sink."""
    return SOURCES[config.api.source or config.bridge.sink](config)
