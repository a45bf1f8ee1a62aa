"""How mission control picks among the ways a query can be served: policies as objects in
one registry, used alike by mission control (``Mission.submit``) and the simulator.

* ``nearest``: the satellite of the first uplink contact serves (``narrow`` keeps the
  candidate reached straight from a ground station first);
* ``earliest-completion`` (default): the option delivered first;
* ``energy-aware``: like earliest-completion among options in sunlight that would start
  with charge to spare and meet the deadline, falling back to all options if none does.

A policy also carries the bound that lets a planner stop evaluating options early
(``first_bound_s``, ``next_bound_s``): a planner skips any option that would be
delivered at or after the bound, so a policy's bound must never exclude an option it
could pick. The base class's bound ("earliest delivery wins") is right for policies that
pick the earliest delivery; a policy that may prefer a later one overrides it (or keeps
no bound: ``math.inf``). A new policy is one subclass and one :func:`register` call, and
both planners run it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol, TypeVar

from starcompute.errors import InputError

DEFAULT_POLICY = "earliest-completion"


class Option(Protocol):
    @property
    def delivered_s(self) -> float: ...


class Candidate(Protocol):
    """A satellite the query can reach, before its queue, admission and way down."""

    @property
    def up_s(self) -> float: ...  # when (or after how long) the query is on board

    @property
    def direct(self) -> bool: ...  # reached straight from a ground station, no laser hop


OptionT = TypeVar("OptionT", bound=Option)
CandidateT = TypeVar("CandidateT", bound=Candidate)


class Policy:
    """Earliest delivery wins; subclasses change what they need."""

    name: ClassVar[str] = ""

    def narrow(self, candidates: list[CandidateT]) -> list[CandidateT]:
        """The candidates worth evaluating (all, by default)."""
        return candidates

    def first_bound_s(self, t0_s: float, deadline_s: float) -> float:
        """The pruning bound before any option is known."""
        return math.inf

    def next_bound_s(self, bound_s: float, option: Option) -> float:
        """The bound once ``option`` is known: nothing delivered later can win."""
        return min(bound_s, option.delivered_s)

    def choose(
        self,
        options: Sequence[OptionT],
        t0_s: float,
        deadline_s: float,
        thrifty: Callable[[OptionT], bool],
    ) -> OptionT | None:
        """The option picked; ``thrifty(o)``: o runs in sunlight with charge to spare."""
        return min(options, key=lambda o: o.delivered_s) if options else None


class EarliestCompletion(Policy):
    name = "earliest-completion"


class Nearest(Policy):
    name = "nearest"

    def narrow(self, candidates: list[CandidateT]) -> list[CandidateT]:
        direct = [c for c in candidates if c.direct]
        return [min(direct, key=lambda c: c.up_s)] if direct else []


class EnergyAware(Policy):
    name = "energy-aware"

    def first_bound_s(self, t0_s: float, deadline_s: float) -> float:
        return t0_s + deadline_s  # it may prefer a later option, but none past the deadline

    def next_bound_s(self, bound_s: float, option: Option) -> float:
        return bound_s

    def choose(
        self,
        options: Sequence[OptionT],
        t0_s: float,
        deadline_s: float,
        thrifty: Callable[[OptionT], bool],
    ) -> OptionT | None:
        keep = [o for o in options if o.delivered_s - t0_s <= deadline_s and thrifty(o)]
        return super().choose(keep or options, t0_s, deadline_s, thrifty)


POLICIES: dict[str, Policy] = {}  # name -> policy; the CLI and the scenario schema read it


def register(policy: Policy) -> Policy:
    """Make ``policy`` available by its name to every planner, command and scenario."""
    if not policy.name:
        raise InputError("a policy needs a name")
    POLICIES[policy.name] = policy
    return policy


for _policy in (EarliestCompletion(), Nearest(), EnergyAware()):
    register(_policy)


def get_policy(name: str) -> Policy:
    """The registered policy called ``name`` (InputError naming the ones there are)."""
    policy = POLICIES.get(name)
    if policy is None:
        raise InputError(f"unknown policy {name!r}: choose one of {', '.join(POLICIES)}")
    return policy
