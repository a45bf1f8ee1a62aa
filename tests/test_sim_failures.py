"""Failures in the planner's simulator: [[failures]] take satellites, stations and links
out of the routing tables while they last; requests a failure strikes are planned again
and end delivered or explicitly rejected (none lost); bad failures are clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pytest

from starcompute.errors import InputError
from starcompute.sim.scenario import Scenario, load_scenario
from starcompute.sim.simulator import DELIVERED, PARTS, SAT_LOST, STATUS, simulate_records

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LOST = "TB500-P00-S03"


def _scenario(failures: list[dict[str, Any]], **overrides: Any) -> Scenario:
    doc = load_scenario(EXAMPLES / "three-body-12.toml").to_doc()
    doc.update(duration_h=3.0, drain_h=3.0)
    doc["workload"].update(queries_per_day=4000.0, deadline_s=6 * 3600.0)
    doc["workload"]["earth_observation"]["images_per_day"] = 1000.0
    doc["failures"] = failures
    sc = load_scenario(EXAMPLES / "three-body-12.toml")
    from starcompute.sim.scenario import parse_scenario

    return parse_scenario(doc, "test", sc.base_dir).with_overrides(overrides)


@dataclass
class Runs:
    base: Any  # Records without failures
    base_world: Any
    station_at_s: float  # Kashi out for 10 minutes from here (it has a satellite in view)
    world: Any
    rec: Any  # with failures
    lost: str  # the satellite lost for good
    t_fail_s: float
    held: int  # queries it held when it failed (in the fault-free run)


@pytest.fixture(scope="module")
def runs() -> Runs:
    """The satellite lost for good is the one running the fullest batch of the fault-free
    run, in the middle of that batch: the failure surely strikes queries."""
    world0, base = simulate_records(_scenario([]))
    llm = (base.status == DELIVERED) & (base.demand.kind != 1)
    sizes = np.bincount(base.batch[llm], minlength=len(base.batch_size))
    b = int(np.argmax(sizes))
    t_fail = float(base.batch_start_s[b] + base.batch_duration_s[b] / 2)
    lost = str(world0.const.names[int(base.batch_sat[b])])
    tb = world0.tables
    kashi = [s.name for s in world0.stations].index("Kashi")
    in_view = np.flatnonzero((tb.down_station == kashi).any(axis=1))
    station_at = float(in_view[in_view * tb.step_s >= 1800][0] * tb.step_s)
    world, rec = simulate_records(
        _scenario(
            [
                {"kind": "satellite", "target": lost, "at_h": t_fail / 3600, "cause": "lost"},
                {
                    "kind": "station",
                    "target": "Kashi",
                    "at_h": station_at / 3600,
                    "minutes": 10,
                },
                {
                    "kind": "satellite",
                    "target": "TB500-P00-S07",
                    "at_h": 1.5,
                    "minutes": 30,
                    "cause": "battery",
                },
            ]
        )
    )
    return Runs(base, world0, station_at, world, rec, lost, t_fail, int(sizes[b]))


def test_no_request_is_lost_and_struck_ones_are_planned_again(runs: Runs) -> None:
    base, rec = runs.base, runs.rec
    assert len(rec.status) == len(base.status)
    assert (rec.status >= 0).all()  # every request ends with an outcome
    struck = rec.replans > 0
    assert struck.sum() >= runs.held >= 1
    queries = struck & (rec.demand.kind != 1)
    assert (rec.status[queries] == DELIVERED).all()  # a long deadline: all still delivered
    # latency from submission: the parts (time lost included) add up to it
    ok = rec.status == DELIVERED
    total = sum(rec.parts[p] for p in PARTS)
    assert np.allclose(total[ok], rec.delivered_s[ok] - rec.demand.t_s[ok], atol=1e-6)
    assert (rec.parts["failover_s"][queries] > 0).all()
    assert np.bincount(rec.batch[ok], minlength=len(rec.batch_size)).tolist() == (
        rec.batch_size.tolist()
    )
    # every LLM query the fault-free run delivered is still delivered (none lost)
    was = (base.status == DELIVERED) & (base.demand.kind != 1)
    assert (rec.status[was] == DELIVERED).all()
    assert STATUS[SAT_LOST] == "satellite-lost"


def test_a_lost_satellite_serves_nothing_after_it_fails(runs: Runs) -> None:
    world, rec, t_fail = runs.world, runs.rec, runs.t_fail_s
    sat = list(world.const.names).index(runs.lost)
    mine = (rec.serving_sat == sat) & (rec.status == DELIVERED)
    down_departure = rec.delivered_s[mine] - rec.parts["down_s"][mine]
    assert mine.any() and (down_departure < t_fail).all()  # answers left before it failed
    eo = rec.demand.kind == 1
    lost_images = eo & (rec.demand.satellite == sat) & (rec.demand.t_s >= t_fail)
    assert lost_images.any() and (rec.status[lost_images] == SAT_LOST).all()
    served_after = (rec.serving_sat == sat) & (rec.delivered_s - rec.parts["down_s"] >= t_fail)
    assert not served_after.any()


def test_station_outage_is_out_of_the_tables_while_it_lasts(runs: Runs) -> None:
    tb, before = runs.world.tables, runs.base_world.tables
    station = [s.name for s in runs.world.stations].index("Kashi")
    k0 = int(runs.station_at_s // tb.step_s)
    k1 = k0 + int(600 // tb.step_s)
    assert (before.down_station[k0:k1] == station).any()  # in use without the outage
    assert not (tb.down_station[k0:k1] == station).any()
    assert np.isinf(tb.best_up_s[k0:k1, station]).all()


@pytest.mark.parametrize("kind", ["link", "satellite", "station"])
def test_outages_in_the_tables_match_networkx(kind: str) -> None:
    """One snapshot, one outage: the tables' up delays from each station to each
    satellite equal networkx's Dijkstra on the snapshot graph less what is out (a link:
    both directions; a satellite: every edge out of it, so it relays nothing; a station:
    all its edges)."""
    from starcompute import load_constellation, load_stations, parse_utc
    from starcompute.orbits.frames import teme_to_ecef
    from starcompute.orbits.propagate import propagate
    from starcompute.routing.network import Network, snapshot
    from starcompute.routing.steps import build_step_tables

    const = load_constellation("three-body-12")
    start = parse_utc("2026-03-20T00:00:00Z")
    net = Network.build(const, load_stations("china,ksat,aws"), start)
    eph = propagate(const, np.array([start]))
    r = np.transpose(teme_to_ecef(eph.r_teme_km, eph.times), (1, 0, 2))[0]
    graph = snapshot(net, r).graph.tocoo()
    n = net.n_sat
    edges = list(zip(graph.row.tolist(), graph.col.tolist(), graph.data.tolist(), strict=True))
    ground = [(a, b) for a, b, _ in edges if a >= n > b]
    relays = [a for a, b, _ in edges if a < n and b < n]
    out: tuple[int, ...] = {
        "link": ground[0], "satellite": (relays[0],), "station": (ground[0][0],)
    }[kind]  # fmt: skip
    tables = build_step_tables(
        net, start, 60.0, 60.0, [np.ones(n, bool)], k_best=n, outages=[(0.0, np.inf, out)]
    )

    def removed(a: int, b: int) -> bool:
        if kind == "link":
            return {a, b} == set(out)
        return a == out[0] if kind == "satellite" else out[0] in (a, b)

    g = nx.DiGraph()
    g.add_weighted_edges_from((a, b, w) for a, b, w in edges if not removed(a, b))
    compared = 0
    for s in range(len(net.stations)):
        dist = nx.single_source_dijkstra_path_length(g, n + s) if n + s in g else {}
        sats, ups = tables.best_sat[0, s, 0], tables.best_up_s[0, s, 0]
        for j, up in zip(sats.tolist(), ups.tolist(), strict=True):
            if j >= 0:
                assert up == pytest.approx(dist[j], abs=1e-6)  # seconds
                compared += 1
        reachable = {j for j in dist if j < n}
        assert reachable == {j for j in sats.tolist() if j >= 0}
    assert compared >= 10


@pytest.mark.parametrize(
    ("failure", "needle"),
    [
        ({"kind": "satellite", "target": "TB999"}, "unknown node 'TB999'"),
        ({"kind": "station", "target": LOST}, "is not a station"),
        ({"kind": "satellite", "target": "Kashi"}, "is not a satellite"),
        ({"kind": "link", "target": LOST}, "A~B"),
        ({"kind": "meteor", "target": LOST}, "failures[0].kind"),
        ({"kind": "satellite"}, "target is missing"),
        ({"kind": "satellite", "target": LOST, "minutes": -1}, "failures[0].minutes"),
        ({"kind": "satellite", "target": LOST, "when": 1}, "unknown key 'failures[0].when'"),
    ],
)
def test_bad_failures_are_clear_errors(failure: dict[str, Any], needle: str) -> None:
    with pytest.raises(InputError, match=None) as err:
        simulate_records(_scenario([failure], duration_h=0.1))
    assert needle in str(err.value)


def test_cli_runs_failures_and_rejects_bad_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from starcompute.cli.main import main

    text = (EXAMPLES / "three-body-12.toml").read_text() + (
        '\n[[failures]]\nkind = "satellite"\ntarget = "TB500-P00-S01"\nat_h = 0.2\ncause = "lost"\n'
    )
    good = tmp_path / "good.toml"
    good.write_text(text.replace("duration_h = 24.0", "duration_h = 1.0"))
    assert main(["simulate", str(good), "--out", str(tmp_path / "out"), "--no-report",
                 "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    summary = summary.get("summary", summary)
    assert summary["failures"]["outages"][0]["target"] == "TB500-P00-S01"
    assert summary["failures"]["outages"][0]["end"] is None
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace('target = "TB500-P00-S01"', 'target = "TB5"'))
    assert main(["simulate", str(bad), "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "failures[0]" in err[0] and "unknown node 'TB5'" in err[0]
