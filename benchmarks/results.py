"""What a benchmark script finds, as data, and the one renderer that writes it out.

A script returns its results as `Table`s: a title, columns (`Col`: a name and how
its numbers are written), rows of plain values (numbers, text, booleans, None)
and notes. `text()` renders a table for the console and `markdown()` for
`benchmarks/REPORT.md`; no script formats a table itself.

Besides its tables, a script calls `record()` for each headline figure (ours next
to the baseline of the same run); `figures_table()` renders those, a tier at a
time, in the report. `keep()` holds a table, and `emit()`, once at the end,
writes nothing unless `CAMPUS_ENERGY_BENCH_RESULTS` names a folder; then it adds
the figures to `<folder>/<script>.json` and the tables to
`<folder>/<script>.tables.json` (JSON lists; what is already in a file is kept,
so a script run in parts or a child process that records nothing leaves it whole).

Quick mode (`CAMPUS_ENERGY_BENCH_QUICK=1`, or `--quick` on the script's command
line): `sized(full, quick)` gives a size constant its smaller value, so that a
script runs in about a minute.

The ratio of a figure is "baseline/ours" or "ours/baseline", as the script prints
it; `better` says which way the figure itself is better ("lower" or "higher").
"""

from __future__ import annotations

import json
import math
import os
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

RESULTS_ENV = "CAMPUS_ENERGY_BENCH_RESULTS"
QUICK_ENV = "CAMPUS_ENERGY_BENCH_QUICK"
TEXT_WIDTH = 120  # notes wrap at this width on the console

Better = Literal["lower", "higher"]
Ratio = Literal["baseline/ours", "ours/baseline"]
Align = Literal["", "left", "right", "center"]
Cell = float | int | str | bool | None
T = TypeVar("T")

_rows: list[dict[str, Any]] = []
_tables: list[Table] = []


# -- quick mode ------------------------------------------------------------------------------


def quick() -> bool:
    """Whether quick mode was asked for (smaller sizes, same measurements)."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0") or "--quick" in sys.argv[1:]


def sized(full: T, small: T) -> T:
    """`small` in quick mode, else `full`."""
    return small if quick() else full


# -- tables ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    """A column: its name, and how a number in it is written.

    `fmt` is a format spec (",.0f", "+.4f", ".1e"); "" picks the precision from
    the size (`number`). `unit` follows a number ("×" directly, any other after a
    space). `align` "" is left for a column of text, right for one with numbers.
    """

    name: str
    fmt: str = ""
    unit: str = ""
    align: Align = ""


@dataclass
class Table:
    """One table of a script's results: title, columns, rows, then notes (paragraphs).

    A table without columns is only its title and notes (a skipped section, say).
    """

    title: str
    columns: Sequence[Col | str] = ()
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.columns = tuple(c if isinstance(c, Col) else Col(c) for c in self.columns)

    @property
    def cols(self) -> tuple[Col, ...]:
        return tuple(c for c in self.columns if isinstance(c, Col))  # all, after __post_init__

    def row(self, *cells: Cell) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns: {cells!r}")
        self.rows.append([_plain(c) for c in cells])

    def note(self, *paragraphs: str) -> None:
        self.notes.extend(paragraphs)

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "columns": [asdict(c) for c in self.cols],
            "rows": self.rows,
            "notes": self.notes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Table:
        return cls(
            str(data.get("title", "")),
            tuple(Col(**c) for c in data.get("columns", ())),
            [list(r) for r in data.get("rows", ())],
            [str(n) for n in data.get("notes", ())],
        )


def _plain(value: Any) -> Cell:
    """A value as a table keeps it: JSON's kinds; a number that is not finite is None."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


def number(value: float) -> str:
    """A number with as many digits as its size asks for (3 significant, at least)."""
    size = abs(value)
    if value == int(value) and size < 1e15:
        return f"{int(value):,}"
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    if size >= 0.01:
        return f"{value:.3f}"
    return f"{value:.2g}"


def cell_text(value: Cell, col: Col) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, str):
        return value
    if col.fmt and value == 0 and col.fmt[-1:] in ("e", "g"):
        shown = "0"  # not 0.0e+00
    elif col.fmt:
        shown = format(value, col.fmt)
    elif isinstance(value, int):
        shown = f"{value:,}"
    else:
        shown = number(value)
    if not col.unit:
        return shown
    return f"{shown}{'' if col.unit == '×' else ' '}{col.unit}"


def _aligns(table: Table) -> list[str]:
    found = []
    for i, col in enumerate(table.cols):
        if col.align:
            found.append(col.align)
            continue
        values = [r[i] for r in table.rows if r[i] is not None and r[i] != ""]
        textual = all(isinstance(v, str) for v in values)
        found.append("left" if textual else "right")
    return found


