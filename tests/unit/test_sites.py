"""Sites: the configuration of an estate, where each site's meters publish, and what the
bridge admits under each site's topic root."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from campus_energy.config import Config, parse_config
from campus_energy.core.incoming import Admitted, Malformed, admit
from campus_energy.core.readings import Reading
from campus_energy.core.topics import logger_status_topic, reading_topic
from campus_energy.errors import ConfigError

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PREFIX = "campus/energy"
NORTH_ROOT = f"{PREFIX}/sites/north"


def estate(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "site": {"name": "Main Campus", "timezone": "Europe/Berlin"},
        "sites": [{"id": "north", "name": "North Campus", "timezone": "America/New_York"}],
        "buses": [
            {"name": "main-bus", "transport": "tcp", "host": "127.0.0.1", "port": 5020},
            {"name": "north-a", "transport": "tcp", "host": "127.0.0.1", "port": 5021},
            {"name": "north-b", "transport": "tcp", "host": "127.0.0.1", "port": 5022},
        ],
        "meters": [
            {"id": "lib-1", "bus": "main-bus", "unit": 1, "profile": "eastron-sdm120",
             "building": "Library"},
            {"id": "lab-1", "bus": "north-a", "unit": 1, "profile": "eastron-sdm120",
             "building": "Labs", "site": "north"},
            {"id": "lab-2", "bus": "north-b", "unit": 1, "profile": "eastron-sdm120",
             "building": "Labs", "site": "north"},
        ],
    }  # fmt: skip
    for key, value in extra.items():
        section, _, name = key.partition("__")
        if name:
            data.setdefault(section, {})[name] = value
        else:
            data[section] = value
    return data


def problems_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.problems


# --- configuration ---------------------------------------------------------------------------


def test_a_configuration_without_sites_is_one_site_whose_topics_are_unchanged() -> None:
    config = parse_config({"site": {"name": "Campus"}})
    assert config.site_ids == ("main",)
    assert config.topic_root("main") == PREFIX
    assert config.reading_filters() == [f"{PREFIX}/+/reading"]
    assert config.logger_site_root() == PREFIX


def test_each_site_has_its_root_zone_and_name() -> None:
    config = parse_config(estate())
    assert config.site_ids == ("main", "north")
    assert config.topic_roots() == {PREFIX: "main", NORTH_ROOT: "north"}
    assert [config.site_of(m) for m in config.meters] == ["main", "north", "north"]
    assert config.site_zone("north").key == "America/New_York"
    assert config.site_zone("main").key == "Europe/Berlin"
    assert (config.site_name("north"), config.site_name("main")) == ("North Campus", "Main Campus")
    assert config.reading_filters() == [f"{PREFIX}/+/reading", f"{NORTH_ROOT}/+/reading"]


def test_a_site_without_a_zone_takes_the_default_sites() -> None:
    data = estate()
    del data["sites"][0]["timezone"]
    assert parse_config(data).site_zone("north").key == "Europe/Berlin"


def test_bridges_share_every_sites_readings_or_take_their_filters() -> None:
    shared = parse_config(estate(bridge__shared_group="bridges"))
    assert shared.reading_filters() == [
        f"$share/bridges/{PREFIX}/+/reading",
        f"$share/bridges/{NORTH_ROOT}/+/reading",
    ]
    north_only = parse_config(estate(bridge__topic_filters=[f"{NORTH_ROOT}/+/reading"]))
    assert north_only.reading_filters() == [f"{NORTH_ROOT}/+/reading"]
    one_meter = [f"{PREFIX}/lib-1/reading", f"{PREFIX}/sites/+/lab-2/reading"]
    assert parse_config(estate(bridge__topic_filters=one_meter)).reading_filters() == one_meter
    anyone = parse_config({"bridge": {"topic_filters": [f"{PREFIX}/m9/reading"]}})
    assert anyone.reading_filters() == [f"{PREFIX}/m9/reading"]  # no meters: any id


def test_a_logger_polls_its_sites_meters_on_its_buses_only() -> None:
    everything = parse_config(estate())
    assert everything.for_logger() is everything
    north = parse_config(estate(logger__site="north")).for_logger()
    assert [m.id for m in north.meters] == ["lab-1", "lab-2"]
    assert [b.name for b in north.buses] == ["north-a", "north-b"]
    assert north.logger_site_root() == NORTH_ROOT
    assert list(north.campus.building_names()) == ["Labs"]
    one_bus = parse_config(estate(logger__site="north", logger__buses=["north-b"])).for_logger()
    assert [m.id for m in one_bus.meters] == ["lab-2"]
    assert [b.name for b in one_bus.buses] == ["north-b"]


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (lambda d: d["meters"][1].update(site="nort"), "meters[1] (id \"lab-1\").site",
         'unknown site "nort" — did you mean "north"?'),
        (lambda d: d["sites"].append({"id": "north"}), "sites[1].id",
         'duplicate site id "north"'),
        (lambda d: d["sites"].append({"id": "main"}), "sites[1].id",
         'duplicate site id "main"'),
        (lambda d: d["meters"][0].update(building="Labs"), "meters[1] (id \"lab-1\").site",
         'building "Labs" is in site "main": a building belongs to one site'),
        (lambda d: d.update(logger={"site": "south"}), "logger.site", 'unknown site "south"'),
        (lambda d: d.update(api={"site": "south"}), "api.site", 'unknown site "south"'),
        (lambda d: d.update(dashboard={"site": "south"}), "dashboard.site",
         'unknown site "south"'),
        (lambda d: d.update(logger={"buses": ["north-c"]}), "logger.buses[0]",
         'unknown bus "north-c"'),
        (lambda d: d.update(bridge={"topic_filters": ["other/+/reading"]}),
         "bridge.topic_filters[0]", 'must be under mqtt.topic_prefix "campus/energy"'),
        (lambda d: d.update(bridge={"topic_filters": [f"{PREFIX}/sites/nowhere/+/reading"]}),
         "bridge.topic_filters[0]", "matches no site's readings"),
        (lambda d: d.update(bridge={"topic_filters": [f"{NORTH_ROOT}/lib-1/x/reading"]}),
         "bridge.topic_filters[0]", "matches no site's readings"),
        (lambda d: d.update(bridge={"topic_filters": [f"{PREFIX}/#"]}), "bridge.topic_filters",
         "must be reading topics"),
        (lambda d: d.update(bridge={"topic_filters": [f"{PREFIX}/a+/reading"]}),
         "bridge.topic_filters", "must be reading topics"),
        (lambda d: d["sites"][0].update(id="North Campus"), "sites[0].id",
         "must use only a-z"),
        (lambda d: d["sites"][0].update(timezone="Asia/Kolkata"),
         "sites[0] (id \"north\").timezone", "is not a whole number of hours from"),
        (lambda d: d["sites"][0].update(timezone="Mars/Olympus"),
         "sites[0] (id \"north\").timezone", "unknown IANA time zone"),
    ],
)  # fmt: skip
def test_a_bad_site_setting_is_named(change: Any, key: str, words: str) -> None:
    data = estate()
    change(data)
    found = problems_of(data)
    assert any(k == key and words in m for k, m in found), found


# --- where readings go and what the bridge admits ----------------------------------------------


def payload(meter_id: str, site: str | None) -> bytes:
    reading = Reading(meter_id, NOW - 5_000, 7, 1_000_000, 9_000_000, {"power_w": 720.0}, None)
    return json.dumps(reading.payload("Labs", "1", site)).encode()


def admitted(config: Config, topic: str, raw: bytes) -> Admitted | Malformed:
    return admit(
        topic,
        raw,
        prefix=config.topic_roots(),
        now_ms=NOW,
        meters={m.id for m in config.meters},
        sites={m.id: config.site_of(m) for m in config.meters},
    )


def test_a_reading_under_its_sites_root_is_that_sites() -> None:
    config = parse_config(estate())
    found = admitted(config, reading_topic(NORTH_ROOT, "lab-1"), payload("lab-1", "north"))
    assert isinstance(found, Admitted) and found.reading.site == "north"
    main = admitted(config, reading_topic(PREFIX, "lib-1"), payload("lib-1", "main"))
    assert isinstance(main, Admitted) and main.reading.site == "main"
    older = admitted(config, reading_topic(PREFIX, "lib-1"), payload("lib-1", None))
    assert isinstance(older, Admitted) and older.reading.site == "main"  # a logger before sites


@pytest.mark.parametrize(
    ("topic", "meter", "site", "kind"),
    [
        (reading_topic(PREFIX, "lab-1"), "lab-1", None, "site"),  # north's meter, main's root
        (reading_topic(NORTH_ROOT, "lib-1"), "lib-1", "north", "site"),  # and the other way
        (reading_topic(NORTH_ROOT, "lab-1"), "lab-1", "main", "site"),  # payload says otherwise
        (reading_topic(f"{PREFIX}/sites/south", "lab-1"), "lab-1", "south", "topic"),  # no such
        (reading_topic(f"{NORTH_ROOT}/x", "lab-1"), "lab-1", "north", "topic"),  # deeper root
        (reading_topic(NORTH_ROOT, "lab-1"), "lab-1", 7, "site"),  # not a string
    ],
)
def test_a_reading_out_of_its_place_is_refused(
    topic: str, meter: str, site: Any, kind: str
) -> None:
    config = parse_config(estate())
    body = json.loads(payload(meter, None))
    if site is not None:
        body["site"] = site
    found = admitted(config, topic, json.dumps(body).encode())
    assert isinstance(found, Malformed) and found.kind == kind, found


def test_the_logger_status_topic_is_under_its_sites_root() -> None:
    north = parse_config(estate(logger__site="north", logger__id="north-pi"))
    assert logger_status_topic(north.logger_site_root(), north.logger.id) == (
        f"{NORTH_ROOT}/logger/north-pi/status"
    )


# --- alerts: a rule's local hours are its scope's site's -----------------------------------------


def test_an_alert_rules_hours_are_its_sites() -> None:
    from dataclasses import replace

    from campus_energy.alerts.service import AlertsService
    from campus_energy.core import alert_rules
    from campus_energy.core.alerts import Observations

    open_hours = {day: "08:00-18:00" for day in ("mon", "tue", "wed", "thu", "fri")}
    rules = [
        {"name": "labs-after-hours", "kind": "after-hours", "scope": "building:Labs",
         "above_kw": 1.0, "for": "0s", "channels": []},
        {"name": "library-after-hours", "kind": "after-hours", "scope": "building:Library",
         "above_kw": 1.0, "for": "0s", "channels": []},
        {"name": "estate-silent", "kind": "meter-silent", "scope": "campus", "channels": []},
    ]  # fmt: skip
    data = estate(alerts={"rules": rules})
    data["site"]["buildings"] = [
        {"name": "Library", "occupancy": open_hours},
        {"name": "Labs", "occupancy": open_hours},
    ]
    service = AlertsService(parse_config(data))
    zones = {p.rule.name: p.zone for p in service.planned}
    assert zones == {
        "labs-after-hours": "America/New_York",  # Labs is north's
        "library-after-hours": "Europe/Berlin",
        "estate-silent": "Europe/Berlin",  # the campus: the default site's
    }
    # Tuesday 10 November 2026, 07:30 UTC: 08:30 in Berlin (open), 02:30 in New York (closed)
    now = 1_794_295_800_000
    seen = Observations(now, "Europe/Berlin", power_w={"Labs": 5000.0, "Library": 5000.0})
    found = {}
    for plan in service.planned[:2]:
        context = replace(service.context, zone=plan.zone)
        [finding] = alert_rules.evaluate(plan.rule, plan.subjects, seen, context)
        found[plan.rule.name] = finding.holds
    assert found == {"labs-after-hours": True, "library-after-hours": False}


def test_a_logger_whose_default_site_has_another_id_is_heard() -> None:
    """The loggers' files say [site] id "main" (the default), the bridge's "hq": the default
    root is one root, and its readings are the bridge's default site's."""
    bridge = parse_config(estate(site={"id": "hq", "timezone": "Europe/Berlin"}))
    found = admitted(bridge, reading_topic(PREFIX, "lib-1"), payload("lib-1", "main"))
    assert isinstance(found, Admitted) and found.reading.site == "hq"


def test_a_meter_status_under_another_sites_root_is_refused() -> None:
    from campus_energy.alerts.live import LiveState
    from campus_energy.core.incoming import Limits

    config = parse_config(estate())
    live = LiveState(
        config.topic_roots(),
        {m.id: 5.0 for m in config.meters},
        {m.id: Limits() for m in config.meters},
        sites={m.id: config.site_of(m) for m in config.meters},
    )
    offline = json.dumps({"state": "offline", "ts": "2026-01-01T00:00:00.000Z"}).encode()
    assert not live.message(f"{PREFIX}/lab-1/status", offline, NOW)  # north's, main's root
    assert live.refused == 1 and live.meters["lab-1"].status is None
    assert live.message(f"{NORTH_ROOT}/lab-1/status", offline, NOW)
    assert live.meters["lab-1"].status == "offline"


def test_a_logger_publishes_an_outbox_reading_of_a_meter_it_no_longer_polls_under_its_root(
    tmp_path: Path,
) -> None:
    """`logger.site` changed to north with readings of lib-1 (main's) still in the outbox:
    they go out under main's root, as lib-1's, not under the bare prefix as nobody's."""
    from campus_energy.logger.publisher import Publisher, StatusBoard
    from campus_energy.logger.store import ReadingStore

    estate_config = parse_config(estate(logger__site="north"))
    store = ReadingStore(tmp_path / "store.db")
    publisher = Publisher(estate_config.for_logger(), store, StatusBoard(), estate=estate_config)
    assert publisher.root("lib-1") == PREFIX and publisher.sites["lib-1"] == "main"
    assert publisher.root("lab-2") == NORTH_ROOT


def test_doctor_tells_a_sites_report_by_its_sites_clock() -> None:
    from campus_energy.ops.doctor.checks.alerts import _report

    channel = {"name": "mail", "kind": "email", "host": "127.0.0.1", "sender": "a@b.example",
               "recipients": ["c@d.example"], "security": "none"}  # fmt: skip
    reports = [{"name": "north-monthly", "every": "month", "at": "07:00", "site": "north",
                "channel": "mail"}]  # fmt: skip
    config = parse_config(estate(alerts={"channels": [channel]}, reports=reports))
    found = _report(config, config.reports[0], NOW / 1000)  # 1 January 2026, 00:00Z
    assert "next Thu 2026-01-01 07:00 EST (in 12 h)" in found.detail, found.detail  # not CET
