"""The orbit a training run lives in: which satellites train, when their laser links
connect them (the contact plan), when they must pause (the power model), and how long an
outer synchronisation takes over the links that are up.

Workers are spread evenly over the constellation's training satellites (role
``training``; a constellation with none, such as Three-Body, trains on all of its
satellites). Only the training shells are propagated: the +grid joins satellites of one
shell, so no path between training satellites runs through another shell.

A synchronisation gathers every participant's update at a coordinator over the shortest
(light-time) ISL path and broadcasts the result back: it takes, twice, the longest path
light time plus the participants' payloads serialised at the slowest link of any path.
Hop light times use each window's largest range (an upper bound).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra

from starcompute.errors import InputError, StarcomputeError
from starcompute.links.config import IslConfig
from starcompute.links.contact_plan import IslContacts
from starcompute.links.contacts import contact_plan
from starcompute.mission.health import Health
from starcompute.orbits.constants import SPEED_OF_LIGHT_KM_S
from starcompute.orbits.constellation import Constellation

TRAINING_LOAD = 1.0  # the accelerator runs flat out while training
MIN_HORIZON_S = 3600.0


def training_satellites(const: Constellation) -> list[int]:
    """Indices of the satellites that may train (all of them when none has that role)."""
    chosen = [i for i, r in enumerate(const.roles) if r == "training"]
    return chosen or list(range(len(const)))


def spread(candidates: int, workers: int) -> list[int]:
    """``workers`` positions spread evenly over ``candidates`` (planes and slots mixed)."""
    return [int(k * candidates // workers) for k in range(workers)]


@dataclass(slots=True)
class Sync:
    """One outer synchronisation (or a skipped one: ``participants`` has < 2 workers)."""

    t_s: float  # when it starts (seconds from the run's start)
    duration_s: float
    coordinator: int  # worker index
    participants: list[int]  # worker indices
    payload_bytes: float  # one update


@dataclass(slots=True)
class Orbit:
    """Contact plan and power-model health of the training satellites from ``start``."""

    const: Constellation  # the training satellites only
    workers: list[int]  # index in ``const`` of each worker's satellite
    start: np.datetime64
    isl: IslConfig
    pause_in_eclipse: bool = True
    horizon_s: float = MIN_HORIZON_S
    windows: IslContacts = field(init=False)  # the laser-link windows of the contact plan
    health: Health = field(init=False)

    def __post_init__(self) -> None:
        self._build(self.horizon_s)

    @classmethod
    def for_workers(
        cls,
        const: Constellation,
        workers: int,
        start: np.datetime64,
        horizon_s: float,
        isl: IslConfig | None = None,
        pause_in_eclipse: bool = True,
    ) -> Orbit:
        eligible = training_satellites(const)
        if workers > len(eligible):
            raise InputError(
                f"{workers} workers but {const.name} has {len(eligible)} training satellites: "
                f"choose --workers 1..{len(eligible)}"
            )
        sub = const.select(eligible, name=f"{const.name}/training")
        return cls(
            sub,
            spread(len(eligible), workers),
            start,
            isl or IslConfig.default(),
            pause_in_eclipse,
            max(horizon_s, MIN_HORIZON_S),
        )

    @property
    def names(self) -> list[str]:
        return [self.const.names[i] for i in self.workers]

    def _build(self, horizon_s: float) -> None:
        self.horizon_s = horizon_s
        self.windows = contact_plan(self.const, [], self.start, horizon_s, isl=self.isl).isl
        self.health = Health.simulate(self.const, self.start, horizon_s, TRAINING_LOAD)

    def _cover(self, t_s: float) -> None:
        """Extend the plan (a rebuild from the start: the same result) to cover ``t_s``."""
        if t_s >= self.horizon_s:
            self._build(max(2.0 * self.horizon_s, t_s + MIN_HORIZON_S))

    def cover(self, horizon_s: float) -> None:
        """Build the plan out to ``horizon_s`` (a resumed run rebuilds what it had)."""
        if horizon_s > self.horizon_s:
            self._build(horizon_s)

    # --- pauses (power model) ------------------------------------------------------
    def next_active_s(self, worker: int, t_s: float) -> float:
        """The first time >= ``t_s`` at which the worker's satellite may compute."""
        sat, step = self.workers[worker], self.health.step_s
        while True:
            self._cover(t_s)
            if self.health.can_run(sat, t_s, self.pause_in_eclipse):
                return float(t_s)
            t_s = float((np.floor(t_s / step) + 1.0) * step)

    # --- links (contact plan) -------------------------------------------------------
    def _graph(self, t_s: float) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        self._cover(t_s)
        isl, n = self.windows, len(self.const)
        up = (isl.start_s <= t_s) & (t_s < isl.end_s)
        a, b = isl.a[up], isl.b[up]
        light_s = isl.max_range_km[up] / SPEED_OF_LIGHT_KM_S
        shape = (n, n)
        light = sp.csr_matrix((np.r_[light_s, light_s], (np.r_[a, b], np.r_[b, a])), shape=shape)
        rate = sp.csr_matrix(
            (np.r_[isl.rate_bps[up], isl.rate_bps[up]], (np.r_[a, b], np.r_[b, a])), shape=shape
        )
        return light, rate

    def component(self, t_s: float, members: list[int]) -> tuple[int, list[int]]:
        """The coordinator and the members it reaches at ``t_s``: the largest group of
        mutually reachable members (ties: the one holding the lowest worker index)."""
        light, _ = self._graph(t_s)
        _, label = connected_components(light, directed=False)
        groups: dict[int, list[int]] = {}
        for w in members:
            groups.setdefault(int(label[self.workers[w]]), []).append(w)
        best = max(groups.values(), key=lambda g: (len(g), -min(g)))
        return min(best), sorted(best)

    def connected(self, t_s: float, members: list[int]) -> bool:
        return len(self.component(t_s, members)[1]) == len(members)

    def next_connected_s(self, t_s: float, members: list[int], limit_s: float) -> float | None:
        """The first time in [t_s, t_s + limit_s] at which every member reaches every
        other one (connectivity only grows when a window opens), or None."""
        end_s = t_s + limit_s
        self._cover(end_s)
        starts = self.windows.start_s
        while not self.connected(t_s, members):
            later = starts[(starts > t_s) & (starts <= end_s)]
            if later.size == 0:
                return None
            t_s = float(later.min())
        return float(t_s)

    def sync_duration_s(
        self, t_s: float, coordinator: int, members: list[int], payload: float
    ) -> float:
        """Gather at the coordinator and broadcast back over the shortest-light paths."""
        others = [w for w in members if w != coordinator]
        if not others:
            return 0.0
        light, rate = self._graph(t_s)
        src = self.workers[coordinator]
        dist, pred = dijkstra(light, directed=False, indices=src, return_predecessors=True)
        worst_light, slowest_bps = 0.0, np.inf
        for w in others:
            node = self.workers[w]
            if not np.isfinite(dist[node]):
                raise StarcomputeError(
                    f"worker {w} is not reachable from worker {coordinator} at {t_s} s"
                )
            worst_light = max(worst_light, float(dist[node]))
            while node != src:
                prev = int(pred[node])
                slowest_bps = min(slowest_bps, float(rate[prev, node]))
                node = prev
        return 2.0 * (worst_light + len(others) * payload * 8.0 / slowest_bps)
