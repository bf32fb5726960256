"""schemathesis against /api/openapi.json: no generated request may produce a server error.

Run in-process through WSGI on the SQLite fixture campus; every response must
also match the schema the API publishes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from tests.support import known_windows as fx

from campus_energy.api import create_app
from campus_energy.backends import open_source


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    config = fx.config_for(folder)
    fx.write(config, fx.windows())
    source = open_source(config)
    app = create_app(config, source=source, clock=lambda: fx.NOW_MS / 1000)
    try:
        yield schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    finally:
        source.close()


def operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def test_no_input_is_a_server_error(api_schema: Any) -> None:
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    tested = []
    calls = [0]
    for operation in operations(api_schema):

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            calls[0] += 1
            case.call_and_validate(checks=checks)

        run()
        tested.append(operation.label)
    assert len(tested) >= 8, tested
    assert calls[0] >= 100  # hypothesis really generated requests
