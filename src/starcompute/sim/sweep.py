"""Parameter sweeps: every combination of the varied scenario keys, run in parallel on a
Dask cluster (a LocalCluster on 127.0.0.1 unless a scheduler address is given), then one
comparison table and plot.

Each combination is an independent ``simulate`` of the scenario with those keys
overridden, so a sweep's numbers equal running each scenario alone.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starcompute.errors import InputError
from starcompute.sim.scenario import Scenario

METRICS = (
    "requests",
    "completed",
    "rejected",
    "latency_s.p50",
    "latency_s.p95",
    "latency_s.p99",
    "fraction_under_120s",
    "tokens_per_s",
    "energy_per_query_j",
    "satellite_utilization_mean",
    "battery_soc_min",
    "downlink_bytes",
    "isl_bytes",
    "failures.requests_struck",
    "failures.struck_then_delivered",
)


@dataclass(frozen=True, slots=True)
class Vary:
    key: str
    values: tuple[Any, ...]


def parse_vary(text: str) -> Vary:
    """``key=v1,v2,...``; each value is read as TOML (numbers, true/false, ["a","b"]) or,
    failing that, as a bare string."""
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key or not rest.strip():
        raise InputError(
            f"--vary {text!r}: expected key=v1,v2,... (e.g. scheduler.policy=nearest,energy-aware)"
        )
    values = tuple(_value(v.strip()) for v in _split(rest))
    if len(set(map(repr, values))) != len(values):
        raise InputError(f"--vary {text!r}: a value is repeated")
    return Vary(key, values)


def _split(text: str) -> list[str]:
    """Split on commas outside brackets and quotes."""
    parts, depth, quote, cur = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    if any(not p.strip() for p in parts):
        raise InputError(f"--vary values {text!r}: an empty value")
    return parts


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def combinations(base: Scenario, varies: Sequence[Vary]) -> list[tuple[dict[str, Any], Scenario]]:
    """Every combination of the varied values, each validated as a scenario."""
    if not varies:
        raise InputError("sweep needs at least one --vary key=v1,v2,...")
    keys = [v.key for v in varies]
    if len(set(keys)) != len(keys):
        raise InputError(f"--vary names a key twice: {keys}")
    out = []
    for combo in itertools.product(*(v.values for v in varies)):
        overrides = dict(zip(keys, combo, strict=True))
        out.append((overrides, base.with_overrides(overrides)))
    return out


def run_one(scenario: Scenario) -> dict[str, Any]:
    """Simulate one combination and return its summary (what a Dask task runs)."""
    from starcompute.sim.run import simulate

    return simulate(scenario).summary


def flatten(summary: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in METRICS:
        value: Any = summary
        for part in key.split("."):
            value = value[part]
        out[key] = value
    return out


def run_sweep(
    base: Scenario,
    varies: Sequence[Vary],
    scheduler: str | None = None,
    workers: int = 2,
    on_done: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every combination on Dask; rows of varied values + summary, in combination order."""
    combos = combinations(base, varies)
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout="10s")
        else:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                host="127.0.0.1",
                dashboard_address=None,
                processes=True,
            )
            client = Client(cluster)
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
    try:
        futures = [client.submit(run_one, sc, pure=False) for _, sc in combos]
        index = {f.key: i for i, f in enumerate(futures)}
        summaries: list[dict[str, Any] | None] = [None] * len(futures)
        for done, future in enumerate(as_completed(futures), start=1):
            summaries[index[future.key]] = future.result()
            if on_done is not None:
                on_done(done, len(futures))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return [
        {**overrides, **flatten(s)}
        for (overrides, _), s in zip(combos, summaries, strict=True)
        if s is not None
    ]
