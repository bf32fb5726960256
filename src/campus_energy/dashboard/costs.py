"""The Cost & demand tab: a scope's money, CO₂ and peaks over the sidebar's local days.

Priced by `accounts` — the rules of docs/billing.md, the same as the API's and the
`bill` command's — on the quarter-hour energies of the logger's own readings
(`store_hours`). The scopes are the configuration's campus model: the campus, each
building (an account: energy, standing and demand charges on its tariff), the meters
in no building (one more account), each meter and each virtual meter (energy at its
building's rates only). The campus is billed as its accounts, every kWh once; its
coincident peak is shown but is no charge, so it has no ratchet floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from campus_energy.accounts.scopes import UNASSIGNED, Kind, Scope, accounts, resolve
from campus_energy.accounts.statements import DemandAnswer, HoursOf, Statement, demand, statement
from campus_energy.config import Config
from campus_energy.core.billing import Line, kwh
from campus_energy.core.days import midnight_ms
from campus_energy.core.demand import KW, Month, Peak, month_after, month_start
from campus_energy.core.emissions import Footprint
from campus_energy.dashboard import charts
from campus_energy.dashboard.directions import apart

NO_MODEL = (
    "No meters in the configuration: the campus model (`[[meters]]` with their buildings, "
    "`role`/`parent`, `[[virtual_meters]]`) says what to bill. See docs/billing.md."
)
NOISE = Decimal("1e-9")
ROUNDING = (
    "Each line: its quantity rounded first (kWh and kW to 0.001), × rate (× days ÷ days of "
    "the month for part of a month), rounded half up to the currency's minor unit; the total "
    "is the sum of the lines."
)


def scope_choices(config: Config) -> dict[str, tuple[Kind, str | None]]:
    """Label -> (kind, name): the campus, its buildings, the meters in no building, then
    every meter and virtual meter by id (a virtual meter is chosen like a meter)."""
    campus = config.campus
    found: dict[str, tuple[Kind, str | None]] = {"Campus": ("campus", None)}
    for name in campus.building_names():
        found[f"Building: {name}"] = ("building", name)
    if campus.top_level(UNASSIGNED) and campus.building_names():
        found["Meters in no building"] = ("building", UNASSIGNED)
    meters: list[tuple[str, tuple[Kind, str | None]]] = [
        (f"Meter: {m.id}", ("meter", m.id)) for m in campus.meters
    ]
    meters += [(f"Meter: {v.id} (virtual)", ("virtual", v.id)) for v in campus.virtual_meters]
    found.update(sorted(meters, key=lambda item: item[1][1] or ""))
    return found


def draw(config: Config, hours_of: HoursOf, first: date, last: date, now_ms: int) -> None:
    if not config.campus.meters:
        st.info(NO_MODEL)
        return
    choices = scope_choices(config)
    label = st.selectbox(
        "Scope",
        list(choices),
        key="cost_scope",
        help="From the configuration's campus model; the sidebar's meters do not apply here.",
    )
    kind, name = choices[label]
    scope = resolve(config, kind, name)
    zone = config.site.zone
    if scope.kind == "campus":
        found = [statement(config, hours_of, s, first, last) for s in accounts(config)]
    else:
        found = [statement(config, hours_of, scope, first, last)]
    st.caption(f"{_basis(scope)} · local days {first.isoformat()} to {last.isoformat()}")
    _figures(found)
    _lines(found, scope)
    answer = demand(config, hours_of, scope, first, last)
    if scope.kind == "campus":  # its coincident peak is billed to no one: no ratchet
        answer = DemandAnswer(answer.scope, answer.interval_min, answer.points, answer.peaks, {})
    _demand(answer, first, last, zone, now_ms)


def _basis(scope: Scope) -> str:
    if scope.kind == "campus":
        return "The campus: the sum of its accounts' bills (each building, the meters in none)"
    tariff = f"tariff {scope.tariff.id}" if scope.tariff else "no tariff"
    if scope.is_account:
        return f"Account {scope.name or '(meters in no building)'}: {scope.basis}, on {tariff}"
    where = f"building {scope.building}" if scope.building else "the meters in no building"
    basis = scope.basis[:1].upper() + scope.basis[1:]
    return (
        f"{basis}, priced at the energy rates of {where} ({tariff}); standing and demand "
        "charges are on the account's bill"
    )


def _money(amounts: Sequence[tuple[str | None, Decimal | None]]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for currency, amount in amounts:
        if currency is not None and amount is not None:
            totals[currency] = totals.get(currency, Decimal(0)) + amount
    return totals


def _figures(found: Sequence[Statement]) -> None:
    energy = sum((kwh(s.cost.energy_wh) for s in found), Decimal(0))
    totals = _money([(s.cost.currency, s.cost.total) for s in found])
    footprint = _footprint([s.footprint for s in found])
    energy_col, cost_col, co2_col = st.columns(3)
    energy_col.metric("Energy (kWh)", f"{energy:,}")
    if len(totals) == 1:
        ((currency, total),) = totals.items()
        cost_col.metric(f"Cost ({currency})", f"{total:,}")
    else:
        text = " + ".join(f"{c} {v:,}" for c, v in sorted(totals.items()))
        cost_col.metric("Cost", text or "not priced")
    has_factor = footprint.kwh_hourly + footprint.kwh_annual > 0 or energy == 0
    co2_col.metric("CO₂ (kg)", f"{footprint.kg:,}" if has_factor else "—")
    coverage = min(s.cost.coverage for s in found) if found else 0.0
    notes = [f"Readings cover {100 * coverage:.1f} % of the range"]
    estimated = sum(s.cost.estimated_wh for s in found)
    if estimated:
        measured = sum(s.cost.measured_wh for s in found)
        billed = all(s.cost.estimated_counted for s in found)
        notes.append(
            f"Energy: {apart(measured, estimated)}"
            + ("" if billed else " (the estimate not billed: `billing.include_estimated`)")
        )
    if footprint.kwh_unknown > 0:
        notes.append(f"{footprint.kwh_unknown:,} kWh have no CO₂ factor (`[emissions]`)")
    if footprint.kwh_annual > 0 and footprint.kwh_hourly > 0:
        notes.append(f"{footprint.fallback_share:.0%} of the CO₂ by the annual factor")
    st.caption(" · ".join(notes) + ".")


def _footprint(found: Sequence[Footprint]) -> Footprint:
    return Footprint(
        sum((f.kg for f in found), Decimal(0)),
        sum((f.kwh_hourly for f in found), Decimal(0)),
        sum((f.kwh_annual for f in found), Decimal(0)),
        sum((f.kwh_unknown for f in found), Decimal(0)),
    )


def _line_row(line: Line, versions: int) -> dict[str, object]:
    since = f" (tariff from {line.valid_from.isoformat()})" if versions > 1 else ""
    return {
        "description": line.description + since,
        "quantity": line.quantity,
        "unit": line.unit,
        "rate": line.rate,
        "amount": line.amount,
    }


def _lines(found: Sequence[Statement], scope: Scope) -> None:
    st.subheader("Line items")
    priced = [s for s in found if s.cost.total is not None]
    unpriced = [s for s in found if s.cost.total is None]
    rows: list[dict[str, object]] = []
    for one in priced:
        versions = len({line.valid_from for line in one.cost.lines})
        account = {"account": one.scope.name or "(no building)"} if scope.kind == "campus" else {}
        rows += [account | _line_row(line, versions) for line in one.cost.lines]
    for currency, total in sorted(
        _money([(s.cost.currency, s.cost.total) for s in priced]).items()
    ):
        account = {"account": ""} if scope.kind == "campus" else {}
        rows.append(
            account
            | {"description": f"Total ({currency})", "quantity": None, "unit": "", "rate": None}
            | {"amount": total}
        )
    if rows:
        _table(pd.DataFrame(rows))
        unpriced_kwh = sum((s.cost.unpriced_kwh for s in priced), Decimal(0))
        before = (
            f" {unpriced_kwh:,} kWh fall before the tariff's first version and are not priced."
            if unpriced_kwh
            else ""
        )
        st.caption(ROUNDING + before)
    for one in unpriced:
        who = _account_name(one.scope) if one.scope.is_account else "this meter"
        st.info(
            f"No tariff is configured for {who}: energy and demand only "
            f"({kwh(one.cost.energy_wh):,} kWh not priced). A building's `tariff` or "
            "`site.tariff` names one of the `[[tariffs]]`."
        )


def _table(frame: pd.DataFrame) -> None:
    """A static table with every decimal shown as it is ('0.3120', '10.50'), none as blank
    (an interactive dataframe shows a missing value as 'None')."""
    columns = [c for c in frame.columns if any(isinstance(v, Decimal) for v in frame[c])]
    st.table(frame.style.format(str, subset=columns, na_rep="").hide(axis="index"))


def _account_name(scope: Scope) -> str:
    return f"building {scope.name}" if scope.name else "the meters in no building"


def _kw(value: float) -> Decimal:
    """A demand in kW rounded as a peak is (to 0.001, half up). Energies are whole µWh, so a
    demand has at most 9 decimals: the float's binary noise (far below them) goes first, and
    a half-way demand rounds up as its peak does."""
    return Decimal(value).quantize(NOISE).quantize(KW, ROUND_HALF_UP)


def _local(ms: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m-%d %H:%M %Z")


def _month_text(month: Month) -> str:
    return f"{month[0]:04d}-{month[1]:02d}"


def _demand(answer: DemandAnswer, first: date, last: date, zone: ZoneInfo, now_ms: int) -> None:
    interval = answer.interval_min
    st.subheader(f"Demand ({interval}-minute intervals)")
    lo = midnight_ms(first, zone)
    hi = min(midnight_ms(last + timedelta(days=1), zone), now_ms)
    ended = [p for p in answer.points if p.start_ms + interval * 60_000 <= now_ms]
    series = pd.DataFrame([(p.start_ms, float(_kw(p.kw))) for p in ended], columns=["ts_ms", "kW"])
    if series.empty:
        st.info("No readings of this scope in the range: no demand to show.")
        return
    shown = [p for p in answer.peaks if lo <= p.start_ms < hi]
    peaks = pd.DataFrame(
        [(p.start_ms, float(p.kw), _month_text(p.month)) for p in shown],
        columns=["ts_ms", "kW", "month"],
    )
    floors = pd.DataFrame(
        [
            (_month_ms(m, zone), _month_ms(month_after(m), zone), float(kw), _month_text(m))
            for m, kw in sorted(answer.ratchet_floors.items())
            if kw > 0
        ],
        columns=["ts_ms", "end_ms", "kW", "month"],
    )
    floors = floors.assign(
        ts_ms=floors["ts_ms"].clip(lower=lo), end_ms=floors["end_ms"].clip(upper=hi)
    )
    chart = charts.demand_lines(series, peaks, floors, zone, interval)
    st.altair_chart(chart, width="stretch")
    _table(_months_table(answer, zone))
    st.caption(
        f"Demand: each {interval}-minute local interval's energy ÷ its duration (the interval "
        "under way is not drawn). A month's peak is its highest (the earliest of a tie), over "
        "the whole month; "
        + (
            "the ratchet floor is the tariff's share of the highest peak of the months before, "
            "or its minimum."
            if answer.ratchet_floors
            else "this scope has no ratchet floor."
        )
    )


def _months_table(answer: DemandAnswer, zone: ZoneInfo) -> pd.DataFrame:
    peaks: dict[Month, Peak] = {p.month: p for p in answer.peaks}
    months = sorted(set(peaks) | set(answer.ratchet_floors))
    rows = []
    for month in months:
        peak = peaks.get(month)
        row: dict[str, object] = {
            "month": _month_text(month),
            "peak (kW)": None if peak is None else peak.kw,
            "peak at": "" if peak is None else _local(peak.start_ms, zone),
        }
        if answer.ratchet_floors:
            row["ratchet floor (kW)"] = answer.ratchet_floors.get(month)
        rows.append(row)
    return pd.DataFrame(rows)


def _month_ms(month: Month, zone: ZoneInfo) -> int:
    return midnight_ms(month_start(month), zone)
