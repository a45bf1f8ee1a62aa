"""The simulator on a finite ground segment: antennas track whole passes, routing uses
only the tracked links, and no pass carries more than rate x duration each way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from starcompute import load_constellation, load_stations, parse_utc
from starcompute.links.contacts import contact_plan
from starcompute.routing.network import Network
from starcompute.routing.steps import grid_passes
from starcompute.sim.scenario import Scenario, load_scenario
from starcompute.sim.simulator import DELIVERED, simulate_records

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
START = parse_utc("2026-01-01T00:00:00Z")


def test_grid_passes_match_the_exact_contact_plan() -> None:
    """Every pass the contact plan finds by root-finding (AOS/LOS to a millisecond) is a
    pass on the 30 s grid with AOS and LOS within one step, and vice versa."""
    const = load_constellation("three-body-12")
    stations = load_stations("china")
    step = 30.0
    grid = grid_passes(Network(const, stations), START, 6 * 3600.0, step)
    exact = contact_plan(const, stations, START, 6 * 3600.0).ground
    exact = exact.select(exact.los_s - exact.aos_s > step)  # shorter ones may fall between
    matched = 0
    for i in range(len(exact)):
        same = (grid.station == exact.station[i]) & (grid.satellite == exact.satellite[i])
        near = same & (np.abs(grid.aos_s - exact.aos_s[i]) <= step)
        assert near.sum() == 1, (i, exact.aos_s[i])
        j = int(np.flatnonzero(near)[0])
        assert abs(grid.los_s[j] - exact.los_s[i]) <= step
        matched += 1
    assert matched > 20
    assert len(grid) <= len(exact) + 12  # the grid adds no passes beyond grazing ones


def _busy(**over: object) -> Scenario:
    """Three-Body over China with links slow enough that passes fill up."""
    values: dict[str, object] = {
        "duration_h": 3.0,
        "workload.queries_per_day": 6000.0,
        "workload.earth_observation.images_per_day": 0.0,
        "links.ground_rate_bps": 4000.0,
        "links.uplink_rate_bps": 1500.0,
        "ground.antennas": "stations",
    }
    values.update(over)
    return load_scenario(EXAMPLES / "three-body-12.toml").with_overrides(values)


@pytest.fixture(scope="module")
def busy_run() -> tuple[object, object]:
    return simulate_records(_busy())


def test_no_pass_carries_more_than_rate_times_duration(busy_run: tuple) -> None:
    world, rec = busy_run
    p = world.passes
    for rate, reserved in ((p.up_rate_bps, rec.pass_bytes_up), (p.rate_bps, rec.pass_bytes_down)):
        capacity = rate * (p.los_s - p.aos_s) / 8.0
        assert np.all(reserved <= capacity * (1 + 1e-9))
        assert np.all(reserved >= -1e-6)
        assert np.max(reserved / capacity) > 0.9  # capacity did bind
    ok = rec.status == DELIVERED
    d = rec.demand
    total = rec.pass_bytes_up.sum() + rec.pass_bytes_down.sum()
    assert total == pytest.approx(float(d.query_bytes[ok].sum() + d.answer_bytes[ok].sum()))


def test_antennas_track_one_satellite_each(busy_run: tuple) -> None:
    """At no instant does a station track more passes than it has antennas, nor one
    antenna two passes (with the handover between them)."""
    world, _ = busy_run
    p, dish = world.passes, world.antenna
    handover = float(world.scenario["ground"]["handover_s"])
    for s, st in enumerate(world.stations):
        mine = np.flatnonzero(p.station == s)
        for t in np.unique(p.aos_s[mine]):
            live = (p.aos_s[mine] <= t) & (t < p.los_s[mine] + handover)
            assert live.sum() <= st.antennas
        for a in np.unique(dish[mine]):
            rows = mine[dish[mine] == a]
            order = np.argsort(p.aos_s[rows])
            gaps = p.aos_s[rows][order][1:] - p.los_s[rows][order][:-1]
            assert np.all(gaps >= handover - 1e-9)


def test_one_antenna_per_station_tracks_fewer_passes(tmp_path: Path) -> None:
    """The China network with one antenna per station against unlimited dishes: Three-Body's
    passes overlap (12 satellites ~8 min apart in one plane), so fewer are tracked and
    queries wait longer for a link."""
    csv = tmp_path / "china-1.csv"
    csv.write_text(
        "name,lat_deg,lon_deg,alt_m,min_elevation_deg,antennas\n"
        + "".join(
            f"{s.name},{s.lat_deg},{s.lon_deg},{s.alt_m},{s.min_elevation_deg},1\n"
            for s in load_stations("china")
        ),
        encoding="utf-8",
    )
    runs = {}
    for mode in ("stations", "unlimited"):
        sc = _busy(
            **{"links.ground_rate_bps": 0.0, "links.uplink_rate_bps": 0.0, "ground.antennas": mode}
        )
        runs[mode] = simulate_records(sc.with_overrides({"ground.stations": str(csv)}))
    (w_one, r_one), (w_all, r_all) = runs["stations"], runs["unlimited"]
    assert len(w_one.passes) < len(w_all.passes) == w_all.visible_passes
    wait_one = r_one.parts["wait_for_contact_s"][r_one.status == DELIVERED].mean()
    wait_all = r_all.parts["wait_for_contact_s"][r_all.status == DELIVERED].mean()
    assert wait_one > wait_all


def test_simulate_writes_allocations(tmp_path: Path) -> None:
    scenario = tmp_path / "busy.toml"
    text = (EXAMPLES / "three-body-12.toml").read_text(encoding="utf-8")
    scenario.write_text(text.replace("duration_h = 24.0", "duration_h = 2.0"), encoding="utf-8")
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "starcompute", "simulate", str(scenario), "--out", str(out),
         "--no-report", "--json"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    table = pq.read_table(out / "allocations.parquet").to_pydict()
    for column in ("station", "antenna", "satellite", "start_s", "end_s", "bytes_reserved",
                   "capacity_bytes"):  # fmt: skip
        assert column in table
    assert len(table["station"]) > 0
    assert np.all(np.array(table["bytes_reserved"]) <= np.array(table["capacity_bytes"]))
    ground = json.loads(run.stdout)["ground_segment"]
    assert ground["passes_tracked"] * 2 == len(table["station"])
    assert ground["antennas"]["Miyun"] == 3


def test_verify_against_exact_routes() -> None:
    """simulate --verify: sampled queries planned again with contact graph routing at the
    same moment, on the same queues: mostly the same satellite, and deliveries within the
    grid step plus the laser acquisition time (the approximation the tables make)."""
    from starcompute.sim.run import simulate

    sc = load_scenario(EXAMPLES / "three-body-12.toml").with_overrides({"duration_h": 4.0})
    v = simulate(sc, verify=120).summary["verify"]
    assert v["requests"] == 120
    assert v["compared"] + v["no_candidates"] == 120
    assert v["both_delivered"] >= 100
    assert v["same_serving_satellite"] >= 0.9
    assert v["bound_s"] == 10.0 + 15.0
    assert v["delivery_delta_s"]["p99"] <= v["bound_s"]
    assert v["delivery_delta_s"]["p50"] <= 1.0
