"""Reports against the books: windows written through the real SQLite sink
(`tests.support.report_campus`), every figure summed and priced here from the windows
themselves, a month's money against the bills; the exports (CSV, XLSX, JSON) and the
e-mail read back; the command line; the schedule's delivery through a real book of
alerts; the HTML looked at in Chromium."""

from __future__ import annotations

import asyncio
import csv
import email
import email.policy
import io
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from tests.support import CHROMIUM_ARGS
from tests.support.config import write_toml
from tests.support.net import free_port
from tests.support.report_campus import (
    ACCOUNTS,
    Books,
    build,
    config_data,
    is_closed,
    kwh,
    local_ms,
    midnight,
)
from tests.support.smtp import Inbox, smtp_server

from campus_energy.accounts.command import energy_from
from campus_energy.accounts.statements import campus_bill
from campus_energy.backends import open_source
from campus_energy.backends.base import WindowSource
from campus_energy.cli import main
from campus_energy.config import Config, parse_config
from campus_energy.core.alerts import Transition
from campus_energy.incidents.channels import email_channel
from campus_energy.incidents.store import AlertBook
from campus_energy.incidents.values import DeliveryError
from campus_energy.reports.content import WEEK_NOTE, Report, build_report
from campus_energy.reports.delivery import send_due
from campus_energy.reports.message import build_message, standalone_html
from campus_energy.reports.periods import Period, parse_period
from campus_energy.reports.tables import SECTIONS, document, report_csv
from campus_energy.reports.workbook import report_xlsx

CAMPUS = {**ACCOUNTS["Main"], **ACCOUNTS["Annex"], **ACCOUNTS[""]}
NAMES = {"Main": "Main", "Annex": "Annex", "": "(meters in no building)"}
ALERTS = [  # (rule, subject, kind, scope, event, local time)
    ("silent", "yard-1", "meter-silent", "campus", "firing", (2026, 11, 18, 0, 20)),
    ("silent", "yard-1", "meter-silent", "campus", "resolved", (2026, 11, 20, 0, 5)),
    ("annex-night", "Annex", "after-hours", "building:Annex", "firing", (2026, 11, 3, 22, 0)),
    ("main-night", "Main", "after-hours", "building:Main", "firing", (2026, 11, 19, 23, 0)),
    ("main-night", "Main", "after-hours", "building:Main", "resolved", (2026, 10, 30, 6, 0)),
]


@dataclass(frozen=True)
class Campus:
    config: Config
    books: Books
    source: WindowSource
    folder: Path

    def report(self, period: str, building: str | None = None) -> Report:
        found = parse_period(period)
        with AlertBook(self.config.alerts.state_path) as book:
            history = book.history(*found.bounds_ms(self.config.site.zone))
        return build_report(self.config, self.source, found, building, alerts=history)


@pytest.fixture(scope="module")
def campus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campus]:
    folder = tmp_path_factory.mktemp("reports")
    config, items = build(folder)
    with AlertBook(config.alerts.state_path) as book:
        for rule, subject, kind, scope, event, when in ALERTS:
            at = local_ms(*when)
            change = Transition(rule, subject, event, at, "warning", 1.5, f"{rule} {event}")
            book.record([], [(change, kind, scope, ())], at)
    source = open_source(config)
    try:
        yield Campus(config, Books(items), source, folder)
    finally:
        source.close()