def text(table: Table) -> str:
    """The table for the console: the title, a header ruled off, aligned rows, wrapped notes."""
    lines = [table.title] if table.title else []
    if table.columns:
        cols, aligns = table.cols, _aligns(table)
        cells = [[cell_text(v, c) for v, c in zip(r, cols, strict=True)] for r in table.rows]
        widths = [max(len(c.name), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]

        def line(values: Sequence[str]) -> str:
            padded = (
                v.ljust(w) if a == "left" else v.center(w) if a == "center" else v.rjust(w)
                for v, w, a in zip(values, widths, aligns, strict=True)
            )
            return "  ".join(padded).rstrip()

        head = line([c.name for c in cols])
        lines += [head, "-" * len(head), *(line(r) for r in cells)]
    for paragraph in table.notes:
        lines += textwrap.wrap(paragraph, TEXT_WIDTH, subsequent_indent="  ") or [""]
    return "\n".join(lines) + "\n"


def _md(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def markdown(table: Table) -> str:
    """The table for the report: the title in bold, a Markdown table, the notes as paragraphs."""
    out = [f"**{_md(table.title)}**", ""] if table.title else []
    if table.columns:
        cols = table.cols
        rule = {"left": "---", "right": "---:", "center": ":---:"}
        out.append("| " + " | ".join(_md(c.name) for c in cols) + " |")
        out.append("|" + "|".join(rule[a] for a in _aligns(table)) + "|")
        for r in table.rows:
            cells = (_md(cell_text(v, c)) for v, c in zip(r, cols, strict=True))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    for paragraph in table.notes:
        out += [_md(paragraph.strip()), ""]
    return "\n".join(out).rstrip() + "\n"


def keep(table: Table) -> Table:
    """Hold a table for `emit()`; the table."""
    _tables.append(table)
    return table


# -- headline figures ------------------------------------------------------------------------


def _number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def record(
    tier: str,
    figure: str,
    ours: float | None,
    baseline: float | None,
    unit: str,
    note: str = "",
    *,
    better: Better = "lower",
    ratio: Ratio | None = None,
) -> None:
    """Keep one figure. `ratio` defaults to the way that makes > 1 mean ours is better."""
    if ratio is None:
        ratio = "baseline/ours" if better == "lower" else "ours/baseline"
    _rows.append(
        {
            "tier": tier,
            "figure": figure,
            "ours": _number(ours),
            "baseline": _number(baseline),
            "unit": unit,
            "ratio": ratio,
            "better": better,
            "note": note,
        }
    )


def rows() -> list[dict[str, Any]]:
    return list(_rows)


def ratio_of(row: dict[str, Any]) -> float | None:
    ours, baseline = row.get("ours"), row.get("baseline")
    if ours is None or baseline is None:
        return None
    top, bottom = (baseline, ours) if row.get("ratio") == "baseline/ours" else (ours, baseline)
    if bottom == 0:
        return math.inf if top else None
    return float(top / bottom)


def _quantity(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{number(value)} {unit}".strip()


def _ratio_text(row: dict[str, Any]) -> str:
    value = ratio_of(row)
    if value is None:
        return "—"
    if math.isinf(value):
        shown = "∞"
    elif abs(value) >= 1e6:
        shown = f"{value:.1e}"
    else:
        shown = f"{value:,.0f}" if abs(value) >= 10 else f"{value:.2f}"
    return f"{shown}× ({row.get('ratio')})"


def figures_table(figures: Iterable[dict[str, Any]], title: str = "") -> Table:
    """Recorded figures as a table: figure | ours | baseline | ratio | better | note."""
    table = Table(
        title,
        (
            Col("figure", align="left"),
            Col("ours", align="right"),
            Col("baseline", align="right"),
            Col("ratio", align="right"),
            Col("better", align="center"),
            Col("note", align="left"),
        ),
    )
    for row in figures:
        unit = str(row.get("unit", ""))
        table.row(
            str(row.get("figure", "")),
            _quantity(row.get("ours"), unit),
            _quantity(row.get("baseline"), unit),
            _ratio_text(row),
            {"lower": "lower ↓", "higher": "higher ↑"}.get(str(row.get("better")), "?"),
            str(row.get("note", "")),
        )
    return table


# -- the files for report.py -----------------------------------------------------------------


def _append(path: Path, items: list[Any]) -> None:
    found: list[Any] = []
    if path.exists():
        try:
            found = list(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            found = []
    path.write_text(json.dumps(found + items, indent=1, ensure_ascii=False), encoding="utf-8")


def emit(script: str | None = None) -> Path | None:
    """Add the figures and tables kept to `$CAMPUS_ENERGY_BENCH_RESULTS/<script>[.tables].json`.

    The path of the figures file, or None when there was nothing to write or no folder.
    """
    folder = os.environ.get(RESULTS_ENV)
    if not folder or not (_rows or _tables):
        return None
    name = script or Path(sys.argv[0]).stem
    path = Path(folder) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if _tables:
        _append(path.with_suffix(".tables.json"), [t.as_json() for t in _tables])
        _tables.clear()
    if not _rows:
        return None
    _append(path, _rows)
    _rows.clear()
    return path


def load_tables(path: Path) -> list[Table]:
    """The tables a script left in `<script>.tables.json` ([] when none or unreadable)."""
    try:
        return [Table.from_json(t) for t in json.loads(path.read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError, KeyError):
        return []
