"""How mission control picks among the ways a query can be served (one function for the
mission planner and the simulator).

* ``nearest``: the satellite of the first uplink contact serves (the caller narrows the
  candidates to it);
* ``earliest-completion`` (default): the option delivered first;
* ``energy-aware``: like earliest-completion among options in sunlight that would start
  with charge to spare and meet the deadline, falling back to all options if none does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from starcompute.errors import InputError

POLICIES = ("nearest", "earliest-completion", "energy-aware")


class Option(Protocol):
    @property
    def delivered_s(self) -> float: ...


OptionT = TypeVar("OptionT", bound=Option)


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise InputError(f"unknown policy {policy!r}: choose one of {', '.join(POLICIES)}")
    return policy


def choose(
    options: Sequence[OptionT],
    policy: str,
    t0_s: float,
    deadline_s: float,
    thrifty: Callable[[OptionT], bool],
) -> OptionT | None:
    """The option the policy picks; ``thrifty(o)``: o runs in sunlight with charge to
    spare (consulted by ``energy-aware`` only)."""
    if policy == "energy-aware":
        keep = [o for o in options if o.delivered_s - t0_s <= deadline_s and thrifty(o)]
        options = keep or options
    return min(options, key=lambda o: o.delivered_s) if options else None
