"""benchmarks/report.py: the markdown it writes from recorded figures (no benchmark runs)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.benchmarks import load_benchmark

report = load_benchmark("report")
results = load_benchmark("results")


@pytest.fixture(autouse=True)
def no_rows_left() -> Iterator[None]:
    results._rows.clear()
    yield
    results._rows.clear()


MACHINE = {"CPU": "Test CPU × 2 logical CPUs", "SQLite": "3.40.1", "Date": "2026-03-04 10:00 UTC"}


def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """A small figures file, written the way a benchmark script writes it."""
    monkeypatch.setenv(results.RESULTS_ENV, str(tmp_path))
    results.record("logger", "p99 poll deviation", 12.0, 120.0, "ms", "goal | ≤ 20 ms")
    results.record("logger", "bytes per reading", 56.0, 82.5, "B", "", ratio="ours/baseline")
    results.record("logger", "insert throughput", 200_000.0, 1_250.0, "readings/s", better="higher")
    results.record("logger", "RSS growth", 0.25, None, "MiB", "no baseline")
    results.record("logger", "drift", 0.0, 290.0, "ms")
    path = results.emit("logger")
    assert path == tmp_path / "logger.json"
    rows: list[dict[str, object]] = json.loads(path.read_text(encoding="utf-8"))
    return rows


def test_env_names_agree() -> None:
    assert report.RESULTS_ENV == results.RESULTS_ENV
    assert report.QUICK_ENV == results.QUICK_ENV


def test_emit_appends_and_writes_nothing_without_rows_or_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(recorded(tmp_path, monkeypatch)) == 5
    assert results.emit("logger") is None  # nothing new: the file stays as it is
    results.record("logger", "one more", 1.0, 2.0, "ms")
    results.emit("logger")
    assert len(json.loads((tmp_path / "logger.json").read_text(encoding="utf-8"))) == 6
    monkeypatch.delenv(results.RESULTS_ENV)
    results.record("logger", "kept in memory only", 1.0, 2.0, "ms")
    assert results.emit("logger") is None


def test_quick_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(results.QUICK_ENV, raising=False)
    assert results.sized(365, 30) == 365
    monkeypatch.setenv(results.QUICK_ENV, "1")
    assert results.sized(365, 30) == 30


def test_tier_table_ratios_and_directions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = report.tier_table(recorded(tmp_path, monkeypatch)).splitlines()
    assert lines[0] == "| figure | ours | baseline | ratio | better | note |"
    assert len(lines) == 2 + 5
    assert lines[2] == (
        "| p99 poll deviation | 12 ms | 120 ms | 10× (baseline/ours) | lower ↓ | goal \\| ≤ 20 ms |"
    )
    assert "| 56 B | 82.5 B | 0.68× (ours/baseline) | lower ↓ |" in lines[3]
    assert "| 200,000 readings/s | 1,250 readings/s | 160× (ours/baseline) | higher ↑ |" in lines[4]
    assert "| 0.250 MiB | — | — | lower ↓ | no baseline |" in lines[5]
    assert "| 0 ms | 290 ms | ∞× (baseline/ours) |" in lines[6]


def test_report_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = recorded(tmp_path, monkeypatch)
    runs = [
        report.Run("read_plan"),  # never run
        report.Run(
            "logger",
            started="2026-03-04T10:00:00+00:00",
            seconds=41.2,
            exit_code=0,
            quick=True,
            rows=rows,
            output="(a) Energy error\n```\nsome table\n",
        ),
        report.Run(
            "bridge",
            started="2026-03-04T10:01:00+00:00",
            seconds=3.0,
            exit_code=1,
            quick=True,
            stderr_tail=["Traceback (most recent call last):", "RuntimeError: no broker"],
            output="(a) End to end\nRuntimeError: no broker\n",
        ),
        report.Run(
            "api",
            started="2026-03-01T08:00:00+00:00",
            seconds=400.0,
            exit_code=0,
            rows=[],
            output="(a) A year of windows\n",
            earlier=True,
        ),
    ]
    text = report.build_report(runs, MACHINE, "benchmarks/report.py --quick --only logger,bridge")
    assert text.startswith("# Benchmark report\n")
    assert "**Quick mode**" in text and "for: logger, bridge." in text
    assert "| CPU | Test CPU × 2 logical CPUs |" in text
    assert "Sections from an earlier run" in text and "api (2026-03-01T08:00:00+00:00)" in text
    sections = text.split("\n## ")
    titles = [s.splitlines()[0] for s in sections[1:]]
    assert titles == [
        "Machine",
        "Summary",
        "Meter side: read planning (`benchmarks/read_plan.py`)",
        "Logger (`benchmarks/logger.py`)",
        "Bridge (`benchmarks/bridge.py`)",
        "API (`benchmarks/api.py`)",
        "Raw output",
    ]
    summary, read_plan, logger, bridge, api, raw = sections[2:]
    assert (
        "| Logger | `benchmarks/logger.py` | ok | 2026-03-04T10:00:00+00:00 | 41 s | quick | 5 |"
        in summary
    )
    assert "| FAILED (exit status 1) |" in summary
    assert "Not run yet" in read_plan
    assert "| p99 poll deviation | 12 ms | 120 ms |" in logger
    assert "The script failed" in bridge and "RuntimeError: no broker" in bridge
    assert "No figures were recorded" in api and "earlier run" in api
    assert raw.count("<details>") == 3 and raw.count("</details>") == 3
    assert "````text\n(a) Energy error\n```\nsome table\n````" in raw  # a longer fence
    assert "read_plan.py" not in raw


def test_runs_are_saved_and_loaded(tmp_path: Path) -> None:
    run = report.Run("api", "2026-03-04T10:00:00+00:00", 12.5, 0, True, [{"figure": "x"}])
    run.output = "raw\n"
    report.save_run(run, tmp_path)
    (tmp_path / "api.txt").write_text(run.output, encoding="utf-8")
    loaded = report.load_run("api", tmp_path)
    assert (loaded.started, loaded.seconds, loaded.exit_code, loaded.quick) == (
        run.started,
        12.5,
        0,
        True,
    )
    assert loaded.rows == run.rows and loaded.output == "raw\n" and loaded.earlier
    assert report.load_run("dashboard", tmp_path).exit_code is None


def test_only_names_known_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(report.QUICK_ENV, raising=False)
    args = report.parse_args(["--only", "api, dashboard.py"])
    assert args.only == ["api", "dashboard"] and not args.quick
    assert report.parse_args([]).only == list(report.SCRIPTS)
    with pytest.raises(SystemExit):
        report.parse_args(["--only", "nope"])


def test_one_renderer_for_console_and_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = results.Table(
        "(a) a title",
        ("way", results.Col("time", ".1f", "ms"), results.Col("×", ".2f", "×"), "same"),
        notes=["a note | with a bar"],
    )
    table.row("ours", 1.25, None, True)
    table.row("legacy", 12.0, 9.6, False)
    with pytest.raises(ValueError):
        table.row("short")
    assert results.text(table).splitlines() == [
        "(a) a title",
        "way        time      ×  same",
        "----------------------------",
        "ours     1.2 ms      —   yes",
        "legacy  12.0 ms  9.60×    NO",
        "a note | with a bar",
    ]
    markdown = results.markdown(table)
    assert (
        "| way | time | × | same |\n|---|---:|---:|---:|\n| ours | 1.2 ms | — | yes |" in markdown
    )
    assert markdown.startswith("**(a) a title**") and "a note \\| with a bar" in markdown
    monkeypatch.setenv(results.RESULTS_ENV, str(tmp_path))
    results.keep(table)
    assert results.emit("logger") is None  # tables only: no figures file
    (kept,) = results.load_tables(tmp_path / "logger.tables.json")
    assert results.text(kept) == results.text(table)


def test_no_report_from_a_dirty_tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(report, "uncommitted", lambda: ["src/campus_energy/x.py"])
    monkeypatch.setattr(report, "run_script", lambda *a: pytest.fail("measured a dirty tree"))
    assert report.main(["--only", "read_plan"]) == 2
    monkeypatch.setattr(report, "uncommitted", lambda: None)  # no git: no commit to speak for
    assert report.main(["--only", "read_plan"]) == 2
    assert report.git_revision(["src/a.py"]).endswith("+ uncommitted changes in src/a.py")
