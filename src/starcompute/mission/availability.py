"""How often can a query be answered within two minutes? Queries issued uniformly over a
period, each planned by mission control (store-and-forward, timing from the performance
model); reported with waiting for passes, and counting only queries that find a path
without any wait."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from starcompute.errors import DeadlineError, InputError
from starcompute.mission.control import Mission

HEADLINE_S = 120.0
SLACK_S = 12 * 3600.0  # plan beyond the last query so late queries can still be delivered


@dataclass(slots=True)
class Availability:
    queries: int
    total_s: np.ndarray  # inf where undeliverable within the plan
    waited: np.ndarray  # bool: the query waited for a pass somewhere

    def summary(self, limit_s: float = HEADLINE_S) -> dict[str, Any]:
        ok = np.isfinite(self.total_s)
        no_wait = ok & ~self.waited

        def pct(x: np.ndarray) -> dict[str, float | None]:
            if len(x) == 0:
                return {"p50": None, "p95": None, "p99": None}
            return {f"p{q}": round(float(np.percentile(x, q)), 2) for q in (50, 95, 99)}

        return {
            "queries": self.queries,
            "within_limit_fraction": round(float(np.mean(self.total_s <= limit_s)), 4),
            "limit_s": limit_s,
            "with_waiting": {
                "answered_fraction": round(float(ok.mean()), 4),
                **pct(self.total_s[ok]),
            },
            "without_waiting": {
                "answered_fraction": round(float(no_wait.mean()), 4),
                **pct(self.total_s[no_wait]),
            },
        }


def availability(
    mission_factory: Any,
    start: np.datetime64,
    hours: float,
    every_s: float,
    station: str | None,
    prompt_tokens: int,
    output_tokens: int,
    query_bytes: int,
    answer_bytes: int,
    progress: bool = False,
) -> Availability:
    """``mission_factory(horizon_s)`` builds the Mission (so the plan covers the slack)."""
    if not (0 < hours <= 24 * 7) or not (1.0 <= every_s <= 86400.0):
        raise InputError("--hours must be within 0..168 and --every within 1..86400 s")
    mission: Mission = mission_factory(hours * 3600.0 + SLACK_S)
    offsets = np.arange(0.0, hours * 3600.0, every_s)
    totals = np.full(len(offsets), np.inf)
    waited = np.zeros(len(offsets), dtype=bool)
    for i in tqdm(range(len(offsets)), desc="queries", disable=not progress, leave=False):
        at = start + np.timedelta64(int(offsets[i] * 1e9), "ns")
        try:
            trace = mission.submit(
                station,
                at,
                prompt_tokens,
                output_tokens,
                query_bytes,
                answer_bytes,
                deadline_s=SLACK_S + hours * 3600.0,
                commit=False,
            )
        except DeadlineError:
            continue
        totals[i] = trace.total_s
        waited[i] = trace.timings_s["wait_for_contact"] > 1e-9
    return Availability(len(offsets), totals, waited)
