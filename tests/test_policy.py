"""Policies are objects in one registry: a policy registered once is run by mission
control (``ask``) and by the simulator alike, with its own pruning bound."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from starcompute import load_constellation, load_stations, parse_utc
from starcompute.errors import InputError
from starcompute.mission.control import Mission
from starcompute.mission.policy import (
    POLICIES,
    Option,
    OptionT,
    Policy,
    get_policy,
    register,
)
from starcompute.mission.service import ask
from starcompute.sim.scenario import load_scenario
from starcompute.sim.simulator import DELIVERED, simulate_records

from fakes import EchoEngine

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
START = parse_utc("2025-11-20T00:00:00Z")
FAVOURITE = 5  # the satellite the toy policy prefers


class Favourite(Policy):
    """A toy policy: satellite FAVOURITE whenever it meets the deadline, however late.
    It may pick a later delivery than the earliest, so it keeps no pruning bound."""

    name = "test-favourite"

    def next_bound_s(self, bound_s: float, option: Option) -> float:
        return math.inf

    def choose(
        self,
        options: Sequence[OptionT],
        t0_s: float,
        deadline_s: float,
        thrifty: Callable[[OptionT], bool],
    ) -> OptionT | None:
        mine = [
            o
            for o in options
            if getattr(o, "sat", None) == FAVOURITE and o.delivered_s - t0_s <= deadline_s
        ]
        return mine[0] if mine else super().choose(options, t0_s, deadline_s, thrifty)


@pytest.fixture
def favourite() -> Iterator[str]:
    register(Favourite())  # the one place it is declared
    yield Favourite.name
    del POLICIES[Favourite.name]


def test_a_registered_policy_runs_in_ask(favourite: str) -> None:
    const = load_constellation("three-body-12")
    mission = Mission.build(const, load_stations("china"), START, 6 * 3600.0)
    at = parse_utc("2025-11-20T00:30:00Z")
    answer = ask(mission, EchoEngine(), "a toy policy", at, policy=favourite)
    assert answer.trace.serving_satellite == const.names[FAVOURITE]
    assert answer.trace.policy == favourite
    other = ask(mission, EchoEngine(), "a toy policy", at)  # earliest-completion
    assert other.trace.delivered <= answer.trace.delivered


def _served_by_favourite(policy: str) -> float:
    sc = load_scenario(EXAMPLES / "three-body-12.toml").with_overrides(
        {
            "duration_h": 6.0,
            "workload.queries_per_day": 480.0,
            "workload.earth_observation.images_per_day": 0.0,
            "scheduler.policy": policy,
        }
    )
    _, rec = simulate_records(sc)
    served = rec.serving_sat[rec.status == DELIVERED]
    assert len(served) > 50
    return float(np.mean(served == FAVOURITE))


def test_a_registered_policy_runs_in_the_simulator(favourite: str) -> None:
    """Through the scenario key scheduler.policy: the favourite serves most queries
    (when it is among the satellites reachable at the step), where earliest-completion
    spreads them over the 12. Had the simulator pruned with "earliest delivery wins"
    instead of the policy's own bound, the favourite's later options would never be seen."""
    mine, earliest = _served_by_favourite(favourite), _served_by_favourite("earliest-completion")
    assert mine > 0.5 > 0.25 > earliest


def test_unknown_policy_names_the_registered_ones(favourite: str) -> None:
    with pytest.raises(InputError, match=r"choose one of .*energy-aware.*test-favourite"):
        get_policy("fastest")
    with pytest.raises(InputError, match="needs a name"):
        register(Policy())


class Unpruned(Policy):
    """Earliest delivery wins, but with no pruning bound: every option is evaluated."""

    name = "test-unpruned"

    def next_bound_s(self, bound_s: float, option: Option) -> float:
        return math.inf


def test_the_simulators_pruning_never_changes_a_choice() -> None:
    """The simulator skips candidates by a lower bound (empty queue, earliest way down
    from then on) and scans in bound order: with queues forming (many queries on 12
    satellites), the records are the same as when every option is evaluated."""
    register(Unpruned())
    try:
        runs = []
        for policy in ("earliest-completion", Unpruned.name):
            sc = load_scenario(EXAMPLES / "three-body-12.toml").with_overrides(
                {"duration_h": 3.0, "workload.queries_per_day": 20000.0, "scheduler.policy": policy}
            )
            runs.append(simulate_records(sc)[1])
    finally:
        del POLICIES[Unpruned.name]
    pruned, full = runs
    assert (pruned.status == DELIVERED).sum() > 500
    assert np.max(pruned.batch_size) > 1  # queries did share batches: queues mattered
    np.testing.assert_array_equal(pruned.status, full.status)
    np.testing.assert_array_equal(pruned.serving_sat, full.serving_sat)
    np.testing.assert_array_equal(pruned.delivered_s, full.delivered_s)
