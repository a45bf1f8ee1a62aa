"""The planning core: how mission control serves one request, whatever finds its routes.

ways up (the route provider's candidates) -> queue slot (``mission.queues``) -> admission
(power and thermal, the caller's ``admits``) -> way down (the provider) -> choice (the
policy, ``mission.policy``) -> booking (the queue slot and the routes' volume). Mission
control (``Mission.submit``: ``ask``, ``demo``, ``availability``, ``serve``, the testbed's
ground segment) and the simulator both plan through :class:`Core`; failover is the
caller's (a request struck by a failure is planned again through the core).

Route providers (``mission.routes``) implement :class:`Routes`: ``ContactRoutes``
(contact graph routing over the contact plan: exact store-and-forward) and
``StepRoutes`` (routing tables on a time grid, for a million requests), each saying what
it approximates (``approximation``).

The scan is exact for any policy: a candidate is evaluated only if a lower bound on its
delivery (its inference on an empty queue, then the provider's earliest arrival down
from then on) beats the policy's bound, in the order of that lower bound, so the first
that cannot beat the bound ends the scan; the policy's bound never excludes an option
it could pick (see ``mission.policy``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from starcompute.mission.policy import Policy
from starcompute.mission.queues import Batch, SatelliteQueue, Slot


class Request(NamedTuple):
    """What planning needs to know of a query or job (seconds from the plan start)."""

    submitted_s: float
    prompt_tokens: int
    output_tokens: int
    query_bytes: float  # up (0: already on board, e.g. an Earth-observation image)
    answer_bytes: float  # down
    full_batch_s: Sequence[float]  # per hardware index: a full batch of this size
    model: int = 0


class Way(NamedTuple):
    """A candidate: ``sat`` has the query on board and can start it at ``ready_s``."""

    sat: int
    ready_s: float
    hops: int  # 0: no uplink (on board already)
    handle: Any  # the provider's (what to book)

    @property
    def direct(self) -> bool:
        """Reached straight from a ground station (no laser hop)."""
        return self.hops == 1

    @property
    def up_s(self) -> float:
        return self.ready_s


class Down(NamedTuple):
    """The answer's way down from the serving satellite."""

    depart_s: float
    delivered_s: float
    station: int
    hops: int
    handle: Any


@dataclass(slots=True)
class Option:
    """One way to serve a request."""

    sat: int
    up: Way
    slot: Slot
    down: Down

    @property
    def delivered_s(self) -> float:
        return self.down.delivered_s

    @property
    def ready_s(self) -> float:
        return self.up.ready_s

    @property
    def end_s(self) -> float:
        return self.slot.start_s + self.slot.inference_s


class Routes(Protocol):
    """Where a planner's ways down come from, and what booking reserves on them."""

    approximation: str

    def arrival_floor_s(self, sat: int, leave_s: float, size_bytes: float) -> float:
        """A lower bound on when ``size_bytes`` leaving ``sat`` at ``leave_s`` is down."""
        ...

    def arrival_floors_s(
        self, sats: list[int], leave_s: list[float], size_bytes: float
    ) -> list[float]:
        """``arrival_floor_s`` for many satellites at once."""
        ...

    def way_down(self, sat: int, leave_s: float, size_bytes: float) -> Down | None: ...

    def book(self, option: Option, query_bytes: float, answer_bytes: float) -> None: ...


OutFn = Callable[[int, float, float], bool]  # is sat known to be out in [a_s, b_s]?


@dataclass(slots=True)
class Core:
    """The planner of one mission: its routes, queues, admission and horizon."""

    routes: Routes
    queue_of: Callable[[int], SatelliteQueue]
    hw_of_sat: Sequence[int]
    admits: Callable[[int, float, float], bool]  # sat, start, inference seconds
    thrifty: Callable[[Option], bool]  # in sunlight with charge to spare
    horizon_s: float
    infinite: bool = False  # no compute limit: every query starts on arrival, takes 0 s
    load: Callable[[int, float, float], None] | None = None  # a new batch: sat, start, s

    def options(
        self,
        req: Request,
        ways: Sequence[Way],
        policy: Policy,
        deadline_s: float,
        out: OutFn | None = None,
    ) -> list[Option]:
        """Every option the policy's bound lets through, in the order evaluated."""
        bound = policy.first_bound_s(req.submitted_s, deadline_s)
        full_s, hw = req.full_batch_s, self.hw_of_sat
        fulls = [full_s[hw[w.sat]] for w in ways]
        floors = self.routes.arrival_floors_s(  # each on an empty queue
            [w.sat for w in ways],
            [w.ready_s + f for w, f in zip(ways, fulls, strict=True)],
            req.answer_bytes,
        )
        scan = [
            (floor, full, way)
            for floor, full, way in zip(floors, fulls, ways, strict=True)
            if floor < bound
        ]
        scan.sort(key=_first)
        found: list[Option] = []
        for floor, full, way in scan:
            if floor >= bound:
                break  # nor can any after it
            option = self._option(req, way, full, bound, out)
            if option is not None:
                found.append(option)
                bound = policy.next_bound_s(bound, option)
        return found

    def _option(
        self, req: Request, way: Way, full: float, bound: float, out: OutFn | None
    ) -> Option | None:
        """Serving on ``way.sat``: None if not admitted, known to be out, with no way down
        in the horizon, or no better than ``bound``."""
        sat, ready = way.sat, way.ready_s
        if self.infinite:
            slot = Slot(ready, 0.0, None)
        else:
            slot = self.queue_of(sat).slot(
                ready, req.prompt_tokens, req.output_tokens, full, req.model
            )
        end = slot.start_s + slot.inference_s
        if end >= self.horizon_s:
            return None
        if self.routes.arrival_floor_s(sat, end, req.answer_bytes) >= bound:
            return None
        if not self.admits(sat, slot.start_s, slot.inference_s):
            return None
        if out is not None and out(sat, ready, end):
            return None
        down = self.routes.way_down(sat, end, req.answer_bytes)
        if down is None or down.delivered_s > self.horizon_s:
            return None
        if out is not None and out(sat, end, down.depart_s):
            return None
        return Option(sat, way, slot, down)

    def choose(
        self,
        req: Request,
        ways: Sequence[Way],
        policy: Policy,
        deadline_s: float,
        out: OutFn | None = None,
    ) -> tuple[Option | None, int]:
        """The option the policy picks (None: none), and how many there were."""
        found = self.options(req, ways, policy, deadline_s, out)
        return policy.choose(found, req.submitted_s, deadline_s, self.thrifty), len(found)

    def book(self, option: Option, req: Request) -> Batch | None:
        """Take the option: its queue slot (None with infinite compute) and its routes; a
        new batch's energy goes to ``load`` (the planned load feeds admission)."""
        self.routes.book(option, req.query_bytes, req.answer_bytes)
        if self.infinite:
            return None
        if option.slot.joins is None and self.load is not None:
            self.load(option.sat, option.slot.start_s, option.slot.inference_s)
        return self.queue_of(option.sat).book(
            option.slot, req.prompt_tokens, req.output_tokens, req.model
        )


def _first(item: tuple[float, float, Way]) -> float:
    return item[0]
