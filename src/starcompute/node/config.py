"""A node's identity and settings, and the layout of its data directory.

::

    DATA/
      node.toml          who it is: satellite, role, clock, addresses, pace, telemetry period
      contact-plan.json  the contact plan it was given (its routing knows nothing else)
      keys.json          its telecommand key as provisioned (SDLS-style, per satellite)
      model/             its weights (config.json, tokenizer, model.safetensors)
      uploads/DIGEST/    a model upload's parts as they arrive (node.uploads)
      node.sqlite        bundle store (custody), jobs, counters, key and anti-replay state
      clock.json         the clock's epoch, written by the testbed once every process is up
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from starcompute.compute.backends import BACKENDS
from starcompute.compute.cards import load_card
from starcompute.errors import InputError
from starcompute.node.pace import PACES
from starcompute.times import OrbitClock, format_utc, parse_utc
from starcompute.tomlio import dumps, read

ROLES = ("inference", "training", "relay")
CONFIG = "node.toml"
PLAN = "contact-plan.json"
KEYS = "keys.json"
MODEL = "model"
DB = "node.sqlite"
CLOCK = "clock.json"  # when the testbed's orbit clock started (epoch 0 in node.toml)


def parse_address(text: str, what: str) -> tuple[str, int]:
    """``host:port`` (loopback by default in tests) -> (host, port)."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(f"{what} must be HOST:PORT with a port within 0..65535, got {text!r}")
    return host.strip("[]"), int(port)


@dataclass(slots=True)
class NodeConfig:
    name: str  # the satellite (or station) this node is
    constellation: str  # preset or file: its own orbit and hardware come from here
    listen: str  # host:port of its bundle agent
    emulator: str  # host:port of the link emulator (its radio)
    start: str  # the orbit clock: ISO-8601 UTC at the epoch
    epoch_unix_s: float
    time_scale: float = 1.0
    role: str = "inference"
    timing_card: str = "qwen3-8b"
    quant: str = "int8"
    backend: str = "transformers"  # compute.backends: transformers | llamacpp (a .gguf in model/)
    pace: str = "hardware"
    telemetry_s: float = 300.0  # orbit seconds between housekeeping bundles
    max_batch: int = 8
    max_tokens: int = 0  # the most tokens one job may generate here (0: the query's own)
    chunk_tokens: int = 8
    threads: int = 1
    seu_protect: bool = False  # scrub the weights around every batch (ProtectedEngine)
    dual: bool = False  # with seu_protect: run every batch twice, release it if both agree
    seu_acceleration: float = 1.0

    def __post_init__(self) -> None:
        parse_address(self.listen, "listen")
        parse_address(self.emulator, "emulator")
        parse_utc(self.start)
        if self.role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if self.backend not in BACKENDS:
            raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        load_card(self.timing_card)  # InputError naming the cards there are
        if self.pace not in PACES:
            raise InputError(f"pace must be one of {', '.join(PACES)}, got {self.pace!r}")
        if self.dual and not self.seu_protect:
            raise InputError("dual needs seu_protect (it runs the protected batches twice)")
        checks = {
            "time_scale": self.time_scale > 0,
            "telemetry_s": self.telemetry_s > 0,
            "max_batch": self.max_batch >= 1,
            "max_tokens": self.max_tokens >= 0,
            "chunk_tokens": 1 <= self.chunk_tokens <= 4096,
            "threads": self.threads >= 1,
            "seu_acceleration": self.seu_acceleration > 0,
        }
        for key, ok in checks.items():
            if not ok or not np.isfinite(getattr(self, key)):
                raise InputError(f"{key} is out of range: {getattr(self, key)!r}")

    def clock(self, data: Path | None = None) -> OrbitClock:
        """The orbit clock; an epoch of 0 starts it when ``DATA/clock.json`` appears."""
        epoch_file = data / CLOCK if data is not None else None
        return OrbitClock(
            parse_utc(self.start), self.time_scale, self.epoch_unix_s, epoch_file=epoch_file
        )

    @classmethod
    def load(cls, data: Path) -> NodeConfig:
        path = data / CONFIG
        doc = read(path, f"{data} is not a node's data directory: {CONFIG} is missing")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise InputError(f"{path}: unknown keys {', '.join(unknown)}")
        try:
            return cls(**doc)
        except TypeError as exc:
            raise InputError(f"{path}: {exc}") from None

    def save(self, data: Path) -> None:
        data.mkdir(parents=True, exist_ok=True)
        (data / CONFIG).write_text(
            dumps(asdict(self), comment="starcompute node: identity and settings"),
            encoding="utf-8",
        )

    def override(self, **changes: Any) -> NodeConfig:
        doc = asdict(self)
        doc.update({k: v for k, v in changes.items() if v is not None})
        return NodeConfig(**doc)


def utc(t: np.datetime64) -> str:
    return str(format_utc(t))
