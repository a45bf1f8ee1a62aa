"""Sweeps on Dask: the same numbers as running each scenario alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from starcompute.errors import InputError
from starcompute.sim.scenario import load_scenario
from starcompute.sim.sweep import Vary, combinations, flatten, parse_vary, run_one, run_sweep

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "three-body-12.toml"


def test_sweep_on_a_two_worker_local_cluster_equals_running_each_alone() -> None:
    base = load_scenario(EXAMPLE).with_overrides({"duration_h": 2.0})
    varies = [Vary("scheduler.policy", ("nearest", "earliest-completion")), Vary("seed", (1, 2))]
    rows = run_sweep(base, varies, workers=2)
    assert len(rows) == 4
    for row, (overrides, scenario) in zip(rows, combinations(base, varies), strict=True):
        assert {k: row[k] for k in overrides} == overrides
        alone = flatten(run_one(scenario))
        assert {k: row[k] for k in alone} == alone  # exactly equal, not approximately


def test_parse_vary() -> None:
    v = parse_vary("ground.stations=china,china+ksat")
    assert v == Vary("ground.stations", ("china", "china+ksat"))
    assert parse_vary("scheduler.max_batch=1,8").values == (1, 8)
    assert parse_vary('models[0].placement=["a","b"],all').values == (["a", "b"], "all")
    assert parse_vary("scheduler.admission=true,false").values == (True, False)
    for bad in ("nokey", "=1,2", "seed=", "seed=1,,2", "seed=1,1"):
        with pytest.raises(InputError, match="--vary"):
            parse_vary(bad)


def test_a_bad_combination_fails_before_anything_runs() -> None:
    base = load_scenario(EXAMPLE)
    with pytest.raises(InputError, match=r"scheduler\.max_batch"):
        combinations(base, [Vary("scheduler.max_batch", (8, 0))])
    with pytest.raises(InputError, match="unknown key"):
        combinations(base, [Vary("scheduler.speed", (1, 2))])


def test_sweep_on_an_existing_scheduler() -> None:
    """--scheduler: the sweep runs on a cluster someone else started (here on loopback)."""
    from dask.distributed import LocalCluster

    base = load_scenario(EXAMPLE).with_overrides({"duration_h": 1.0})
    varies = [Vary("scheduler.max_batch", (1, 8))]
    with LocalCluster(
        n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        rows = run_sweep(base, varies, scheduler=cluster.scheduler_address)
    for row, (_, scenario) in zip(rows, combinations(base, varies), strict=True):
        alone = flatten(run_one(scenario))
        assert {k: row[k] for k in alone} == alone
