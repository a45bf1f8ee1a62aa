"""Demand: when and where queries arrive, how long they are, which model they ask for;
and the Earth-observation jobs that start in orbit.

Queries come from user regions (cities) in proportion to population, at a rate that
follows a diurnal curve of *local* solar time (hour = UTC + longitude / 15): a
non-homogeneous Poisson process, drawn per region per minute. Prompt and answer lengths
are log-normal (median, sigma, clipped to a maximum) or sampled from a CSV trace; each
query asks for a model drawn by the scenario's shares.

An Earth-observation job is an image captured by an inference satellite holding the EO
model, analysed on board; only the answer goes down (the image would have needed
``image_bytes`` of downlink).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from starcompute.data import preset_names, read_preset_or_file
from starcompute.errors import InputError
from starcompute.mission.traffic import answer_bytes_for, query_bytes_for
from starcompute.sim.scenario import Scenario
from starcompute.times import FloatArray

IntArray = npt.NDArray[np.int64]
BIN_S = 60.0  # arrivals are drawn per region per minute
QUERY, EO = 0, 1


@dataclass(slots=True)
class Regions:
    names: list[str]
    lat_deg: FloatArray
    lon_deg: FloatArray
    population: FloatArray


@dataclass(slots=True)
class Demand:
    """Every request of a run, in arrival order (one row per request)."""

    t_s: FloatArray  # seconds from the scenario start
    kind: IntArray  # QUERY or EO
    region: IntArray  # user region of a query (-1 for EO)
    satellite: IntArray  # capturing satellite of an EO job (-1 for a query)
    model: IntArray  # index into the scenario's models
    prompt_tokens: IntArray
    output_tokens: IntArray
    query_bytes: FloatArray
    answer_bytes: FloatArray

    def __len__(self) -> int:
        return len(self.t_s)


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(
        csv.DictReader(
            io.StringIO("".join(line for line in text.splitlines(True) if not line.startswith("#")))
        )
    )


def load_regions(spec: str) -> Regions:
    """A demand preset (``top-100``) or a CSV with name,lat_deg,lon_deg,population."""
    rows = _csv_rows(read_preset_or_file("demand", ".csv", spec, "demand regions"))
    try:
        lat = np.array([float(r["lat_deg"]) for r in rows])
        lon = np.array([float(r["lon_deg"]) for r in rows])
        pop = np.array([float(r["population"]) for r in rows])
        names = [r["name"] for r in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"regions {spec}: need columns name,lat_deg,lon_deg,population ({exc})"
        ) from None
    if not np.all(np.isfinite(lat) & np.isfinite(lon) & np.isfinite(pop)):
        raise InputError(
            f"regions {spec}: latitude, longitude and population must be finite numbers"
        )
    if not rows or not (np.all(pop >= 0) and pop.sum() > 0):
        raise InputError(f"regions {spec}: needs at least one row and a positive total population")
    if np.any(np.abs(lat) > 90) or np.any(np.abs(lon) > 180):
        raise InputError(f"regions {spec}: latitudes must be within +-90 and longitudes +-180 deg")
    return Regions(names, lat, lon, pop)


def load_diurnal(spec: str | list[float]) -> FloatArray:
    """24 relative rates by local hour, normalised to a mean of 1."""
    if isinstance(spec, list):
        values = spec
    else:
        rows = _csv_rows(read_preset_or_file("diurnal", ".csv", spec, "diurnal curve"))
        try:
            values = [float(r["relative_rate"]) for r in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"diurnal {spec}: need a numeric column relative_rate ({exc})"
            ) from None
    try:
        curve = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"diurnal curve must be 24 numbers, got {values!r}") from None
    if curve.shape != (24,) or not np.all(np.isfinite(curve) & (curve >= 0)) or curve.sum() <= 0:
        raise InputError(
            f"diurnal curve must be 24 non-negative numbers with a positive sum, got {values!r}"
        )
    return np.asarray(curve / curve.mean())


def generate(scenario: Scenario, eo_satellites: IntArray, rng: np.random.Generator) -> Demand:
    """All queries and EO jobs of the scenario's arrival window, in arrival order."""
    parts = [_queries(scenario, rng)]
    eo = _eo_jobs(scenario, eo_satellites, rng)
    if eo is not None:
        parts.append(eo)
    fields = Demand.__slots__
    merged = {f: np.concatenate([getattr(p, f) for p in parts]) for f in fields}
    order = np.argsort(merged["t_s"], kind="stable")
    return Demand(**{f: merged[f][order] for f in fields})


def scenario_regions(scenario: Scenario) -> Regions:
    """The scenario's user regions (a preset, or a CSV relative to the scenario file)."""
    return load_regions(
        scenario.spec(str(scenario["workload"]["regions"]), preset_names("demand", ".csv"))
    )


