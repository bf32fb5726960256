"""The fault-injection suite's report: one line of books per scenario, after the test summary."""

from __future__ import annotations

import pytest
from tests.faults.books import Books
from tests.faults.harness import PLAN, SEED

REPORT = pytest.StashKey[list[Books]]()


@pytest.fixture(scope="session")
def report(request: pytest.FixtureRequest) -> list[Books]:
    """Where each scenario leaves its books (printed by `pytest_terminal_summary`)."""
    return request.config.stash.setdefault(REPORT, [])


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    books = config.stash.get(REPORT, [])
    if not books:
        return
    terminalreporter.section(f"fault injection: {PLAN.name} run, seed {SEED}")
    for entry in books:
        terminalreporter.write_line(entry.line())
