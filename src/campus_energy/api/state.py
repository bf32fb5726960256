"""What the API's views read through: one `ApiState` per app, in `app.extensions`.

Every scoped read takes the `SiteView` of the request (`ApiState.view`): the whole estate,
or one site (`site=`, or the one `api.site` serves) with its meters, its zone and its
configuration alone."""

from __future__ import annotations

from collections.abc import Callable

from campus_energy.api.cache import ResponseCache
from campus_energy.api.metrics import Metrics
from campus_energy.api.queries import BadParameter, NotFound
from campus_energy.api.sites import Estate, SiteView
from campus_energy.backends.base import MeterLatest, WindowSource
from campus_energy.config import Config


class ApiState:
    """The config, the source, the clock, the metrics and the response cache of one app."""

    def __init__(
        self,
        config: Config,
        source: WindowSource,
        clock: Callable[[], float],
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.source = source
        self.clock = clock
        self.metrics = metrics
        self.intervals = {m.id: m.interval_s for m in config.meters}
        self.cache = ResponseCache(config.api.cache_s, clock, metrics)
        self.estate = Estate(config, source)

    def view(self, asked: str | None) -> SiteView:
        """What a request sees (its `site` parameter): BadParameter, NotFound (`Estate.view`)."""
        return self.estate.view(asked)

    def now_ms(self) -> int:
        return round(self.clock() * 1000)

    def fresh_ms(self, meter_id: str) -> int:
        """A meter whose latest window *ended* within this of now is reporting: the next
        window is written `grace_s` after its end, a meter polled less often than once a
        window fills only every few windows, and the source may lag by its `lag_s`."""
        bridge = self.config.bridge
        lag = self.source.lag_s
        polled = self.intervals.get(meter_id, 0.0)
        return round(
            (2 * bridge.window_s + max(0.0, polled - bridge.window_s) + bridge.grace_s + lag) * 1000
        )

    def meters(self, view: SiteView) -> list[MeterLatest]:
        """The source's meters, plus configured meters that have no window yet, that `view`
        sees."""
        return self.estate.within(view, self.every_meter())

    def every_meter(self) -> list[MeterLatest]:
        """The source's meters, plus configured meters that have no window yet, of every site."""
        found = {m.meter_id: m for m in self.source.meters()}
        for m in self.config.meters:
            found.setdefault(m.id, MeterLatest(m.id, m.building, m.floor, None, None, None))
        return sorted(found.values(), key=lambda m: m.meter_id)

    def online(self, meter: MeterLatest, now_ms: int) -> bool:
        last = meter.last_window_ms
        if last is None:
            return False
        return now_ms - (last + self.config.bridge.window_s * 1000) <= self.fresh_ms(meter.meter_id)

    def scope(
        self, view: SiteView, meter: str | None, building: str | None, totals: bool = True
    ) -> tuple[str, str | None, list[str] | None, int]:
        """(scope, name, meter ids or None for the whole estate, how many meters) of a
        request, from one read of the meters `view` sees. With `totals`, a building or the
        campus sums only the meters its total is made of (`uncounted` left out: no sub-meter
        counted twice); without, every meter named with it (what the original deployment's
        aggregate endpoints did). A site's campus is always its meters' ids."""
        if meter is not None and building is not None:
            raise BadParameter("meter", "give either meter or building, not both")
        meters = self.meters(view)
        if meter is not None:
            if meter not in {m.meter_id for m in meters}:
                raise NotFound(f"unknown meter {meter[:80]!r}")
            return "meter", meter, [meter], 1
        left_out = view.uncounted if totals else frozenset()
        if building is not None:
            ids = [m.meter_id for m in meters if m.building == building]
            if not ids:
                raise NotFound(f"unknown building {building[:80]!r}")
            ids = [i for i in ids if i not in left_out]
            return "building", building, ids, len(ids)
        if left_out or view.id is not None:
            ids = [m.meter_id for m in meters if m.meter_id not in left_out]
            return "campus", None, ids, len(ids)
        return "campus", None, None, len(meters)

    def basis(self, view: SiteView) -> Callable[[str], str]:
        """How each building's total is made, in words."""
        campus = view.config.campus

        def basis_of(building: str) -> str:
            if building in campus.building_names():
                return campus.building_total(building).basis
            return "sum of its meters"

        return basis_of
