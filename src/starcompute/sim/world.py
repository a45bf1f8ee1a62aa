"""The world of a scenario, built once: constellation, stations, network, the ground
segment's passes and the antennas that track them, routing tables on the time grid,
satellite health for admission, and the performance model of every (model, hardware)
pair.

The ground segment (``[ground] antennas``): with ``stations`` each station has the
antennas its preset or CSV gives (``GroundStation.antennas``), each tracking one
satellite at a time with ``handover_s`` between passes; the passes they track are chosen
by ``links.antennas.allocate`` (greatest volume, exact) from every pass on the time grid,
and only those links exist in the routing tables. With ``unlimited`` every pass in view
is a link (one dish per satellite in view). Either way a pass carries at most rate x
duration each way: the planner reserves what it sends on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from starcompute.compute.cards import load_card
from starcompute.compute.perf import ComputeTarget, PerformanceModel
from starcompute.errors import InputError
from starcompute.ground.stations import GroundStation, load_stations, station_presets
from starcompute.links.antennas import allocate
from starcompute.links.config import IslConfig
from starcompute.links.contact_plan import GroundContacts
from starcompute.mission.failures import Outage
from starcompute.mission.health import Health, profile
from starcompute.orbits.constellation import (
    Constellation,
    constellation_from_doc,
    constellation_presets,
    load_constellation,
)
from starcompute.routing.network import Network, lookup_node
from starcompute.routing.steps import (
    StepTables,
    attach_passes,
    build_step_tables,
    grid_passes,
    grid_steps,
    join_step_tables,
)
from starcompute.sim.scenario import Scenario
from starcompute.times import from_offsets, offsets_s

BoolArray = npt.NDArray[np.bool_]
Progress = Callable[[str, int, int], None]  # (stage, advance, total)
EARTH_RADIUS_KM = 6371.0


@dataclass(slots=True)
class World:
    scenario: Scenario
    const: Constellation
    stations: list[GroundStation]
    net: Network
    holders: BoolArray  # (models, N): inference satellites holding each model
    tables: StepTables
    health: Health | None
    hw_names: list[str]  # distinct hardware profiles
    hw_of_sat: npt.NDArray[np.int64]
    perf: list[list[PerformanceModel]]  # [model][hardware]
    failures: list[Failure] = dataclasses.field(default_factory=list)
    passes: GroundContacts = dataclasses.field(default_factory=GroundContacts.empty)  # tracked
    antenna: npt.NDArray[np.int64] = dataclasses.field(  # of each tracked pass (-1: unlimited)
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )
    visible_passes: int = 0  # passes in view on the grid, tracked or not


@dataclass(frozen=True, slots=True)
class Failure:
    """A scenario's outage: what and when (UTC), and as the network's node indices and
    seconds from the start (``end_s`` inf: for good)."""

    outage: Outage
    nodes: tuple[int, ...]
    start_s: float
    end_s: float

    def down(self, a_s: float, b_s: float) -> bool:
        """Is it out at any time in [a_s, b_s]?"""
        return self.start_s <= b_s and a_s < self.end_s


def scenario_failures(
    scenario: Scenario, const: Constellation, stations: list[GroundStation]
) -> list[Failure]:
    """The [[failures]] of a scenario, their targets checked against its world."""
    names = list(const.names) + [s.name for s in stations]
    out = []
    for i, f in enumerate(scenario.failures):
        where = f"{scenario.source}: failures[{i}]"
        start = from_offsets(scenario.start, [float(f["at_h"]) * 3600.0])[0]
        try:
            outage = Outage.lasting(f["kind"], f["target"], start, f["minutes"] or None, f["cause"])
            nodes = tuple(lookup_node(names, n) for n in outage.nodes)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        if f["kind"] != "link" and (nodes[0] < len(const)) != (f["kind"] == "satellite"):
            raise InputError(f"{where}: {f['target']!r} is not a {f['kind']}")
        start_s = float(offsets_s(outage.start, scenario.start))
        end_s = np.inf if outage.end is None else float(offsets_s(outage.end, scenario.start))
        out.append(Failure(outage, nodes, start_s, end_s))
    return out


def build_world(
    scenario: Scenario, progress: Progress | None = None, parallel: bool = True
) -> World:
    """Everything the planner needs; with ``parallel`` a second process computes the
    satellites' health and the second half of the routing tables (large scenarios)."""
    const = scenario_constellation(scenario)
    stations = scenario_stations(scenario)
    net = Network.build(const, stations, scenario.start, **_link_options(scenario))
    holders = np.array([_placement(const, m) for m in scenario.models])
    failures = scenario_failures(scenario, const, stations)
    n_steps = grid_steps(scenario.horizon_s, float(scenario[""]["step_s"]))
    split = n_steps // 2 if parallel and _worth_a_process(len(const), n_steps) else n_steps
    if progress is not None:
        progress("passes", 0, 1)
    seen = grid_passes(net, scenario.start, scenario.horizon_s, float(scenario[""]["step_s"]))
    passes, antenna = ground_segment(scenario, stations, seen)
    with _helper_process(split < n_steps) as pool:
        second = pool.submit(_second_half, scenario, split, passes) if pool is not None else None
        if progress is not None:
            progress("routing", 0, split)
        tables = _tables(scenario, net, holders, range(split), progress, failures, passes)
        if second is not None:
            rest, health = second.result()
            tables = join_step_tables([tables, rest])
        else:
            health = _health(scenario, const, progress)
    tables = attach_passes(tables, passes)
    hw_names = list(dict.fromkeys(const.hardware))
    hw_of_sat = np.array([hw_names.index(h) for h in const.hardware])
    perf = [
        [
            PerformanceModel(
                load_card(m["name"]), ComputeTarget.from_profile(profile(h)), m["quant"]
            )
            for h in hw_names
        ]
        for m in scenario.models
    ]
    return World(
        scenario, const, stations, net, holders, tables, health, hw_names, hw_of_sat, perf,
        failures, passes, antenna, len(seen),
    )  # fmt: skip