def check_rows(campus: Campus, report: Report, period: Period) -> None:
    """Energy, CO₂, peaks and the comparisons of every account and of the campus."""
    books, first, last = campus.books, period.first, period.last
    before, year = period.previous(), period.year_before()
    rows = {r.name if r.kind == "building" else "campus": r for r in report.rows}
    assert list(rows) == ["Main", "Annex", "", "campus"]
    for name, terms in [*ACCOUNTS.items(), ("campus", CAMPUS)]:
        row = rows[name]
        wh = books.energy_wh(terms, first, last)
        if name != "campus":
            assert row.energy_kwh == kwh(wh), name
            assert abs(row.co2_kg - kwh(wh * 0.4)) <= Decimal("0.001"), name
            assert row.previous_kwh == kwh(books.energy_wh(terms, before.first, before.last))
            assert row.last_year_kwh == kwh(books.energy_wh(terms, year.first, year.last))
        else:  # the sums of the accounts' rounded figures: the campus adds up
            assert abs(row.energy_kwh - kwh(wh)) <= Decimal("0.002")
            assert row.energy_kwh == sum(rows[n].energy_kwh for n in ACCOUNTS)
            assert row.co2_kg == sum(rows[n].co2_kg for n in ACCOUNTS)
            assert row.previous_kwh == sum(rows[n].previous_kwh or 0 for n in ACCOUNTS)
        kw, start = books.peak(terms, first, last)
        assert row.peak is not None and (row.peak.kw, row.peak.start_ms) == (kw, start), name
        assert row.peak.interval_min == 15
        assert sum(row.daily_kwh) == pytest.approx(wh / 1000)
        change = (row.energy_kwh - row.previous_kwh) / row.previous_kwh * 100
        assert row.previous_change == change.quantize(Decimal("0.1"))


# -- the figures --------------------------------------------------------------------------------


def test_a_months_figures_are_the_books_and_its_money_the_bills(campus: Campus) -> None:
    report = campus.report("2026-11")
    check_rows(campus, report, report.period)
    bills = campus_bill(
        campus.config,
        campus.source.scope_hours,
        energy_from(campus.source),
        (2026, 11),
        peaks_of=campus.source.scope_peaks,
    )
    for row, bill in zip(report.rows, bills.bills, strict=False):
        assert row.costs == {"EUR": bill.cost.total}, row.name
        assert any(x.kind == "demand" for x in bill.cost.lines) == (row.name != "Annex")
    assert report.headline.costs == dict(bills.totals)
    assert report.headline.peak is not None and bills.campus_peak is not None
    assert report.headline.peak.kw == bills.campus_peak.kw
    assert report.headline.energy_kwh == bills.energy_kwh
    assert report.headline.co2_kg == bills.co2_kg
    # half of November a year before is in the store: compared, not "no data"
    assert report.headline.last_year_kwh is not None and report.headline.last_year_change


def test_a_weeks_cost_is_its_days_without_demand_charges(campus: Campus) -> None:
    report = campus.report("2026-W47")
    period = report.period
    assert (period.first, period.last) == (date(2026, 11, 16), date(2026, 11, 22))
    check_rows(campus, report, period)
    for row in report.rows[:-1]:
        assert row.costs == {"EUR": campus.books.week_cost(row.name, period.first, period.last)}
    total = sum(row.costs["EUR"] for row in report.rows[:-1])
    assert report.headline.costs == {"EUR": total}
    assert WEEK_NOTE in report.notes
    # the spike on Thursday 14:15 is the week's peak, shown with its local time
    assert report.rows[0].peak is not None
    assert report.rows[0].peak.start_ms == local_ms(2026, 11, 19, 14, 15)
    assert report.profile[0][0] == midnight(date(2026, 11, 19))
    assert len(report.profile) == 96


def test_after_hours_are_the_energy_of_closed_quarters(campus: Campus) -> None:
    for text in ("2026-11", "2026-W47"):
        report = campus.report(text)
        first, last = report.period.first, report.period.last
        books = campus.books
        expected = []
        for building in ("Main", "Annex"):
            terms = ACCOUNTS[building]
            closed = books.after_hours_wh(building, terms, first, last)
            whole = books.energy_wh(terms, first, last)
            expected.append((building, None, kwh(closed), kwh(whole)))
        got = [(r.building, r.meter, r.kwh, r.total_kwh) for r in report.after_hours_buildings]
        assert sorted(got, key=str) == sorted(expected, key=str)
        assert [r.kwh for r in report.after_hours_buildings] == sorted(
            (r.kwh for r in report.after_hours_buildings), reverse=True
        )
        for row in report.after_hours_meters:
            closed = books.after_hours_wh(row.building, {row.meter or "": 1.0}, first, last)
            whole = books.energy_wh({row.meter or "": 1.0}, first, last)
            assert (row.kwh, row.total_kwh) == (kwh(closed), kwh(whole))
            assert row.share == (Decimal(closed) / Decimal(whole)).quantize(Decimal("0.0001"))
        assert {r.meter for r in report.after_hours_meters} == {
            "main-1", "main-f1", "main-f2", "annex-1", "annex-2"
        }  # fmt: skip
    # the holiday and the weekend are closed all day for Main; Saturday morning is open
    assert is_closed("Main", local_ms(2026, 11, 2, 10))
    assert not is_closed("Main", local_ms(2026, 11, 21, 10))


