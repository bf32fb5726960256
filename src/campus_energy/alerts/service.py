"""`campus-energy alerts`: rules evaluated over the live readings and the window store; each
alert moved through its lifecycle (`core.alerts.advance`), its state and the notifications its
transitions owe recorded in the book in one transaction, and delivered from there.

Three loops share the book (one connection, this service its only writer of states):
- receiving: the loggers' readings and retained meter statuses over MQTT (a clean session:
  only what is live matters; the retained statuses arrive on every connect), into `LiveState`;
  a status change wakes the evaluation at once;
- evaluating: every `alerts.evaluate_every_s` (or when woken), what the rules need is read
  (`LiveState`, and the store through `StoreReader`), every rule evaluated, every alert
  advanced, and whatever changed recorded;
- delivering: the outbox's due notifications sent on their channels, retried with back-off,
  dead-lettered after a channel's attempts; and the scheduled reports mailed.

A restart neither forgets nor repeats: states, the outbox and what was last known of each
meter are in the book, and a notification is recorded before it is sent (at least once;
its key — Message-ID, the webhook's delivery header — makes a resend after a crash between
sending and marking recognisable).
"""

from __future__ import annotations

import asyncio
import logging
import math
from asyncio import FIRST_COMPLETED
from collections.abc import Mapping
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

from campus_energy.alerts.live import Anchor, LiveState
from campus_energy.alerts.metrics import AlertsMetrics
from campus_energy.alerts.stored import SETTLE_S, StoreReader
from campus_energy.backends import open_source
from campus_energy.backends.base import WindowSource
from campus_energy.config import Config
from campus_energy.core import alert_rules
from campus_energy.core.alerts import (
    PER_METER,
    AlertState,
    DemandNow,
    DriftSeen,
    HourEnergy,
    Observations,
    Rule,
    Transition,
    advance,
)
from campus_energy.core.days import hour_of, local_date
from campus_energy.core.tariffs import DemandCharge
from campus_energy.core.timestamps import epoch_ms
from campus_energy.core.witness import register_specs
from campus_energy.errors import AlertBookError, BrokerError, ServiceError, SourceError
from campus_energy.incidents.channels import max_attempts, open_channels
from campus_energy.incidents.outbox import Watches, deliver_due
from campus_energy.incidents.store import AlertBook, silenced_until
from campus_energy.incidents.values import Channel
from campus_energy.runtime.clock import Backoff, SystemClock, first_or_stop, sleep_or_stop
from campus_energy.runtime.mqtt import subscribe
from campus_energy.runtime.notify import Notifier, Watchdog
from campus_energy.runtime.outages import Outage
from campus_energy.runtime.signing import read_signing_key

log = logging.getLogger("campus_energy.alerts")
RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0
SAVE_SEEN_EVERY_S = 60.0
REPORTS_EVERY_S = 30.0
REPORTS_BACKOFF_MAX_S = 1800.0
DELIVER_AT_LEAST_EVERY_S = 30.0
HELD_AGAIN_S = 1.0
PRUNE_EVERY_S = 86_400.0
HUNG_AFTER_S = 300.0
PRUNE_AFTER_DAYS = 400  # a year of history for the reports' same period last year
AFTER_HOURS_WEEKS = 4  # the open hours an after-hours rule's median is taken from
ANCHORS_MEMO = "register-anchors"


@dataclass(frozen=True)
class Planned:
    """A rule with what the service must gather for it."""

    rule: Rule
    subjects: tuple[str, ...]
    terms: Mapping[str, float]
    zone: str  # the time zone of the rule's scope: its site's (the default site's for several)


def _zone_of(config: Config, rule: Rule) -> str:
    """The time zone a rule's local hours, days and months are in: its scope's site's; the
    default site's for the campus (or a scope whose meters are in several sites)."""
    campus = config.campus
    meters = set(alert_rules.terms_of(rule, campus)) | set(alert_rules.subjects(rule, campus))
    sites = {config.site_of(m) for m in config.meters if m.id in meters} or {config.site.id}
    if rule.scope.kind == "campus" or len(sites) != 1:
        return config.site.timezone
    return config.site_zone(sites.pop()).key