def ground_segment(
    scenario: Scenario, stations: list[GroundStation], seen: GroundContacts
) -> tuple[GroundContacts, npt.NDArray[np.int64]]:
    """The passes the ground segment tracks, and the antenna of each (-1: unlimited)."""
    g = scenario["ground"]
    if g["antennas"] == "unlimited":
        return seen, np.full(len(seen), -1, dtype=np.int64)
    return allocate(seen, [s.antennas for s in stations], float(g["handover_s"]))


def _worth_a_process(n_sat: int, n_steps: int) -> bool:
    """Starting a process costs ~1-2 s: only for big tables, and never inside a daemon
    (a Dask worker), which may not have children."""
    return n_sat * n_steps >= 500_000 and not multiprocessing.current_process().daemon


@contextlib.contextmanager
def _helper_process(wanted: bool) -> Iterator[ProcessPoolExecutor | None]:
    if not wanted:
        yield None
        return
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _second_half(
    scenario: Scenario, split: int, passes: GroundContacts
) -> tuple[StepTables, Health | None]:
    """In the helper process: the health run, then the routing steps from ``split`` on."""
    const = scenario_constellation(scenario)
    stations = scenario_stations(scenario)
    net = Network.build(const, stations, scenario.start, **_link_options(scenario))
    holders = np.array([_placement(const, m) for m in scenario.models])
    health = _health(scenario, const, None)
    n_steps = grid_steps(scenario.horizon_s, float(scenario[""]["step_s"]))
    failures = scenario_failures(scenario, const, stations)
    return _tables(scenario, net, holders, range(split, n_steps), None, failures, passes), health


def _tables(
    scenario: Scenario, net: Network, holders: BoolArray, steps: range,
    progress: Progress | None, failures: list[Failure], passes: GroundContacts,
) -> StepTables:  # fmt: skip
    def tick(advance: int) -> None:
        if progress is not None:
            progress("routing", advance, len(steps))

    return build_step_tables(
        net,
        scenario.start,
        scenario.horizon_s,
        float(scenario[""]["step_s"]),
        list(holders),
        int(scenario["scheduler"]["candidates"]),
        tick,
        steps,
        [(f.start_s, f.end_s, f.nodes) for f in failures],
        passes,
    )