def test_coverage_is_the_share_of_the_period_the_windows_cover(campus: Campus) -> None:
    week = campus.report("2026-W47")
    month = campus.report("2026-11")
    for report in (week, month):
        first, last = report.period.first, report.period.last
        for row in report.coverage:
            expected = campus.books.coverage(row.meter, first, last)
            assert row.coverage == Decimal(expected).quantize(Decimal("0.0001")), row.meter
    assert [c.meter for c in week.low_coverage] == ["yard-1", "annex-2"]
    assert week.low_coverage[0].coverage == Decimal("0.7143")  # 2 of 7 days silent
    assert [c.meter for c in month.low_coverage] == ["yard-1"]  # 28 of 30 days


def test_a_period_without_data_says_so(campus: Campus) -> None:
    report = campus.report("2025-11")  # nothing in October 2025 or in November 2024
    assert all(r.previous_kwh is None and r.last_year_kwh is None for r in report.rows)
    assert report.headline.previous_change is None
    html = standalone_html(report)
    assert html.count("no data") == 2 * len(report.rows)


def test_a_buildings_report_and_its_alerts(campus: Campus) -> None:
    report = campus.report("2026-11", "Annex")
    assert [r.name for r in report.rows] == ["Annex"]
    assert report.headline.costs == campus.report("2026-11").rows[1].costs
    assert {c.meter for c in report.coverage} == {"annex-1", "annex-2"}
    assert [(r.rule, r.event) for r in report.alerts or ()] == [
        ("annex-night", "firing"),
        ("silent", "firing"),
        ("silent", "resolved"),
    ]
    assert report.slug == "2026-11-Annex"
    whole = campus.report("2026-11")
    assert [r.rule for r in whole.alerts or ()] == [
        "annex-night",
        "silent",
        "main-night",
        "silent",
    ]  # fmt: skip  (October's resolution is not in November)
    no_book = build_report(campus.config, campus.source, parse_period("2026-11"), alerts=None)
    assert "no alerts recorded" in standalone_html(no_book).lower()


# -- the formats --------------------------------------------------------------------------------


def shown(value: Any) -> str:
    """A JSON value as CSV and XLSX show it."""
    return "yes" if value is True else "no" if value is False else str(value)


def test_csv_xlsx_and_json_carry_the_same_figures(campus: Campus) -> None:
    from openpyxl import load_workbook

    report = campus.report("2026-11")
    body = document(report)
    assert json.loads(json.dumps(body)) == body
    assert body["buildings"][0]["cost"] == str(report.rows[0].costs["EUR"])
    assert body["buildings"][-1]["energy_kwh"] == str(report.headline.energy_kwh)
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    for section in SECTIONS:
        mine = [r for r in rows if r["section"] == section]
        assert len(mine) == len(body[section]) > 0, section
        for got, want in zip(mine, body[section], strict=True):
            for key, value in want.items():
                assert got[key] == ("" if value is None else shown(value)), (section, key)
    book = load_workbook(io.BytesIO(report_xlsx(report)))
    assert book.sheetnames == ["Summary", "Buildings", "After hours", "Coverage", "Alerts"]
    titles = {"buildings": "Buildings", "after_hours": "After hours", "coverage": "Coverage",
              "alerts": "Alerts"}  # fmt: skip
    for section, title in titles.items():
        sheet = list(book[title].iter_rows(values_only=True))
        heads = list(sheet[0])
        assert len(sheet) - 1 == len(body[section])
        for values, want in zip(sheet[1:], body[section], strict=True):
            for key, value in want.items():
                cell = values[heads.index(key)]
                if isinstance(cell, int | float) and not isinstance(cell, bool):
                    assert Decimal(str(cell)) == Decimal(str(value)), (section, key)
                else:
                    assert cell == (None if value in ("", None) else shown(value)), (section, key)
    summary = dict(book["Summary"].iter_rows(values_only=True, max_col=2))  # type: ignore[arg-type]
    assert Decimal(str(summary["Cost (EUR)"])) == report.headline.costs["EUR"]


