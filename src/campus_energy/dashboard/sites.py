"""The sites the dashboard shows: which site a meter of the store is in, which sites the
store's meters cover, the configuration as one site alone would have it, and which alerts
are a site's.

A meter belongs to the site the configuration gives it (`meters.site`); a meter only the
store knows belongs to the site of the logger that wrote it (`logger.site`, else the
default site). `dashboard.site` shows that site alone; otherwise every site the store's
meters cover is offered, the default site first chosen. One site is shown at a time, as
if the others did not exist: its meters, its buildings, its accounts, its alerts, its
days cut in its own time zone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from campus_energy.config import Config
from campus_energy.core.alerts import CAMPUS, Scope
from campus_energy.incidents.store import Silence


@dataclass(frozen=True)
class Estate:
    """The configuration's sites, and where the store's meters lie among them."""

    config: Config

    @property
    def several(self) -> bool:
        """The configuration names more than one site (`[[sites]]`)."""
        return len(self.config.site_ids) > 1

    @property
    def writer(self) -> str:
        """The site of the logger that wrote the store: of a meter only the store knows."""
        return self.config.logger.site or self.config.site.id

    @cached_property
    def _configured(self) -> dict[str, str]:
        return {m.id: self.config.site_of(m) for m in self.config.meters}

    def site_of(self, meter_id: str) -> str:
        return self._configured.get(meter_id, self.writer)

    def offered(self, meter_ids: Iterable[str]) -> list[str]:
        """The sites to choose from: `dashboard.site` alone, else those the store's meters
        are in (in the configuration's order), else the logger's."""
        if self.config.dashboard.site is not None:
            return [self.config.dashboard.site]
        present = {self.site_of(m) for m in meter_ids}
        return [s for s in self.config.site_ids if s in present] or [self.writer]

    def first_shown(self, offered: list[str]) -> str:
        """The site shown until another is chosen: the default site where offered."""
        return self.config.site.id if self.config.site.id in offered else offered[0]

    def config_of(self, site: str) -> Config:
        """The configuration `site`'s views draw from: the whole one for an estate of one
        site, else `Config.for_site`."""
        return self.config.for_site(site) if self.several else self.config

    def alerts_of(self, site: str, store_meters: Mapping[str, str]) -> AlertSites:
        """Which alerts and silences are `site`'s (`store_meters`: every meter id of the
        store -> its building)."""
        return AlertSites(site, self.several, _sites_of_names(self, store_meters), _rules(self))


@dataclass(frozen=True)
class AlertSites:
    """Which of the book's alerts and silences a site lists. In an estate of one site,
    every one; else an alert whose subject (or, for a subject the configuration does not
    know, its rule's scope) lies in the site alone — so an estate-wide alert is no site's —
    and a silence that holds back alerts of the site. The API lists a site's alerts the
    same way."""

    site: str
    several: bool
    names: Mapping[str, frozenset[str]]  # a meter, building or virtual meter -> its sites
    rules: Mapping[str, str]  # a configured rule -> its scope

    def lists(self, scope: str, subject: str) -> bool:
        if not self.several:
            return True
        return (self._sites(subject) or self._scope_sites(scope)) == {self.site}

    def reaches(self, silence: Silence) -> bool:
        if not self.several:
            return True
        if silence.subject is not None:
            return self.site in self._sites(silence.subject)
        if silence.rule is not None:
            return self.site in self._scope_sites(self.rules.get(silence.rule, ""))
        return True

    def _sites(self, name: str) -> frozenset[str]:
        return self.names.get(name, frozenset())

    def _scope_sites(self, text: str) -> frozenset[str]:
        try:
            scope = Scope.parse(text)
        except ValueError:
            return frozenset()
        return self._sites(CAMPUS if scope.kind == "campus" else scope.name)


def _sites_of_names(estate: Estate, store_meters: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """Every name an alert may be about -> its sites: meters (the configuration's and the
    store's), buildings, virtual meters (their members'), and the campus (every site)."""
    config = estate.config
    found: dict[str, frozenset[str]] = {CAMPUS: frozenset(config.site_ids)}
    for declared in config.site.buildings:  # the default site's, unless a meter says
        found[declared.name] = frozenset({config.site.id})
    for meter_id, building in store_meters.items():
        site = frozenset({estate.site_of(meter_id)})
        found[meter_id] = site
        if building:
            found[building] = site
    for meter in config.meters:
        site = frozenset({config.site_of(meter)})
        found[meter.id] = site
        if meter.building:
            found[meter.building] = site
    campus = config.campus
    for virtual in config.virtual_meters:
        try:
            members = campus.terms(virtual.id)
        except KeyError:
            continue
        found[virtual.id] = frozenset(s for m in members for s in found.get(m, frozenset()))
    return found


def _rules(estate: Estate) -> dict[str, str]:
    return {rule.name: rule.scope for rule in estate.config.alerts.rules}
