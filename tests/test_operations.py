"""The operations console's back end (issue 21): telemetry kept as received with limits
from the hardware profiles and alarms that are raised and cleared, the command history
verified by what the satellites report, the pass timeline, and the Open MCT feed."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from starcompute import load_constellation, load_stations, parse_utc
from starcompute.mission.command_log import CommandLog
from starcompute.mission.control import Mission
from starcompute.mission.health import profile
from starcompute.mission.telemetry import KEEP_S, TelemetryStore, limits_of
from starcompute.security.telecommand import (
    RECENT_OUTCOMES,
    Command,
    GroundKeys,
    SatelliteKeys,
    new_master,
    packet_id,
)

START = parse_utc("2025-11-20T00:00:00Z")
KEY = "sk-test-0123456789abcdef"


def _at(minutes: float) -> np.datetime64:
    return START + np.timedelta64(round(minutes * 60e3), "ms")


def test_limits_come_from_the_hardware_profile() -> None:
    hw = profile("three-body-sat")
    limits = {(lim.parameter, lim.severity): lim for lim in limits_of(hw)}
    floor = hw.battery.floor_wh / hw.battery.capacity_wh
    assert limits["battery_soc", "critical"].low == pytest.approx(floor)
    assert limits["battery_soc", "warning"].low == pytest.approx(floor + 0.10)
    assert limits["temperature_c", "critical"].high == hw.thermal.max_temp_c
    assert limits["temperature_c", "warning"].high == hw.thermal.max_temp_c - 5.0


def test_alarms_are_raised_escalated_and_cleared_as_values_cross_the_limits() -> None:
    hw = profile("three-body-sat")
    floor = hw.battery.floor_wh / hw.battery.capacity_wh
    tm = TelemetryStore()
    tm.set_limits({"S1": limits_of(hw)})
    assert tm.add("S1", "gs", _at(0), {"battery_soc": 0.99}) == []
    tm.add("S1", "gs", _at(1), {"battery_soc": floor + 0.05})  # within 10 points: warning
    assert [a["severity"] for a in tm.alarms(active_only=True)] == ["warning"]
    tm.add("S1", "gs", _at(2), {"battery_soc": floor - 0.01})  # below the floor
    assert [a["severity"] for a in tm.alarms(active_only=True)] == ["critical"]
    tm.add("S1", "gs", _at(3), {"battery_soc": floor - 0.02})  # still critical: no new alarm
    assert len(tm.alarms()) == 2 and tm.alarms(active_only=True)[0]["last_value"] == floor - 0.02
    tm.add("S1", "gs", _at(4), {"battery_soc": 0.95})
    assert tm.alarms(active_only=True) == []
    history = tm.alarms()
    assert [(a["severity"], a["raised"], a["cleared"]) for a in history] == [
        ("critical", "2025-11-20T00:02:00.000Z", "2025-11-20T00:04:00.000Z"),
        ("warning", "2025-11-20T00:01:00.000Z", "2025-11-20T00:02:00.000Z"),
    ]
    tm.add("S1", "gs", _at(5), {"temperature_c": hw.thermal.max_temp_c + 1})
    assert [a["parameter"] for a in tm.alarms(active_only=True)] == ["temperature_c"]


def test_series_is_on_the_received_time_and_keeps_the_measured_one() -> None:
    tm = TelemetryStore()
    tm.add("S1", "gs-a", _at(10), {"orbit_time": "2025-11-20T00:02:00.000Z", "battery_soc": 0.9})
    tm.add("S1", "gs-b", _at(11), {"orbit_time": "2025-11-20T00:11:00.000Z", "battery_soc": 0.8})
    tm.add("S2", "gs-b", _at(11), {"battery_soc": 0.1})
    s = tm.series("S1", "battery_soc")
    assert [(p["t"], p["measured"], p["value"], p["station"]) for p in s["points"]] == [
        ("2025-11-20T00:10:00.000Z", "2025-11-20T00:02:00.000Z", 0.9, "gs-a"),
        ("2025-11-20T00:11:00.000Z", "2025-11-20T00:11:00.000Z", 0.8, "gs-b"),
    ]
    assert [p["value"] for p in tm.series("S1", "battery_soc", since=_at(10.5))["points"]] == [0.8]
    with pytest.raises(Exception, match="unknown telemetry parameter"):
        tm.series("S1", "voltage")
    # a day of records is kept per satellite, older ones are dropped
    tm.add("S1", "gs-a", _at(11 + KEEP_S / 60 + 1), {"battery_soc": 0.7})
    assert [p["value"] for p in tm.series("S1", "battery_soc")["points"]] == [0.7]


def test_injected_values_hold_until_their_end_and_say_so() -> None:
    tm = TelemetryStore()
    tm.set_limits({"S1": limits_of(profile("three-body-sat"))})
    tm.inject("S1", {"battery_soc": 0.05}, _at(0), _at(10))
    assert tm.alarms(active_only=True)[0]["severity"] == "critical"
    tm.add("S1", "twin", _at(5), {"battery_soc": 0.99})  # the model's value is overridden
    assert tm.latest()["S1"]["injected"] == ["battery_soc"]
    assert tm.alarms(active_only=True)
    tm.add("S1", "twin", _at(11), {"battery_soc": 0.99})  # past its end: the alarm clears
    assert not tm.alarms(active_only=True) and "injected" not in tm.latest()["S1"]


def _sealed(ground: GroundKeys, kind: str = "set-config") -> bytes:
    return ground.seal(Command(kind, {"max_batch": 4}))


def test_a_satellite_reports_each_commands_outcome_by_its_id() -> None:
    master = new_master()
    ground, onboard = GroundKeys.provision(master), SatelliteKeys.provision(master)
    packet = _sealed(ground)
    onboard.open(packet)
    onboard.note(packet, "set-config", "applied")
    with pytest.raises(Exception, match="replay"):
        onboard.open(packet)  # a replayed copy: refused, reported under the same id
    assert onboard.recent == [
        {"id": packet_id(packet), "kind": "set-config", "outcome": "applied", "reason": ""},
        {"id": packet_id(packet), "kind": None, "outcome": "rejected", "reason": "replay"},
    ]
    assert SatelliteKeys.from_dict(onboard.to_dict()).recent == onboard.recent  # journalled
    for _ in range(RECENT_OUTCOMES + 5):
        onboard.open(_sealed(ground))
    assert len(onboard.recent) == RECENT_OUTCOMES
    assert packet_id(b"not a packet") is None


def test_command_history_states_follow_what_the_satellite_reported() -> None:
    log = CommandLog()
    log.add("S1", "set-config", {"max_batch": 4}, "1:1", _at(0), _at(5))
    log.add("S1", "set-config", {"max_batch": 2}, "1:2", _at(0), _at(5))
    assert [c["state"] for c in log.recent(_at(1))] == ["queued", "queued"]
    assert [c["state"] for c in log.recent(_at(6))] == ["sent", "sent"]  # planned arrival passed
    log.verify("S1", [{"id": "1:1", "outcome": "accepted"}], _at(6))
    reported = [
        {"id": "1:1", "outcome": "applied"},
        {"id": "1:2", "outcome": "failed", "reason": "bad-config"},
    ]
    log.verify("S1", reported, _at(7))
    log.verify("S1", [{"id": "1:1", "outcome": "rejected", "reason": "replay"}], _at(8))
    log.verify("S2", [{"id": "1:2", "outcome": "applied"}], _at(8))  # another satellite's ids
    by_id = {c["command_id"]: c for c in log.recent(_at(9))}
    assert (by_id["1:1"]["state"], by_id["1:1"]["verified"]) == (
        "applied",
        "2025-11-20T00:07:00.000Z",
    )
    assert (by_id["1:2"]["state"], by_id["1:2"]["reason"]) == ("failed", "bad-config")


# ---------------------------------------------------------------- the API over the twin
@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from starcompute.compute.real import TransformersEngine
    from starcompute.gateway.app import create_app
    from starcompute.mission.requestlog import RequestLog
    from starcompute.mission.twin import twin_segment
    from starcompute.times import OrbitClock

    mission = Mission.build(
        load_constellation("three-body-12"), load_stations("china,ksat,aws"), START, 6 * 3600.0
    )
    segment = twin_segment(
        mission, TransformersEngine(max_batch=4), OrbitClock(START, 60.0), RequestLog(),
        telemetry_s=120.0,
    )  # fmt: skip
    with TestClient(create_app(segment, "smollm2", {KEY: "ops"})) as c:
        c.segment = segment
        yield c
    segment.close()


AUTH = {"Authorization": f"Bearer {KEY}"}


def test_telemetry_of_every_satellite_with_limits(client: Any) -> None:
    client.segment.sample_telemetry()
    doc = client.get("/api/telemetry").json()
    assert doc["source"] == "twin" and len(doc["satellites"]) == 12
    name, record = next(iter(doc["satellites"].items()))
    assert 0 < record["battery_soc"] <= 1 and record["received"] == record["orbit_time"]
    series = client.get(f"/api/telemetry/{name}", params={"parameter": "temperature_c"}).json()
    assert series["points"] and {lim["severity"] for lim in series["limits"]} == {
        "warning",
        "critical",
    }
    assert client.get("/api/telemetry/nowhere").status_code == 404
    bad = client.get(f"/api/telemetry/{name}", params={"parameter": "voltage"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "parameter"


def test_an_injected_low_battery_raises_an_alarm_in_the_api_and_metrics(client: Any) -> None:
    name = client.segment.mission.const.names[3]
    body = {"satellite": name, "values": {"battery_soc": 0.05}, "minutes": 5}
    assert client.post("/api/telemetry", json=body).status_code == 401  # keyed
    out = client.post("/api/telemetry", json=body, headers=AUTH)
    assert out.status_code == 200 and out.json()["alarms"]
    active = client.get("/api/alarms", params={"active": "true"}).json()["alarms"]
    assert [(a["satellite"], a["severity"]) for a in active] == [(name, "critical")]
    metrics = client.get("/metrics").text
    assert 'starcompute_alarms_active{severity="critical"} 1.0' in metrics
    assert f'starcompute_telemetry{{parameter="battery_soc",satellite="{name}"}} 0.05' in metrics
    for wrong, param in [
        ({"satellite": name, "values": {"voltage": 1.0}}, "values"),
        ({"satellite": name, "values": {}}, "values"),
        ({"satellite": name, "values": {"battery_soc": 0.5}, "minutes": 0}, "minutes"),
    ]:
        r = client.post("/api/telemetry", json=wrong, headers=AUTH)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_command_history_and_a_forged_packet(client: Any) -> None:
    name = client.segment.mission.const.names[0]
    body = {"satellite": name, "command": "set-config", "args": {"max_batch": 4}, "wait": True}
    sent = client.post("/api/telecommands", json=body, headers=AUTH).json()
    forged = "18" * 40
    r = client.post("/api/telecommands", json={"satellite": name, "packet_hex": forged},
                    headers=AUTH)  # fmt: skip
    assert r.status_code == 403
    history = client.get("/api/telecommands").json()["commands"]
    assert history[0]["command"] == "raw" and history[0]["state"] == "rejected"
    assert history[0]["reason"] == r.json()["error"]["code"]
    assert history[1]["command_id"] == sent["command_id"] == "1:1"
    assert history[1]["state"] in ("queued", "sent", "accepted")
    client.segment.sample_telemetry()  # the twin's housekeeping reports it
    if parse_utc(sent["arrives"]) <= client.segment.clock.now():
        assert client.get("/api/telecommands").json()["commands"][1]["state"] == "accepted"


def test_timeline_and_open_mct_feed(client: Any) -> None:
    tl = client.get("/api/timeline", params={"minutes": 90, "before": 10}).json()
    assert tl["ground"] and tl["isl"] and "requests" in tl
    assert parse_utc(tl["span"]["to"]) - parse_utc(tl["span"]["from"]) == np.timedelta64(
        100 * 60_000, "ms"
    )
    assert client.get("/api/timeline", params={"minutes": 0}).status_code == 400
    d = client.get("/openmct/dictionary").json()
    assert len(d["measurements"]) == 12 * 9
    key = d["measurements"][0]["key"]
    client.segment.sample_telemetry()
    points = client.get(f"/openmct/history/{key}").json()
    assert points and set(points[0]) == {"id", "timestamp", "value"}
    assert [p["timestamp"] for p in points] == sorted(p["timestamp"] for p in points)
    assert client.get("/openmct/history/nope.battery_soc").status_code == 404


def test_timeline_on_a_finite_ground_segment_names_each_passs_antenna() -> None:
    """With antennas (``serve --antennas``) each pass on the timeline is one its station's
    antennas track: within the station's antenna count, and an antenna's passes never
    overlap nor follow each other closer than the handover (the allocation's rule)."""
    from starcompute.mission import views

    stations = load_stations("china,ksat,aws")
    mission = Mission.build(
        load_constellation("three-body-12"), stations, START, 6 * 3600.0, handover_s=60.0
    )
    doc = views.contacts(mission, START, 6 * 3600.0)
    counts = {s.name: s.antennas for s in stations}
    by_antenna: dict[tuple[str, int], list[tuple[np.datetime64, np.datetime64]]] = {}
    for g in doc["ground"]:
        assert 0 <= g["antenna"] < counts[g["station"]]
        by_antenna.setdefault((g["station"], g["antenna"]), []).append(
            (parse_utc(g["aos"]), parse_utc(g["los"]))
        )
    every = Mission.build(load_constellation("three-body-12"), stations, START, 6 * 3600.0)
    assert len(doc["ground"]) < len(views.contacts(every, START, 6 * 3600.0)["ground"])
    for passes in by_antenna.values():
        passes.sort()
        for (_, los), (aos, _) in itertools.pairwise(passes):
            assert aos - los >= np.timedelta64(60_000, "ms")