class AlertsService:
    def __init__(
        self,
        config: Config,
        *,
        source: WindowSource | None = None,
        channels: Mapping[str, Channel] | None = None,
        clock: SystemClock | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.rules = config.alerts.rule_values()
        campus = config.campus
        self.planned = [
            Planned(
                r,
                tuple(alert_rules.subjects(r, campus)),
                alert_rules.terms_of(r, campus),
                _zone_of(config, r),
            )
            for r in self.rules
        ]
        self.weeks_of: dict[str, int] = {}  # subject -> the most weeks of hours its rules read
        for plan in self.planned:
            if plan.rule.kind in ("baseline-deviation", "after-hours"):
                weeks = int(plan.rule.params.get("weeks", AFTER_HOURS_WEEKS))
                subject = plan.subjects[0]
                self.weeks_of[subject] = max(weeks, self.weeks_of.get(subject, 0))
        intervals = {m.id: m.interval_s for m in config.meters}
        self.context = alert_rules.RuleContext(
            campus=campus,
            zone=config.site.timezone,
            window_s=config.bridge.window_s,
            grace_s=config.bridge.grace_s,
            interval_s=intervals,
            started_ms=self.now_ms(),
            settle_s=SETTLE_S,  # the store reader's margin: a window is there this long after
        )
        key_file = config.mqtt.signing_key_file  # a bad key stops us before any I/O
        key = read_signing_key(key_file) if key_file is not None else None
        self.live = LiveState(
            config.topic_roots(),
            intervals,
            config.intake_limits(),
            key,
            sites={m.id: config.site_of(m) for m in config.meters},
            register_specs={
                m.id: spec
                for m in config.meters
                if (spec := register_specs(config.profile_of(m)).get("import")) is not None
            },
        )
        self.source = source
        self.channels = channels
        self.book: AlertBook | None = None
        self.store: StoreReader | None = None  # in the default site's zone
        self.stores: dict[str, StoreReader] = {}  # by zone, the default's and other sites'
        self.wake = asyncio.Event()  # evaluate now (a status changed)
        self.deliver = asyncio.Event()  # deliver now (something was recorded)
        self.subscribed = asyncio.Event()
        self.evaluated = 0  # evaluations done (tests wait on it)
        self.unforeseen = 0  # messages refused by an error no check foresaw
        self.failed_rules: set[str] = set()  # rules whose evaluation raised (said once each)
        self.broker_outage = Outage("MQTT", log)
        self.store_outage = Outage("window store", log)
        self.book_outage = Outage("alert book", log)
        self.report_outage = Outage("scheduled reports", log)
        self.notifier = notifier or Notifier()
        self.watchdog = Watchdog(self.notifier)
        self.metrics = AlertsMetrics(self)
        self.max_attempts = max_attempts(config)
        self.watches = Watches()  # each channel's outage (logged once), across delivery passes
        self.report_backoff = Backoff(REPORTS_EVERY_S, REPORTS_BACKOFF_MAX_S)

    def now_ms(self) -> int:
        return epoch_ms(self.clock.wall())

    async def run(self, stop: asyncio.Event) -> None:
        config = self.config
        self.context = replace(self.context, started_ms=self.now_ms())
        self.book = AlertBook(config.alerts.state_path)
        self.source = self.source or open_source(config)
        self.stores = {
            zone: StoreReader(
                self.source, ZoneInfo(zone), config.bridge.window_s, config.bridge.grace_s
            )
            for zone in {config.site.timezone, *(p.zone for p in self.planned)}
        }
        self.store = self.stores[config.site.timezone]
        self.channels = self.channels if self.channels is not None else open_channels(config)
        self._restore()
        log.info(
            "alerts: %d rule(s), %d channel(s), %d report(s); book %s",
            len(self.rules),
            len(self.channels),
            len(config.reports),
            config.alerts.state_path,
        )
        self.metrics.start()
        loops = [
            asyncio.create_task(self._receive(stop), name="receive"),
            asyncio.create_task(self._evaluate_loop(stop), name="evaluate"),
            asyncio.create_task(self._deliver_loop(stop), name="deliver"),
        ]
        tasks = [*loops, asyncio.create_task(self.watchdog.run(stop), name="watchdog")]
        self.notifier.ready(f"{len(self.rules)} rules")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait({*loops, stopping}, return_when=FIRST_COMPLETED)
            ended = [t for t in done if t is not stopping]
            if ended:  # a loop must never end while the service runs: a bug, said once
                task = ended[0]
                error = None if task.cancelled() else task.exception()
                log.error("alerts: the %s loop ended", task.get_name(), exc_info=error)
                raise ServiceError(f"the alerts service's {task.get_name()} loop ended: {error!r}")
        finally:
            self.notifier.stopping()
            for task in [*tasks, stopping]:
                task.cancel()
            await asyncio.gather(*tasks, stopping, return_exceptions=True)
            await self._close()
            log.info("alerts stopped")

    async def _close(self) -> None:
        """Save what is known, close every part; one failing does not keep the others open."""
        assert self.book is not None and self.store is not None and self.source is not None
        self._save_seen()
        self.metrics.stop()
        for channel in (self.channels or {}).values():
            try:
                await channel.close()
            except Exception:  # a channel's own bug must not keep the book open
                log.exception("alerts: closing channel %s failed", channel.name)
        for store in self.stores.values():
            store.close()
        self.source.close()
        self.book.close()

    def _restore(self) -> None:
        assert self.book is not None
        anchors = self.book.memo(ANCHORS_MEMO) or {}
        kept = {
            meter: [Anchor(*row) for row in rows]
            for meter, rows in anchors.items()
            if isinstance(rows, list)
        }
        self.live.restore(self.book.seen(), kept)
        self._retire_unconfigured()

    def _retire_unconfigured(self) -> None:
        """Alerts of rules (or subjects) no longer configured are resolved. A firing that was
        told is resolved on the MQTT channels too, so no retained state stays "firing"."""
        assert self.book is not None
        now = self.now_ms()
        wanted = {(p.rule.name, s) for p in self.planned for s in p.subjects}
        rows = {(a.rule, a.subject): a for a in self.book.alerts(active_only=True, now_ms=now)}
        states = self.book.states(now)
        gone = [
            replace(state, phase="resolved", since_ms=now, detail="no longer configured")
            for key, state in states.items()
            if key not in wanted and state.phase in ("pending", "firing")
        ]
        mqtt = tuple(c.name for c in self.config.alerts.channels if c.kind == "mqtt")
        told = []
        for state in gone:
            row = rows.get((state.rule, state.subject))
            if state.notified_ms is None or row is None:
                continue
            event = Transition(
                state.rule, state.subject, "resolved", now, state.severity, None,
                "no longer configured",
            )  # fmt: skip
            told.append((event, row.kind, row.scope, mqtt))
        if gone:
            self.book.record(gone, told, now, site=self.config.site.name)
            log.info("%d alert(s) of rules no longer configured resolved", len(gone))

    # -- receiving --------------------------------------------------------------------------

    async def _receive(self, stop: asyncio.Event) -> None:
        roots = self.config.topic_roots()  # every site's meters
        topics = [f"{root}/+/{kind}" for root in roots for kind in ("reading", "status")]
        backoff = Backoff(RETRY_MIN_S, RETRY_MAX_S)
        while not stop.is_set():
            try:
                async with subscribe(
                    self.config.mqtt,
                    client_id=self.config.alerts.client_id,
                    topics=topics,
                    clean_session=True,
                ) as subscription:
                    self.broker_outage.recovered(self.clock.wall())
                    self.live.known_from.clear()  # (clean session: what came meanwhile is lost)
                    self.subscribed.set()
                    backoff.succeeded()
                    while not stop.is_set():
                        messages = await first_or_stop(subscription.batch(500), stop)
                        if messages is None:
                            break
                        now = self.now_ms()
                        for message in messages:
                            if self._take(message.topic, message.payload, now):
                                self.wake.set()  # a status changed: evaluate now
                            subscription.ack(message)
            except BrokerError as exc:
                self.subscribed.clear()
                self.broker_outage.failed(str(exc), self.clock.wall())
            if await sleep_or_stop(backoff.failed(), stop):
                return

    def _take(self, topic: str, payload: bytes, now_ms: int) -> bool:
        """Take one message into the live state; True when a meter's status changed. A
        message no check foresaw is refused and counted, and said once: never a crash."""
        meter_id = topic.split("/")[-2] if topic.count("/") else ""
        before = self.live.meters.get(meter_id)
        try:
            self.live.message(topic, payload, now_ms)
        except Exception:
            self.live.refused += 1
            self.unforeseen += 1
            if self.unforeseen == 1:
                log.exception("alerts: a message on %s was refused; more are counted", topic[:200])
            return False
        after = self.live.meters.get(meter_id)
        return before is not None and after is not None and before.status != after.status

    # -- evaluating -------------------------------------------------------------------------

    async def _evaluate_loop(self, stop: asyncio.Event) -> None:
        every = self.every_s()
        saved_at = self.clock.mono()
        while not stop.is_set():
            started = self.clock.mono()
            with self.watchdog.working("evaluate", HUNG_AFTER_S):
                try:
                    await self.evaluate()
                    self.book_outage.recovered(self.clock.wall())
                except AlertBookError as exc:
                    self.book_outage.failed(str(exc), self.clock.wall())
            self.metrics.evaluated(self.clock.mono() - started)
            if self.clock.mono() - saved_at >= SAVE_SEEN_EVERY_S:
                self._save_seen()
                saved_at = self.clock.mono()
            self.wake.clear()
            woken = asyncio.ensure_future(self.wake.wait())
            try:
                await first_or_stop(asyncio.wait_for(woken, every), stop)
            except TimeoutError:
                pass
            finally:
                woken.cancel()

    def every_s(self) -> float:
        """How often to evaluate: `alerts.evaluate_every_s`, or more often when a
        demand-approaching rule watches meters polled faster (it fires within one poll of
        its crossing)."""
        polls = [
            self.context.interval_s.get(meter, 0.0) or math.inf
            for plan in self.planned
            if plan.rule.kind == "demand-approaching"
            for meter in plan.terms
        ]
        return max(0.5, min([self.config.alerts.evaluate_every_s, *polls]))

    async def evaluate(self) -> None:
        """Evaluate every rule once; record what changed and the notifications it owes."""
        assert self.book is not None
        now = self.now_ms()
        seen = await self.observe(now)
        states = self.book.states(now)
        silences = self.book.silences(now)
        changed: list[AlertState] = []
        transitions: list[tuple[Transition, str, str, tuple[str, ...]]] = []
        kinds = {r.name: (r.kind, str(r.scope)) for r in self.rules}
        for plan in self.planned:
            rule = plan.rule
            try:
                context = replace(self.context, zone=plan.zone)  # its site's local hours
                findings = alert_rules.evaluate(rule, plan.subjects, seen, context)
            except Exception:  # one rule's bug: its alerts keep their states, the others go on
                if rule.name not in self.failed_rules:
                    self.failed_rules.add(rule.name)
                    log.exception("alerts: rule %s could not be evaluated", rule.name)
                continue
            for finding in findings:
                before = states.get((rule.name, finding.subject))
                if before is None and finding.holds:  # a silence may come before the alert
                    until = silenced_until(silences, rule.name, finding.subject)
                    if until is not None:
                        before = AlertState(
                            rule.name, finding.subject, "inactive", now, silenced_until_ms=until
                        )
                after, transition = advance(rule, before, finding, now)
                if after is not None and after != before:
                    changed.append(after)
                if transition is not None:
                    transitions.append((transition, rule.kind, str(rule.scope), rule.channels))
                    self._log(transition)
        if changed or transitions:
            self.book.record(changed, transitions, now, site=self.config.site.name, kinds=kinds)
        if any(not t.suppressed for t, *_ in transitions):
            self.deliver.set()
        self.metrics.states = {**states, **{(a.rule, a.subject): a for a in changed}}
        self.evaluated += 1

    def _log(self, transition: Transition) -> None:
        words = {"firing": "fires", "renotify": "still fires", "resolved": "resolved"}
        log.log(
            logging.WARNING if transition.event != "resolved" else logging.INFO,
            "alert %s %s %s: %s%s",
            transition.rule,
            transition.subject,
            words[transition.event],
            transition.detail,
            " (silenced)" if transition.suppressed else "",
        )

    async def observe(self, now_ms: int) -> Observations:
        """What this evaluation's rules need: live values, and the store's answers."""
        assert self.store is not None
        store = self.store
        kinds = {p.rule.kind for p in self.planned}
        coverage: dict[str, tuple[tuple[int, float], ...]] = {}
        hours: dict[str, tuple[HourEnergy, ...]] = {}
        demand: dict[str, DemandNow] = {}
        try:
            if "meter-silent" in kinds:
                self.live.seed_from_store(await store.last_window_starts(now_ms))
            for plan in self.planned:
                rule = plan.rule
                if rule.kind == "coverage-low":
                    count = int(rule.params.get("windows", 3))
                    coverage.update(await store.coverage(plan.subjects, now_ms, count))
                elif rule.kind in ("baseline-deviation", "after-hours"):
                    subject = plan.subjects[0]
                    if subject not in hours:  # as many weeks as the subject's rules look back
                        weeks = self.weeks_of[subject]
                        in_zone = self._store_in(plan.zone)
                        hours[subject] = await in_zone.hours(subject, plan.terms, now_ms, weeks)
                elif rule.kind == "demand-approaching":
                    demand[plan.subjects[0]] = await self._demand(plan, now_ms)
            self.store_outage.recovered(self.clock.wall())
        except SourceError as exc:
            self.store_outage.failed(str(exc), self.clock.wall())
        power = {
            p.subjects[0]: self.live.power_of(p.terms, now_ms)
            for p in self.planned
            if p.rule.kind not in PER_METER
        }
        drift = {}
        for meter_id in {
            s for p in self.planned if p.rule.kind == "register-drift" for s in p.subjects
        }:
            pair = self.live.drift_anchors(meter_id)
            if pair is not None:
                first, last = pair
                drift[meter_id] = DriftSeen(
                    first.ts_ms,
                    last.ts_ms,
                    last.total_wh - first.total_wh,
                    last.register_wh - first.register_wh,
                )
        return Observations(
            now_ms=now_ms,
            zone=self.config.site.timezone,
            meters=dict(self.live.meters),
            coverage=coverage,
            hours=hours,
            power_w=power,
            demand=demand,
            drift=drift,
        )

    async def _demand(self, plan: Planned, now_ms: int) -> DemandNow:
        store = self._store_in(plan.zone)  # its site's months
        charge = self._demand_charge(plan, now_ms)
        tariff_min = charge.interval_min if charge is not None else 15
        interval_min = int(plan.rule.params.get("interval_min") or tariff_min)
        interval_ms = interval_min * 60_000
        start = self._interval_start_ms(now_ms, interval_min, ZoneInfo(plan.zone))
        subject = plan.subjects[0]
        peak = await store.month_peak_kw(subject, plan.terms, interval_min, now_ms)
        floor = None
        if charge is not None and "contracted_kw" not in plan.rule.params:
            ratchet = charge.ratchet
            highest = await store.earlier_peak_kw(
                subject, plan.terms, interval_min, ratchet.months, now_ms
            )
            floor = max(float(ratchet.minimum_kw), float(ratchet.share) * (highest or 0.0))
        energy = self.live.energy_of(plan.terms, start, start + interval_ms)
        # the part of the interval a member's energy is not known of here (the service started,
        # or the meter came back, within it) is taken at the member's present power
        unknown = self.live.unknown_ms(plan.terms, start, now_ms)
        for meter_id, missing_ms in unknown.items():
            power = self.live.meters[meter_id].power_w
            energy += plan.terms[meter_id] * (power or 0.0) * missing_ms / 3_600_000
        return DemandNow(
            interval_start_ms=start,
            interval_ms=interval_ms,
            energy_wh=energy,
            power_w=self.live.power_of(plan.terms, now_ms),
            month_peak_kw=peak,
            complete=not unknown and self.live.reported_since(plan.terms, start),
            floor_kw=floor or None,
        )

    def _demand_charge(self, plan: Planned, now_ms: int) -> DemandCharge | None:
        """The demand charge of the scope's tariff in force today (None: none)."""
        scope = plan.rule.scope
        campus = self.config.campus
        building = scope.name if scope.kind == "building" else ""
        if scope.kind == "meter":
            place = next((m for m in campus.meters if m.id == scope.name), None)
            building = place.building if place is not None else ""
        name = campus.tariff_of(building) if building else campus.tariff
        tariff = self.config.tariff_values.get(name or "")
        today = local_date(now_ms, ZoneInfo(plan.zone))
        version = tariff.version_on(today) if tariff is not None else None
        return None if version is None else version.demand

    def _store_in(self, zone: str) -> StoreReader:
        """The store reader whose local hours, days and months are `zone`'s."""
        assert self.store is not None
        if zone not in self.stores:
            if zone == self.store.zone.key:
                self.stores[zone] = self.store
            else:
                window_s = self.config.bridge.window_s
                grace_s = self.config.bridge.grace_s
                reader = StoreReader(self.store.source, ZoneInfo(zone), window_s, grace_s)
                self.stores[zone] = reader
        return self.stores[zone]

    def _interval_start_ms(self, now_ms: int, interval_min: int, zone: ZoneInfo) -> int:
        """The start of the local clock interval holding now: intervals of 15, 30 and 60
        minutes divide the local hour, which starts on a UTC quarter hour in every zone."""
        hour_ms = hour_of(now_ms, zone)
        return now_ms - (now_ms - hour_ms) % (interval_min * 60_000)

    def _save_seen(self) -> None:
        if self.book is None:
            return
        try:
            self.book.save_seen(self.live.meters)
            self.book.remember(
                ANCHORS_MEMO,
                {
                    meter: [[a.ts_ms, a.total_wh, a.register_wh] for a in kept]
                    for meter, kept in self.live.anchors.items()
                },
            )
        except AlertBookError as exc:
            self.book_outage.failed(str(exc), self.clock.wall())

    # -- delivering -------------------------------------------------------------------------

    async def _deliver_loop(self, stop: asyncio.Event) -> None:
        assert self.book is not None and self.channels is not None
        reports_at = -REPORTS_EVERY_S
        pruned_at = -PRUNE_EVERY_S
        while not stop.is_set():
            self.deliver.clear()
            held = False
            with self.watchdog.working("deliver", HUNG_AFTER_S):
                try:
                    counts = await deliver_due(
                        self.book,
                        self.channels,
                        self.now_ms(),
                        max_attempts=self.max_attempts,
                        watches=self.watches,
                    )
                    self.metrics.delivered(counts)
                    held = counts.held > 0
                    self.metrics.outbox = self.book.outbox_counts()
                    self.book_outage.recovered(self.clock.wall())
                except AlertBookError as exc:
                    self.book_outage.failed(str(exc), self.clock.wall())
                if self.config.reports and self.clock.mono() >= reports_at:
                    ok = await self._reports()
                    wait_s = REPORTS_EVERY_S if ok else self.report_backoff.failed()
                    reports_at = self.clock.mono() + wait_s
                    if ok:
                        self.report_backoff.succeeded()
                if self.clock.mono() - pruned_at >= PRUNE_EVERY_S:
                    pruned_at = self.clock.mono()
                    self._prune()
            delay = DELIVER_AT_LEAST_EVERY_S
            try:
                due = self.book.next_due_ms()
            except AlertBookError:
                due = None
            if due is not None:
                # what a channel holds back behind a failed notice is due already: look again
                # in a second, not at once (the failed one's retry releases them)
                soonest = HELD_AGAIN_S if held else 0.05
                delay = max(soonest, min(delay, (due - self.now_ms()) / 1000))
            woken = asyncio.ensure_future(self.deliver.wait())
            try:
                await first_or_stop(asyncio.wait_for(woken, delay), stop)
            except TimeoutError:
                pass
            finally:
                woken.cancel()

    def _prune(self) -> None:
        """History and finished notifications older than PRUNE_AFTER_DAYS (a year and a bit:
        the reports compare with the same period last year), once a day."""
        assert self.book is not None
        try:
            removed = self.book.prune(self.now_ms() - PRUNE_AFTER_DAYS * 86_400_000)
        except AlertBookError as exc:
            self.book_outage.failed(str(exc), self.clock.wall())
            return
        if removed:
            log.info("alerts: %d rows older than %d days pruned from the book", removed,
                     PRUNE_AFTER_DAYS)  # fmt: skip

    async def _reports(self) -> bool:
        """Send the reports that are due; False when one failed (tried again after a
        back-off: 30 s doubling to 30 minutes)."""
        from campus_energy.reports.delivery import send_due

        assert self.book is not None and self.channels is not None and self.source is not None
        channels = self.channels

        async def send(name: str, message: object) -> None:
            await channels[name].send_message(message)  # type: ignore[attr-defined]

        try:
            sent = await send_due(self.config, self.book, self.source, send, self.now_ms())
            self.report_outage.recovered(self.clock.wall())
        except Exception as exc:  # a report failed to build or send: tried again later
            self.report_outage.failed(f"{type(exc).__name__}: {exc}", self.clock.wall())
            return False
        for name in sent:
            log.info("report %s sent", name)
        return True