def scenario_diurnal(scenario: Scenario) -> FloatArray:
    """The scenario's diurnal curve (24 numbers, a preset, or a CSV next to it)."""
    spec = scenario["workload"]["diurnal"]
    if isinstance(spec, str):
        spec = scenario.spec(spec, preset_names("diurnal", ".csv"))
    return load_diurnal(spec)


def check_inputs(scenario: Scenario) -> None:
    """Read the demand's files now, so that a bad one fails before any heavy work."""
    scenario_regions(scenario)
    scenario_diurnal(scenario)
    if scenario["workload"]["trace"]:
        _read_trace(scenario)


def _queries(scenario: Scenario, rng: np.random.Generator) -> Demand:
    w = scenario["workload"]
    regions = scenario_regions(scenario)
    curve = scenario_diurnal(scenario)
    n_bins = int(np.ceil(scenario.duration_s / BIN_S))
    t_bin = np.arange(n_bins) * BIN_S
    utc_h = (scenario.start - scenario.start.astype("datetime64[D]")) / np.timedelta64(1, "h")
    local_h = (float(utc_h) + t_bin[None, :] / 3600.0 + regions.lon_deg[:, None] / 15.0) % 24.0
    rate = np.interp(local_h, np.arange(25.0), np.r_[curve, curve[0]])  # piecewise linear
    weight = regions.population / regions.population.sum()
    width = np.minimum(BIN_S, scenario.duration_s - t_bin)  # the last bin may be short
    expected = float(w["queries_per_day"]) / 86400.0 * weight[:, None] * rate * width[None, :]
    counts = rng.poisson(expected)
    region, b = np.nonzero(counts)
    reps = counts[region, b]
    region, b = np.repeat(region, reps), np.repeat(b, reps)
    t_s = t_bin[b] + rng.random(len(b)) * width[b]
    n = len(t_s)
    models = scenario.models
    model = rng.choice(len(models), size=n, p=np.array([m["share"] for m in models]))
    prompt, output = _lengths(scenario, n, rng)
    per_token = float(w["bytes_per_token"])
    return Demand(
        t_s,
        np.full(n, QUERY),
        region.astype(np.int64),
        np.full(n, -1),
        model.astype(np.int64),
        prompt,
        output,
        query_bytes_for(prompt, per_token),
        answer_bytes_for(output),
    )


def _lengths(scenario: Scenario, n: int, rng: np.random.Generator) -> tuple[IntArray, IntArray]:
    w = scenario["workload"]
    if w["trace"]:
        p, o = _read_trace(scenario)
        pick = rng.integers(0, len(p), size=n)
        return p[pick], o[pick]
    return _lognormal(w["prompt_tokens"], n, rng), _lognormal(w["output_tokens"], n, rng)


def _read_trace(scenario: Scenario) -> tuple[IntArray, IntArray]:
    path = scenario.path(str(scenario["workload"]["trace"]))
    if not path.is_file():
        raise InputError(f"workload.trace: file not found: {path}")
    try:
        rows = _csv_rows(path.read_text(encoding="utf-8"))
        p = np.array([int(r["prompt_tokens"]) for r in rows], dtype=np.int64)
        o = np.array([int(r["output_tokens"]) for r in rows], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"workload.trace {path}: need integer columns prompt_tokens,output_tokens ({exc})"
        ) from None
    if not len(p) or p.min() < 1 or o.min() < 1:
        raise InputError(f"workload.trace {path}: needs rows with token counts >= 1")
    return p, o


def _lognormal(spec: dict[str, float], n: int, rng: np.random.Generator) -> IntArray:
    draw = np.exp(np.log(spec["median"]) + spec["sigma"] * rng.standard_normal(n))
    return np.asarray(np.clip(np.rint(draw), 1, spec["max"]), dtype=np.int64)


def _eo_jobs(scenario: Scenario, satellites: IntArray, rng: np.random.Generator) -> Demand | None:
    eo = scenario["earth_observation"]
    expected = float(eo["images_per_day"]) * scenario.duration_s / 86400.0
    if expected <= 0:
        return None
    if not len(satellites):
        raise InputError("workload.earth_observation: no inference satellite holds the EO model")
    n = int(rng.poisson(expected))
    names = [m["name"] for m in scenario.models]
    model = names.index(eo["model"]) if eo["model"] else 0
    return Demand(
        rng.random(n) * scenario.duration_s,
        np.full(n, EO),
        np.full(n, -1),
        satellites[rng.integers(0, len(satellites), size=n)].astype(np.int64),
        np.full(n, model),
        np.full(n, int(eo["prompt_tokens"])),
        np.full(n, int(eo["output_tokens"])),
        np.zeros(n),
        np.full(n, float(eo["answer_bytes"])),
    )