def test_the_email_holds_its_charts_text_and_attachments(campus: Campus) -> None:
    report = campus.report("2026-W47")
    message = build_message(
        report, attach=["xlsx", "csv"], sender="energy@campus.example",
        recipients=["a@campus.example", "b@campus.example"],
    )  # fmt: skip
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == "Report Campus: energy report 2026-W47"
    assert parsed["To"] == "a@campus.example, b@campus.example"
    assert parsed.get_content_type() == "multipart/mixed"
    text = parsed.get_body(preferencelist=("plain",))
    html_part = parsed.get_body(preferencelist=("html",))
    assert text is not None and html_part is not None
    assert str(report.headline.energy_kwh) in text.get_content()
    html = html_part.get_content()
    images = {
        p["Content-ID"].strip("<>"): p.get_content()
        for p in parsed.walk()
        if p.get_content_type() == "image/png"
    }
    cids = {src.split('"')[0] for src in html.split('src="cid:')[1:]}
    assert cids == set(images) and len(cids) == 2
    assert all(png.startswith(b"\x89PNG") for png in images.values())
    assert "<script" not in html and "<style" not in html
    attached = {p.get_filename(): p.get_content() for p in parsed.iter_attachments()}
    assert set(attached) == {"report-2026-W47.xlsx", "report-2026-W47.csv"}
    assert attached["report-2026-W47.csv"].replace("\r\n", "\n") == report_csv(report).replace(
        "\r\n", "\n"
    )
    assert attached["report-2026-W47.xlsx"][:2] == b"PK"


# -- the command line ---------------------------------------------------------------------------


