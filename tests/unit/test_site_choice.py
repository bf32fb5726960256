"""Which site the local dashboard shows, and what of the configuration and the alerts is
that site's (`campus_energy.dashboard.sites`); the page itself is in
tests/integration/test_dashboard_sites.py."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.config import campus_meters

from campus_energy.config import Config, parse_config
from campus_energy.dashboard.sites import Estate
from campus_energy.incidents.store import Silence

METERS = {  # id: (site, building)
    "aula-1": ("north", "Aula"),
    "aula-2": ("north", "Aula"),
    "pier-1": ("east", "Pier"),
    "pier-2": ("east", "Pier"),
}


def estate(**sections: Any) -> Config:
    meters = campus_meters({m: (b, "0") for m, (_, b) in METERS.items()})
    return parse_config(
        {
            "site": {
                "id": "north",
                "name": "Berlin Campus",
                "timezone": "Europe/Berlin",
                "buildings": [{"name": "Aula"}, {"name": "Pier"}, {"name": "Depot"}],
            },
            "sites": [{"id": "east", "name": "New York Campus", "timezone": "America/New_York"}],
            "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
            "meters": [{**m, "site": METERS[m["id"]][0]} for m in meters],
            "virtual_meters": [
                {"id": "pier-rest", "building": "Pier", "terms": "pier-1 - pier-2"},
                {"id": "mixed", "terms": "aula-1 + pier-1"},
            ],
            **sections,
        }
    )


@pytest.mark.parametrize(
    ("sections", "store", "offered", "first"),
    [
        ({}, ["aula-1", "pier-1"], ["north", "east"], "north"),
        ({}, ["pier-2", "pier-1"], ["east"], "east"),  # only east's meters: east alone
        ({}, ["old-1"], ["north"], "north"),  # a meter only the store knows: the default site
        ({"logger": {"site": "east"}}, ["old-1"], ["east"], "east"),  # ...or the logger's
        ({}, [], ["north"], "north"),  # an empty store: the logger's site
        ({"dashboard": {"site": "east"}}, ["aula-1", "pier-1"], ["east"], "east"),
        ({"dashboard": {"site": "east"}}, ["aula-1"], ["east"], "east"),  # none of it: said so
    ],
)
def test_the_sites_offered_are_those_the_store_covers_or_dashboard_site(
    sections: dict[str, Any], store: list[str], offered: list[str], first: str
) -> None:
    found = Estate(estate(**sections))
    assert found.offered(store) == offered
    assert found.first_shown(offered) == first


def test_a_sites_configuration_is_that_site_alone() -> None:
    whole = Estate(estate())
    east = whole.config_of("east")
    assert (east.site.id, east.site.name, east.site.timezone) == (
        "east",
        "New York Campus",
        "America/New_York",
    )
    assert east.site_ids == ("east",)
    assert [m.id for m in east.meters] == ["pier-1", "pier-2"]
    assert east.campus.building_names() == ["Pier"]  # a building no meter names: north's
    assert [v.id for v in east.virtual_meters] == ["pier-rest"]  # "mixed" spans both sites
    north = whole.config_of("north")
    assert north.campus.building_names() == ["Aula", "Depot"]
    assert [v.id for v in north.virtual_meters] == []


def test_one_sites_configuration_is_the_whole() -> None:
    config = parse_config({"site": {"timezone": "Asia/Kolkata"}})
    assert Estate(config).config_of("main") is config


def silence(rule: str | None, subject: str | None) -> Silence:
    return Silence(1, rule, subject, 2, "ops", 1)


def test_a_site_lists_the_alerts_and_silences_of_its_own_only() -> None:
    config = estate(
        alerts={
            "rules": [
                {"name": "silent", "kind": "meter-silent", "scope": "campus"},
                {"name": "pier-load", "kind": "baseline-deviation", "scope": "building:Pier"},
            ]
        }
    )
    east = Estate(config).alerts_of("east", {"east-x": "Pier", "old-1": ""})
    listed = [
        (scope, subject)
        for scope, subject in [
            ("campus", "pier-1"),
            ("campus", "aula-1"),
            ("building:Pier", "Pier"),
            ("building:Aula", "Aula"),
            ("campus", "campus"),  # the estate's: no one site's
            ("campus", "pier-rest"),
            ("campus", "mixed"),  # of both sites
            ("campus", "old-1"),  # the store's, the logger's site: north
            ("meter:gone", "gone"),  # unknown subject and scope: no site's
            ("building:Pier", "unknown"),  # unknown subject: its rule's scope
        ]
        if east.lists(scope, subject)
    ]
    assert listed == [
        ("campus", "pier-1"),
        ("building:Pier", "Pier"),
        ("campus", "pier-rest"),
        ("building:Pier", "unknown"),
    ]
    reached = [
        (rule, subject)
        for rule, subject in [
            ("silent", "pier-2"),
            ("silent", "aula-2"),
            (None, "Pier"),
            ("pier-load", None),
            ("silent", None),  # a campus rule reaches every site
            (None, None),
            ("gone", None),
        ]
        if east.reaches(silence(rule, subject))
    ]
    assert reached == [
        ("silent", "pier-2"),
        (None, "Pier"),
        ("pier-load", None),
        ("silent", None),
        (None, None),
    ]


def test_in_an_estate_of_one_site_every_alert_is_its() -> None:
    config = parse_config({"site": {"timezone": "Asia/Kolkata"}})
    one = Estate(config).alerts_of("main", {})
    assert one.lists("campus", "campus") and one.lists("meter:x", "x")
    assert one.reaches(silence("gone", None))
