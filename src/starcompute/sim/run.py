"""One simulation end to end: scenario -> world -> demand -> plan -> measurements."""

from __future__ import annotations

from starcompute.sim.metrics import SimResult, measure
from starcompute.sim.scenario import Scenario
from starcompute.sim.simulator import simulate_records
from starcompute.sim.workload import check_inputs
from starcompute.sim.world import Progress, scenario_constellation, scenario_stations


def preflight(scenario: Scenario) -> None:
    """Fail fast on a bad constellation, station list or demand file (before any output
    folder is made or heavy work starts)."""
    scenario_constellation(scenario)
    scenario_stations(scenario)
    check_inputs(scenario)


def simulate(scenario: Scenario, progress: Progress | None = None, *, verify: int = 0) -> SimResult:
    """Simulate a scenario; deterministic for its seed. ``verify``: plan that many
    sampled queries again with exact routes (summary ``verify``, see ``sim.verify``)."""
    world, records = simulate_records(scenario, progress, verify=verify)
    if progress is not None:
        progress("measure", 0, 1)
    return measure(world, records)
