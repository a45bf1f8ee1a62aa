"""What a simulation measured: the summary, per-request and per-satellite tables, and
series over time (arrivals, deliveries, tokens, utilisation, battery, queries in the
system), from the records of the run and a power-model run under the load it planned.

Definitions (summary.json):
* ``requests``: LLM queries + Earth-observation jobs that arrived; ``completed`` were
  delivered to the ground, ``rejected`` could not be (reasons in ``rejected_by_reason``);
* ``latency_s``: delivered - submitted of completed requests (p50/p95/p99, mean);
  ``fraction_under_120s``: share of *all* requests delivered within 120 s;
* ``tokens_per_s``: tokens generated / hours of arrivals (the drain included in the work);
* ``energy_per_query_j``: accelerator energy at peak power over every batch's run time,
  divided by completed requests; ``satellite_utilization_mean``: busy time / horizon,
  averaged over inference satellites; ``battery_soc_min``: lowest state of charge of any
  satellite in the power model run with the planned load;
* ``downlink_bytes`` / ``uplink_bytes``: bytes over ground links; ``isl_bytes``: bytes
  over laser links (each hop counted);
* ``ground_segment``: antennas per station (or unlimited), the handover, passes in view on
  the grid and passes tracked, and the bytes reserved on them against their capacity
  (rate x duration each way); ``allocations`` (allocations.parquet) has one row per
  tracked pass and direction;
* ``littles_law``: time-average of requests in the system (integrated bin by bin from
  the request table) against arrival rate x mean time in system.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from starcompute.mission.health import profile
from starcompute.sim.simulator import DELIVERED, STATUS, Records
from starcompute.sim.workload import EO
from starcompute.sim.world import World
from starcompute.spacecraft.simulate import simulate_power

FloatArray = npt.NDArray[np.float64]
SERIES_STEP_S = 60.0  # series and the loaded power run use this grid
Columns = dict[str, np.ndarray]


@dataclass(slots=True)
class SimResult:
    """Everything a simulation produces (tables as column dicts of numpy arrays)."""

    name: str
    summary: dict[str, Any]
    requests: Columns  # one row per request
    satellites: Columns  # one row per satellite
    series: Columns  # one row per SERIES_STEP_S
    stations: Columns  # name, lat_deg, lon_deg, uplinks, downlinks
    tracks: Columns  # t_s and subpoints of a few satellites (for the map)
    served: Columns  # per batch: lat_deg, lon_deg under the satellite, queries in it
    allocations: Columns  # per tracked pass and direction: antenna, times, bytes reserved


def measure(world: World, rec: Records) -> SimResult:
    sc, d = world.scenario, rec.demand
    duration_s, horizon_s = sc.duration_s, world.tables.n_steps * world.tables.step_s
    ok = rec.status == DELIVERED
    latency = rec.delivered_s - d.t_s
    busy = _busy_series(world, rec, horizon_s)
    soc, power = _loaded_power(world, busy, horizon_s)
    energy_j = _batch_energy_j(world, rec)
    series = _series(world, rec, busy, soc, horizon_s)
    requests = _request_table(world, rec, latency)
    satellites = _satellite_table(world, rec, busy, energy_j, power)
    summary = _summary(world, rec, ok, latency, energy_j, busy, soc, series, duration_s, horizon_s)
    stations = _station_table(world, rec)
    lat, lon = served_subpoints(world, rec)
    served = {"lat_deg": lat, "lon_deg": lon, "queries": rec.batch_size}
    allocations = _allocation_table(world, rec)
    summary["ground_segment"] = _ground_segment(world, allocations)
    return SimResult(
        str(sc[""]["name"]), summary, requests, satellites, series, stations, _tracks(world),
        served, allocations,
    )  # fmt: skip


def _allocation_table(world: World, rec: Records) -> Columns:
    """One row per tracked pass and direction (up: station to satellite)."""
    p = world.passes
    names = np.array(list(world.const.names), dtype=object)
    stations = np.array([s.name for s in world.stations], dtype=object)

    def both(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, a])

    n = len(p)
    return {
        "station": both(stations[p.station]),
        "antenna": both(world.antenna),
        "satellite": both(names[p.satellite]),
        "direction": np.array(["up"] * n + ["down"] * n, dtype=object),
        "start_s": both(p.aos_s),
        "end_s": both(p.los_s),
        "rate_bps": np.concatenate([p.up_rate_bps, p.rate_bps]),
        "bytes_reserved": np.concatenate([rec.pass_bytes_up, rec.pass_bytes_down]),
        "capacity_bytes": np.concatenate([p.capacity_bytes(up=True), p.capacity_bytes()]),
    }


def _ground_segment(world: World, alloc: Columns) -> dict[str, Any]:
    g = world.scenario["ground"]
    finite = g["antennas"] != "unlimited"
    up = alloc["direction"] == "up"
    cap = alloc["capacity_bytes"]
    fill = np.divide(alloc["bytes_reserved"], cap, out=np.zeros(len(cap)), where=cap > 0)
    return {
        "antennas": {s.name: s.antennas for s in world.stations} if finite else "unlimited",
        "antennas_source": {s.name: s.antennas_source for s in world.stations} if finite else "",
        "handover_s": float(g["handover_s"]) if finite else 0.0,
        "passes_in_view": world.visible_passes,
        "passes_tracked": len(world.passes),
        "approximation": f"passes on the {world.tables.step_s:g} s grid; volume reserved per pass",
        "bytes_reserved_up": int(alloc["bytes_reserved"][up].sum()),
        "bytes_reserved_down": int(alloc["bytes_reserved"][~up].sum()),
        "capacity_bytes_up": int(cap[up].sum()),
        "capacity_bytes_down": int(cap[~up].sum()),
        "max_pass_fill": _r(float(fill.max()) if len(fill) else 0.0),
    }


def _summary(
    world: World,
    rec: Records,
    ok: npt.NDArray[np.bool_],
    latency: FloatArray,
    energy_j: FloatArray,
    busy: FloatArray,
    soc: FloatArray,
    series: Columns,
    duration_s: float,
    horizon_s: float,
) -> dict[str, Any]:
    d = rec.demand
    n, done = len(d), int(ok.sum())
    lat = latency[ok]
    pct = np.percentile(lat, [50, 95, 99]) if done else np.full(3, np.nan)
    tokens = int(d.output_tokens[ok].sum())
    inference = np.array([r == "inference" for r in world.const.roles])
    isl_bytes = (
        np.maximum(rec.up_hops - 1, 0) * d.query_bytes
        + np.maximum(rec.down_hops - 1, 0) * d.answer_bytes
    )
    eo = d.kind == EO
    image_bytes = float(world.scenario["earth_observation"]["image_bytes"])
    mean_w = float(lat.mean()) if done else float("nan")
    in_system = series["in_system"]
    return {
        "scenario": world.scenario[""]["name"],
        "satellites": len(world.const),
        "stations": len(world.stations),
        "duration_h": duration_s / 3600.0,
        "requests": n,
        "completed": done,
        "rejected": n - done,
        "rejected_by_reason": {
            STATUS[s]: int((rec.status == s).sum()) for s in range(1, len(STATUS))
        },
        "latency_s": {"p50": _r(pct[0]), "p95": _r(pct[1]), "p99": _r(pct[2]), "mean": _r(mean_w)},
        "fraction_under_120s": _r(
            float((ok & (latency <= 120.0)).sum() / n) if n else float("nan")
        ),
        "latency_parts_mean_s": {
            p[:-2]: _r(float(v[ok].mean()) if done else 0.0) for p, v in rec.parts.items()
        },
        "tokens_generated": tokens,
        "tokens_per_s": _r(tokens / duration_s),
        "energy_per_query_j": _r(float(energy_j.sum()) / done if done else float("nan")),
        "satellite_utilization_mean": _r(
            float(busy[inference].sum() / (inference.sum() * horizon_s))
        ),
        "battery_soc_min": _r(float(soc.min())),
        "downlink_bytes": int(d.answer_bytes[ok].sum()),
        "uplink_bytes": int(d.query_bytes[ok].sum()),
        "isl_bytes": int(isl_bytes[ok].sum()),
        "batches": len(rec.batch_size),
        "batch_size_mean": _r(float(rec.batch_size.mean()) if len(rec.batch_size) else 0.0),
        "earth_observation": {
            "jobs": int(eo.sum()),
            "completed": int((eo & ok).sum()),
            "raw_image_bytes": int(eo[ok].sum() * image_bytes),
            "downlinked_bytes": int(d.answer_bytes[eo & ok].sum()),
            "downlink_bytes_saved": int(
                (eo & ok).sum() * image_bytes - d.answer_bytes[eo & ok].sum()
            ),
        },
        "littles_law": {
            "in_system_time_average": _r(float(in_system.mean())),
            "arrival_rate_per_s": _r(done / horizon_s),
            "mean_time_in_system_s": _r(mean_w),
        },
        "failures": _failures(world, rec),
        **({"verify": rec.verify} if rec.verify is not None else {}),
    }


def _failures(world: World, rec: Records) -> dict[str, Any]:
    """The scenario's outages and what they did: requests struck and planned again
    (delivered or rejected, none lost), the time they lost."""
    struck = rec.replans > 0
    saved = struck & (rec.status == DELIVERED)
    lost_s = rec.parts["failover_s"][saved]
    return {
        "outages": [f.outage.to_dict() for f in world.failures],
        "requests_struck": int(struck.sum()),
        "struck_then_delivered": int(saved.sum()),
        "failover_mean_s": _r(float(lost_s.mean())) if len(lost_s) else 0.0,
    }


def _r(x: float) -> float:
    """Round for the summary (12 significant digits: stable across platforms' last bits)."""
    return float(f"{x:.12g}")


def _busy_series(world: World, rec: Records, horizon_s: float) -> FloatArray:
    """(N, bins) busy seconds of each satellite in each SERIES_STEP_S bin."""
    n_bins = int(np.ceil(horizon_s / SERIES_STEP_S))
    start = rec.batch_start_s
    busy = interval_seconds(
        start, start + rec.batch_duration_s, rec.batch_sat, len(world.const), n_bins
    )
    return np.minimum(busy, SERIES_STEP_S)


def interval_seconds(
    start_s: FloatArray, end_s: FloatArray, group: npt.NDArray[np.int64], n_groups: int, n_bins: int
) -> FloatArray:
    """(groups, bins): seconds of the intervals [start, end) of each group inside each
    SERIES_STEP_S bin (exact overlaps; intervals past the last bin are cut)."""
    out = np.zeros((n_groups, n_bins))
    edges = np.arange(n_bins + 1) * SERIES_STEP_S
    k0 = np.clip((start_s // SERIES_STEP_S).astype(np.int64), 0, n_bins - 1)
    last = np.maximum(end_s - 1e-9, start_s) // SERIES_STEP_S
    k1 = np.clip(last.astype(np.int64), 0, n_bins - 1)
    for off in range(int((k1 - k0).max()) + 1 if len(k0) else 0):
        k = k0 + off
        live = k <= k1
        k = np.minimum(k, n_bins - 1)
        overlap = np.minimum(end_s, edges[k + 1]) - np.maximum(start_s, edges[k])
        np.add.at(out, (group[live], k[live]), np.maximum(overlap[live], 0.0))
    return out


def _loaded_power(world: World, busy: FloatArray, horizon_s: float) -> tuple[FloatArray, Any]:
    """State of charge (N, bins) with the planned load on top of the background load."""
    sc = world.scenario
    background = float(sc["power"]["background_load"])
    load = np.clip(background + busy / SERIES_STEP_S, 0.0, 1.0)
    chunks: list[FloatArray] = []
    run = simulate_power(
        world.const,
        sc.start,
        horizon_s,
        step_s=SERIES_STEP_S,
        utilisation=load[:, : int(np.floor(horizon_s / SERIES_STEP_S + 1e-9))],
        initial_soc=float(sc["power"]["initial_soc"]),
        sink=lambda t, s, x: chunks.append(x["soc"]),
        with_radiation=False,
    )
    return np.concatenate(chunks, axis=1), run


def _batch_energy_j(world: World, rec: Records) -> FloatArray:
    peak = np.array([profile(h).power.accelerator_peak_w for h in world.hw_names])
    return np.asarray(peak[world.hw_of_sat[rec.batch_sat]] * rec.batch_duration_s)


def _series(
    world: World, rec: Records, busy: FloatArray, soc: FloatArray, horizon_s: float
) -> Columns:
    d = rec.demand
    n_bins = busy.shape[1]
    t = np.arange(n_bins) * SERIES_STEP_S
    ok = rec.status == DELIVERED
    arrivals = np.bincount((d.t_s // SERIES_STEP_S).astype(np.int64), minlength=n_bins)[:n_bins]
    done_bin = (rec.delivered_s[ok] // SERIES_STEP_S).astype(np.int64)
    delivered = np.bincount(done_bin, minlength=n_bins)[:n_bins]
    tokens = np.bincount(done_bin, weights=d.output_tokens[ok], minlength=n_bins)[:n_bins]
    in_system = (
        interval_seconds(
            d.t_s[ok], rec.delivered_s[ok], np.zeros(int(ok.sum()), dtype=np.int64), 1, n_bins
        )[0]
        / SERIES_STEP_S
    )
    inference = np.array([r == "inference" for r in world.const.roles])
    cols = min(soc.shape[1], n_bins)
    soc_min = np.full(n_bins, np.nan)
    soc_mean = np.full(n_bins, np.nan)
    soc_min[:cols], soc_mean[:cols] = soc[:, :cols].min(axis=0), soc[:, :cols].mean(axis=0)
    return {
        "t_s": t,
        "arrivals": arrivals,
        "delivered": delivered,
        "tokens_per_s": tokens / SERIES_STEP_S,
        "in_system": in_system,  # time-average over the bin
        "utilization_mean": busy[inference].mean(axis=0) / SERIES_STEP_S,
        "soc_min": soc_min,
        "soc_mean": soc_mean,
    }


def _request_table(world: World, rec: Records, latency: FloatArray) -> Columns:
    d = rec.demand
    names = [m["name"] for m in world.scenario.models]
    return {
        "submitted_s": d.t_s,
        "kind": np.where(d.kind == EO, "earth-observation", "query"),
        "region": d.region,
        "model": np.array(names, dtype=object)[d.model],
        "prompt_tokens": d.prompt_tokens,
        "output_tokens": d.output_tokens,
        "status": np.array(STATUS, dtype=object)[rec.status],
        "serving_satellite": rec.serving_sat,
        "uplink_station": rec.uplink_station,
        "downlink_station": rec.downlink_station,
        "up_hops": rec.up_hops,
        "down_hops": rec.down_hops,
        "batch": rec.batch,
        "replans": rec.replans,
        "delivered_s": rec.delivered_s,
        "latency_s": latency,
        **{p: np.where(rec.status == DELIVERED, v, np.nan) for p, v in rec.parts.items()},
    }


def _satellite_table(
    world: World, rec: Records, busy: FloatArray, energy_j: FloatArray, power: Any
) -> Columns:
    n = len(world.const)
    ok = rec.status == DELIVERED
    served = np.bincount(rec.serving_sat[ok], minlength=n)
    return {
        "satellite": np.array(world.const.names, dtype=object),
        "shell": np.array(world.const.shells, dtype=object),
        "role": np.array(world.const.roles, dtype=object),
        "hardware": np.array(world.const.hardware, dtype=object),
        "requests_served": served,
        "batches": np.bincount(rec.batch_sat, minlength=n),
        "busy_s": busy.sum(axis=1),
        "utilization": busy.sum(axis=1) / (busy.shape[1] * SERIES_STEP_S),
        "energy_j": np.bincount(rec.batch_sat, weights=energy_j, minlength=n),
        "soc_min": power.soc_min,
        "peak_temp_c": power.peak_temp_c,
    }


def _station_table(world: World, rec: Records) -> Columns:
    n = len(world.stations)
    ok = rec.status == DELIVERED
    up = rec.uplink_station[ok]
    down = rec.downlink_station[ok]
    return {
        "station": np.array([s.name for s in world.stations], dtype=object),
        "lat_deg": np.array([s.lat_deg for s in world.stations]),
        "lon_deg": np.array([s.lon_deg for s in world.stations]),
        "uplinks": np.bincount(up[up >= 0], minlength=n),
        "downlinks": np.bincount(down[down >= 0], minlength=n),
    }


def _tracks(world: World, n_tracks: int = 6) -> Columns:
    """Sub-satellite points of a few satellites over their first ~2 hours (for the map)."""
    tb = world.tables
    n = len(world.const)
    pick = np.unique(np.linspace(0, n - 1, min(n_tracks, n)).astype(np.int64))
    steps = min(tb.n_steps, int(np.ceil(6000.0 / tb.step_s)))
    return {
        "t_s": np.arange(steps) * tb.step_s,
        "satellite": pick,
        "lat_deg": tb.subpoint_deg[:steps, pick, 0].T.astype(np.float64),
        "lon_deg": tb.subpoint_deg[:steps, pick, 1].T.astype(np.float64),
    }


def served_subpoints(world: World, rec: Records) -> tuple[FloatArray, FloatArray]:
    """Latitude and longitude under the serving satellite when each batch started."""
    tb = world.tables
    k = np.clip((rec.batch_start_s // tb.step_s).astype(np.int64), 0, tb.n_steps - 1)
    return (
        tb.subpoint_deg[k, rec.batch_sat, 0].astype(np.float64),
        tb.subpoint_deg[k, rec.batch_sat, 1].astype(np.float64),
    )
