"""The sites an API serves, and what a request sees of them: one site as if the others did
not exist, or (no `site` asked, no `api.site`) the whole estate as one campus.

A site's view holds the configuration as that site alone would have it (`Config.for_site`:
its meters, its buildings and virtual meters, its name and zone in `[site]`), so the
campus model, the accounts and the bills see that site only, and a source whose days are
the site's (`zoned.ZonedSource`). A meter belongs to the site the configuration
gives it; a meter only the store knows, to the site its windows name (none: the default
site).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from campus_energy.api.queries import BadParameter, NotFound
from campus_energy.api.zoned import ZonedSource
from campus_energy.backends.base import MeterLatest, WindowSource
from campus_energy.config import Config
from campus_energy.core.alerts import CAMPUS, Scope

SITE_ID = re.compile(r"[a-z0-9_-]+")


@dataclass(frozen=True)
class SiteView:
    """What a request sees: a site (`id`), or the whole estate (`id` None)."""

    id: str | None
    name: str
    zone: ZoneInfo
    config: Config  # as this view sees it: a site's alone (`Config.for_site`), or the estate's
    source: WindowSource  # its days are the view's zone's
    uncounted: frozenset[str]  # meters inside another meter's total (no sum adds them)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """`body`, naming the site when the view is one."""
        return body if self.id is None else {**body, "site": self.id}


def _uncounted(config: Config) -> frozenset[str]:
    """Configured meters inside another meter's total: sub-meters, and a building's meters
    besides its main meter (none without roles and parents in the config)."""
    counted = config.campus.campus_total().terms
    return frozenset(m.id for m in config.meters if m.id not in counted)


class Estate:
    """The sites this API serves (`api.site`: that one only) and the view of each."""

    def __init__(self, config: Config, source: WindowSource) -> None:
        self.default_site = config.site.id
        self.estate_sites = frozenset(config.site_ids)
        self._configured = {m.id: config.site_of(m) for m in config.meters}
        self._campus = config.campus
        self._buildings = {m.building: config.site_of(m) for m in config.meters if m.building}
        self._rules = {r.name: r.scope for r in config.alerts.rules}
        served = config.api.site
        self.ids: tuple[str, ...] = (served,) if served else config.site_ids
        self._views = {site: self._site_view(config, site, source) for site in self.ids}
        whole = SiteView(
            None, config.site.name, config.site.zone, config, source, _uncounted(config)
        )
        self.whole = self._views[served] if served else whole

    @staticmethod
    def _site_view(config: Config, site: str, source: WindowSource) -> SiteView:
        own = config.for_site(site)
        zone = config.site_zone(site)
        zoned: WindowSource = source
        if zone.key != config.site.zone.key:  # days cut where the store does not cut them
            zoned = ZonedSource(source, zone, config.site.zone)
        return SiteView(site, own.site.name, zone, own, zoned, _uncounted(own))

    @property
    def several(self) -> bool:
        """More than one site is served (`api.site` unset, `[[sites]]` given)."""
        return len(self.ids) > 1

    def view(self, asked: str | None) -> SiteView:
        """The view a request's `site` asks for (none or empty: the whole); BadParameter for
        a malformed id, NotFound for a site not served."""
        if asked is None or asked == "":
            return self.whole
        if not SITE_ID.fullmatch(asked):
            raise BadParameter(
                "site", f"must be a site id (a-z, 0-9, '-' and '_'), got {asked[:40]!r}"
            )
        found = self._views.get(asked)
        if found is None:
            raise NotFound(f"unknown site {asked[:80]!r}")
        return found

    def sites(self) -> list[SiteView]:
        """Every site served, the default one first."""
        return [self._views[site] for site in self.ids]

    def site_of(self, meter: MeterLatest) -> str:
        """A meter's site: the configuration's, else the one its windows name, else the
        default site."""
        return self._configured.get(meter.meter_id) or meter.site or self.default_site

    def within(self, view: SiteView, meters: Iterable[MeterLatest]) -> list[MeterLatest]:
        """The meters `view` sees."""
        if view.id is None:
            return list(meters)
        return [m for m in meters if self.site_of(m) == view.id]

    # -- where the configuration's things are (what an alert is about) -----------------------

    def sites_of_name(self, name: str) -> frozenset[str]:
        """The sites of a configured meter, building, virtual meter (its members') or
        "campus" (every site); none for a name the configuration does not know."""
        if name in self._configured:
            return frozenset({self._configured[name]})
        if name == CAMPUS:
            return self.estate_sites
        if name in self._buildings or name in self._campus.building_names():
            return frozenset({self._buildings.get(name, self.default_site)})
        try:
            terms = self._campus.terms(name)
        except KeyError:
            return frozenset()
        return frozenset(self._configured[m] for m in terms if m in self._configured)

    def sites_of_scope(self, text: str) -> frozenset[str]:
        """The sites of an alert rule's scope ("campus", "building:<name>", "meter:<id>")."""
        try:
            scope = Scope.parse(text)
        except ValueError:
            return frozenset()
        return self.sites_of_name(CAMPUS if scope.kind == "campus" else scope.name)

    def sites_of_rule(self, rule: str) -> frozenset[str]:
        """The sites of a configured rule's scope; none for a rule no longer configured."""
        scope = self._rules.get(rule)
        return frozenset() if scope is None else self.sites_of_scope(scope)