def _health(scenario: Scenario, const: Constellation, progress: Progress | None) -> Health | None:
    if not scenario["scheduler"]["admission"] or scenario["compute"]["infinite"]:
        return None
    if progress is not None:
        progress("health", 0, 1)
    load = float(scenario["power"]["background_load"])
    return Health.simulate(const, scenario.start, scenario.horizon_s, load)


def scenario_constellation(scenario: Scenario) -> Constellation:
    c = scenario["constellation"]
    if c["shell"]:
        doc = {"name": scenario[""]["name"], "epoch": scenario[""]["start"], "shell": c["shell"]}
        const = constellation_from_doc(doc, None, str(scenario[""]["name"]), "constellation.shell")
    elif c["file"]:
        const = load_constellation(scenario.path(str(c["file"])))
    else:
        preset = str(c["preset"])
        const = load_constellation(
            preset if preset in constellation_presets() else scenario.path(preset)
        )
    return _override_per_shell(const, c["roles"], c["hardware"])


def _override_per_shell(
    const: Constellation, roles: dict[str, Any], hardware: dict[str, Any]
) -> Constellation:
    shells = set(const.shells)
    for key, table in (("roles", roles), ("hardware", hardware)):
        for shell, value in table.items():
            if shell not in shells:
                raise InputError(
                    f"constellation.{key}: no shell {shell!r} (shells: {', '.join(sorted(shells))})"
                )
            if key == "roles" and value not in ("inference", "training"):
                raise InputError(
                    f"constellation.roles.{shell} = {value!r}: expected inference or training"
                )
            if key == "hardware":
                profile(str(value))  # fail early on an unknown profile
    new_roles = [str(roles.get(s, r)) for s, r in zip(const.shells, const.roles, strict=True)]
    new_hw = [str(hardware.get(s, h)) for s, h in zip(const.shells, const.hardware, strict=True)]
    return dataclasses.replace(const, roles=new_roles, hardware=new_hw, _array=None)


def scenario_stations(scenario: Scenario) -> list[GroundStation]:
    g = scenario["ground"]
    elevation = float(g["min_elevation_deg"])
    spec = scenario.spec(str(g["stations"]), station_presets())
    return load_stations(spec, None if elevation < 0 else elevation)


def _link_options(scenario: Scenario) -> dict[str, Any]:
    links = scenario["links"]
    isl: dict[str, Any] = {}
    if links["isl_max_range_km"] > 0:
        isl["max_range_km"] = float(links["isl_max_range_km"])
    if links["isl_rate_bps"] > 0:
        isl["rate_bps"] = float(links["isl_rate_bps"])
    if links["isl_terminals"] >= 0:
        isl["terminals"] = int(links["isl_terminals"])
    options: dict[str, Any] = {"isl": IslConfig.default(**isl)}
    if links["processing_delay_s"] >= 0:
        options["processing_delay_s"] = float(links["processing_delay_s"])
    if links["ground_rate_bps"] > 0:
        options["ground_rate_bps"] = float(links["ground_rate_bps"])
    if links["uplink_rate_bps"] > 0:
        options["uplink_rate_bps"] = float(links["uplink_rate_bps"])
    return options


def _placement(const: Constellation, model: dict[str, Any]) -> BoolArray:
    inference = np.array([r == "inference" for r in const.roles])
    where = model["placement"]
    if where == "all":
        return inference
    shells = [where] if isinstance(where, str) else list(where)
    unknown = sorted(set(shells) - set(const.shells))
    if unknown:
        known = ", ".join(sorted(set(const.shells)))
        raise InputError(f"models placement {unknown} names no shell (shells: {known})")
    mask = inference & np.isin(np.array(const.shells), shells)
    if not mask.any():
        raise InputError(f"model {model['name']}: placement {shells} holds no inference satellite")
    return mask


def great_circle_km(
    lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike, lon2: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Haversine distance on a sphere of the Earth's mean radius."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat, dlon = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))