def test_the_command_writes_each_format(
    campus: Campus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    path = write_toml(tmp_path / "campus-energy.toml", config_data(campus.folder))
    monkeypatch.chdir(tmp_path)
    assert main(["report", "-c", str(path), "--period", "2026-W47"]) == 0
    out = capsys.readouterr().out
    assert out == report_csv(campus.report("2026-W47"))
    assert main(["report", "-c", str(path), "--period", "2026-11", "--building", "Main",
                 "--format", "html"]) == 0  # fmt: skip
    assert "report-2026-11-Main.html" in capsys.readouterr().out
    html = (tmp_path / "report-2026-11-Main.html").read_text("utf-8")
    assert "data:image/png;base64," in html and "main-night" in html
    target = tmp_path / "out.xlsx"
    assert main(["report", "-c", str(path), "--period", "2026-11", "--format", "xlsx",
                 "-o", str(target)]) == 0  # fmt: skip
    assert target.read_bytes()[:2] == b"PK"
    for args, named in (
        (["--period", "2026-13"], "--period"),
        (["--period", "November"], "--period"),
        (["--period", "2026-11", "--building", "Gym"], "--building"),
    ):
        assert main(["report", "-c", str(path), *args]) == 2
        assert named in capsys.readouterr().err


# -- the schedule -------------------------------------------------------------------------------


def test_due_reports_are_sent_once_and_remembered_after_sending(
    campus: Campus, tmp_path: Path
) -> None:
    config = campus.config
    sent: list[tuple[str, EmailMessage]] = []

    async def send(channel: str, message: EmailMessage) -> None:
        sent.append((channel, message))

    async def failing(channel: str, message: EmailMessage) -> None:
        raise ConnectionError("the mail server is down")

    def due(book: AlertBook, now_ms: int, how: Any = send) -> list[str]:
        return asyncio.run(send_due(config, book, campus.source, how, now_ms))

    with AlertBook(tmp_path / "alerts.db") as book:
        start = local_ms(2026, 11, 20, 12)
        assert due(book, start) == [] and sent == []  # a first start sends no past period
        assert book.memo("report:monthly") == start
        assert due(book, local_ms(2026, 11, 23, 6, 29)) == []
        with pytest.raises(ConnectionError):
            due(book, local_ms(2026, 11, 23, 6, 30), failing)
        assert book.memo("report:annex-weekly") == start  # not sent: not remembered
        assert due(book, local_ms(2026, 11, 23, 6, 31)) == ["annex-weekly"]
        assert due(book, local_ms(2026, 11, 23, 6, 32)) == []
        # down over a week: the latest period once; the month's report on 1 December
        assert due(book, local_ms(2026, 12, 1, 7, 5)) == ["monthly", "annex-weekly"]
    subjects = [(c, m["Subject"], m["To"]) for c, m in sent]
    assert subjects == [
        ("mail", "Report Campus: energy report 2026-W47 — Annex", "annex@campus.example"),
        ("mail", "Report Campus: energy report 2026-11", "facilities@campus.example"),
        ("mail", "Report Campus: energy report 2026-W48 — Annex", "annex@campus.example"),
    ]
    assert all(m["From"] == "energy@campus.example" for _, m in sent)
    weekly = [p.get_filename() for p in sent[0][1].iter_attachments()]
    assert weekly == ["report-2026-W47-Annex.csv"]


def test_a_report_refused_in_part_or_for_good_is_remembered_not_mailed_again(
    campus: Campus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Some recipients refused: sent (to the others), the refused logged. Everyone refused:
    logged at ERROR, and remembered too. Either way, the next round sends nothing."""
    port = free_port()
    data = config_data(campus.folder)
    data["alerts"]["channels"][0]["port"] = port
    weekly = data["reports"][1]
    weekly["recipients"] = ["annex@campus.example", "gone@campus.example"]
    config = parse_config(data)
    channel = email_channel(config, "mail")

    async def send(name: str, message: EmailMessage) -> None:
        await channel.send_message(message)

    def due(book: AlertBook, now_ms: int) -> list[str]:
        return asyncio.run(send_due(config, book, campus.source, send, now_ms))

    inbox = Inbox(refuse={"gone@campus.example"})
    with AlertBook(tmp_path / "alerts.db") as book:
        assert due(book, local_ms(2026, 11, 20, 12)) == []
        with pytest.raises(DeliveryError, match="Connection refused"):  # nothing listens yet
            due(book, local_ms(2026, 11, 23, 6, 31))
        with smtp_server(port, inbox=inbox):
            assert due(book, local_ms(2026, 11, 23, 6, 31)) == ["annex-weekly"]
            assert book.memo("report:annex-weekly") == local_ms(2026, 11, 23, 6, 30)
            assert due(book, local_ms(2026, 11, 23, 7)) == []
            assert [r.recipients for r in inbox.messages] == [["annex@campus.example"]]
            inbox.refuse.add("annex@campus.example")
            assert due(book, local_ms(2026, 11, 30, 6, 31)) == []  # everyone refused
            assert book.memo("report:annex-weekly") == local_ms(2026, 11, 30, 6, 30)
            asked = len(inbox.asked)
            assert due(book, local_ms(2026, 11, 30, 7)) == []
            assert len(inbox.asked) == asked and len(inbox.messages) == 1
    said = [(r.levelname, r.name, r.getMessage()) for r in caplog.records if r.levelno >= 30]
    assert [(level, name) for level, name, _ in said] == [
        ("WARNING", "campus_energy.incidents.channels.email"),
        ("ERROR", "campus_energy.reports.delivery"),
    ]
    assert "refused: gone@campus.example: 550" in said[0][2]
    assert said[1][2].startswith("report annex-weekly (2026-W48) not sent, not tried again")


# -- the picture --------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_html_reads_as_a_picture(campus: Campus, tmp_path: Path) -> None:
    """The standalone HTML rendered by headless Chromium at a phone-ish 640 px: a picture
    with the charts in it (not blank)."""
    from PIL import Image
    from tests.support.processes import require_program

    chromium = require_program("chromium")
    page = tmp_path / "report.html"
    page.write_text(standalone_html(campus.report("2026-11")), encoding="utf-8")
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *CHROMIUM_ARGS, "--headless", "--hide-scrollbars", f"--screenshot={shot}",
         "--window-size=640,2000", page.as_uri()],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    with Image.open(shot) as image:
        assert image.size == (640, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # text, tables and the charts' colours
