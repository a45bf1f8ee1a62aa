"""Endpoint identifiers: the BPv7 ``ipn`` scheme (RFC 9171 section 4.2.5.1.2), ``ipn:N.S``.

Node numbers follow the contact plan's node order (satellites, then stations):
node ``FIRST_NODE + i`` is plan node ``i``. Node ``MISSION_CONTROL`` is the ground's
application endpoint: every station delivers bundles for it (the terrestrial network
joins them), so a bundle for the ground may come down at any station.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from starcompute.errors import InputError

MISSION_CONTROL = 1
FIRST_NODE = 100
_EID = re.compile(r"^ipn:(\d{1,19})\.(\d{1,19})$")


class Service(IntEnum):
    """Service numbers (the demultiplexer of an ``ipn`` EID)."""

    NODE = 0  # the node itself (administrative)
    JOB = 1  # queries with their job telecommand, to a satellite
    ANSWER = 2  # answer chunks, to mission control
    TELEMETRY = 3  # housekeeping, to mission control
    COMMAND = 4  # operator telecommands, to a satellite
    MODEL = 5  # parts of a model upload, to a satellite


@dataclass(frozen=True, slots=True, order=True)
class Eid:
    node: int
    service: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.node < 2**64 and 0 <= self.service < 2**64):
            raise InputError(f"ipn node and service numbers are 0..2^64-1, got {self}")

    def __str__(self) -> str:
        return f"ipn:{self.node}.{self.service}"

    @classmethod
    def parse(cls, text: str) -> Eid:
        match = _EID.match(text.strip())
        if not match:
            raise InputError(f"bad endpoint {text!r}: use ipn:NODE.SERVICE, e.g. ipn:101.1")
        return cls(int(match[1]), int(match[2]))

    @property
    def is_ground(self) -> bool:
        return self.node == MISSION_CONTROL


@dataclass(frozen=True, slots=True)
class NodeNames:
    """Names of the network's nodes (the contact plan's order) and their node numbers."""

    names: tuple[str, ...]  # satellites, then stations
    n_satellites: int

    @classmethod
    def of(cls, satellites: Sequence[str], stations: Sequence[str]) -> NodeNames:
        names = (*satellites, *stations)
        if len(set(names)) != len(names):
            raise InputError("node names must be unique across satellites and stations")
        return cls(names, len(satellites))

    def number(self, name: str) -> int:
        try:
            return FIRST_NODE + self.names.index(name)
        except ValueError:
            raise InputError(f"no node {name!r} in the network") from None

    def index(self, node: int) -> int | None:
        """Plan index of an ipn node number (None: not a node of this network)."""
        i = node - FIRST_NODE
        return i if 0 <= i < len(self.names) else None

    def name(self, node: int) -> str:
        if node == MISSION_CONTROL:
            return "mission-control"
        i = self.index(node)
        if i is None:
            raise InputError(f"ipn node {node} is not in the network")
        return self.names[i]

    def eid(self, name: str, service: Service | int = Service.NODE) -> Eid:
        return Eid(self.number(name), int(service))

    def is_station(self, name: str) -> bool:
        return self.names.index(name) >= self.n_satellites

    @property
    def satellites(self) -> tuple[str, ...]:
        return self.names[: self.n_satellites]

    @property
    def stations(self) -> tuple[str, ...]:
        return self.names[self.n_satellites :]
