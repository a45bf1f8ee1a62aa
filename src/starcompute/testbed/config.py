"""A testbed run: the world it emulates, where each process listens, and its folder.

::

    RUN/
      testbed.toml        the world (constellation, stations, clock, model) and the manifest
      contact-plan.json   the plan every process was given
      state.json          the processes the launcher started (for `testbed status`)
      clock.json          when the orbit clock started: once every process was up
      logs/NAME.log       each process's output
      emulator/ready.json
      ground/             mission control's keys, stations' stores, telemetry, request log
      nodes/SATELLITE/    each node's data directory (see ``node.config``)

The **manifest** (``--manifest FILE``, TOML) says where each process listens, so that
processes can run on other machines::

    emulator = "127.0.0.1:7000"       # the link emulator
    gateway = "127.0.0.1:8000"        # the OpenAI gateway (with --serve)
    [endpoints]                       # every satellite's and station's bundle agent
    "TB500-P00-S00" = "127.0.0.1:7100"
    "Kashgar" = "10.0.0.5:7200"

Names missing from it get free ports on 127.0.0.1; a name that is neither a satellite
nor a station of the run is an error. The launcher starts only processes whose host is
this machine (127.0.0.1, ::1, localhost); a node elsewhere is started there with
``starcompute node --data DIR`` on a copy of its data directory, and clocks must agree
(NTP): every process computes orbit time from the same ``epoch_unix_s``.
"""

from __future__ import annotations

import random
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from starcompute.compute.real import DTYPES
from starcompute.errors import InputError
from starcompute.node.config import parse_address
from starcompute.node.pace import PACES
from starcompute.times import OrbitClock, parse_utc
from starcompute.tomlio import dumps, read

CONFIG = "testbed.toml"
CLOCK = "clock.json"
PLAN = "contact-plan.json"
STATE = "state.json"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(slots=True)
class Testbed:
    run: Path
    constellation: str
    stations: str
    start: str  # orbit time at the epoch
    hours: float  # span of the contact plan
    time_scale: float
    epoch_unix_s: float
    emulator: str  # host:port
    gateway: str  # host:port of the OpenAI gateway
    endpoints: dict[str, str] = field(default_factory=dict)  # node name -> host:port
    satellites: list[str] = field(default_factory=list)  # nodes with an engine
    model: str = ""  # checkpoint directory or .gguf ("": the embedded default)
    dtype: str = "bfloat16"  # the nodes' weights (bfloat16: half the memory of float32)
    pace: str = "hardware"
    timing_card: str = "qwen3-8b"
    telemetry_s: float = 300.0
    silence_s: float = 600.0  # orbit s past a planned delivery before a re-plan

    def __post_init__(self) -> None:
        parse_utc(self.start)
        parse_address(self.emulator, "emulator")
        parse_address(self.gateway, "gateway")
        for name, address in self.endpoints.items():
            parse_address(address, f"the address of {name}")
        if self.dtype not in DTYPES:
            raise InputError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.pace not in PACES:
            raise InputError(f"--pace must be one of {', '.join(PACES)}, got {self.pace!r}")
        if not (0 < self.hours <= 72):
            raise InputError(f"--hours must be within 0..72, got {self.hours}")
        if not self.time_scale > 0:
            raise InputError(f"--time-scale must be > 0, got {self.time_scale}")
        if not self.telemetry_s > 0:
            raise InputError(f"--telemetry-s must be > 0, got {self.telemetry_s}")

    @property
    def clock(self) -> OrbitClock:
        """The run's orbit clock; it starts when the launcher writes ``clock.json``
        (every process up), unless the epoch is set already."""
        epoch_file = self.run / CLOCK
        return OrbitClock(
            parse_utc(self.start), self.time_scale, self.epoch_unix_s, epoch_file=epoch_file
        )

    @property
    def horizon_s(self) -> float:
        return self.hours * 3600.0

    def node_dir(self, name: str) -> Path:
        return self.run / "nodes" / name

    def save(self) -> None:
        doc = asdict(self)
        doc.pop("run")
        endpoints = doc.pop("endpoints")
        text = dumps({**doc, "endpoints": endpoints}, comment="starcompute testbed run")
        self.run.mkdir(parents=True, exist_ok=True)
        (self.run / CONFIG).write_text(text, encoding="utf-8")

    @classmethod
    def load(cls, run: Path) -> Testbed:
        path = run / CONFIG
        doc = read(path, f"{run} is not a testbed run folder: {CONFIG} is missing")
        try:
            return cls(run=run, **doc)
        except TypeError as exc:
            raise InputError(f"{path}: {exc}") from None


def is_local(address: str) -> bool:
    return parse_address(address, "address")[0] in LOCAL_HOSTS


def _ephemeral_start() -> int:
    """The first port the kernel hands to outgoing connections (Linux; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_taken: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, below the ephemeral range (an outgoing connection cannot take it
    before our server binds it) and not handed out before by this process."""
    top = _ephemeral_start()
    for port in random.Random().sample(range(max(1024, top - 12000), top), 400):
        if port in _taken or not _bindable(host, port):
            continue
        _taken.add(port)
        return port
    with socket.socket() as s:  # the range is crowded: let the kernel choose
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as our servers bind
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def read_manifest(path: Path, names: list[str]) -> dict[str, Any]:
    """A manifest file, checked against the run's node names."""
    doc = read(path, f"--manifest {path}: no such file")
    unknown_keys = sorted(set(doc) - {"emulator", "gateway", "endpoints"})
    if unknown_keys:
        raise InputError(
            f"--manifest {path}: unknown keys {', '.join(unknown_keys)} "
            "(allowed: emulator, gateway, [endpoints])"
        )
    endpoints = doc.get("endpoints", {})
    if not isinstance(endpoints, dict):
        raise InputError(f"--manifest {path}: [endpoints] must be a table of name = host:port")
    unknown = [n for n in endpoints if n not in names]
    if unknown:
        raise InputError(
            f"--manifest {path}: {unknown[0]!r} is neither a satellite nor a station of "
            f"this run (e.g. {', '.join(names[:3])}, ...)"
        )
    for key in ("emulator", "gateway"):
        if key in doc:
            parse_address(str(doc[key]), f"manifest {key}")
    for name, address in endpoints.items():
        parse_address(str(address), f"manifest address of {name}")
    return {"emulator": doc.get("emulator"), "gateway": doc.get("gateway"), "endpoints": endpoints}


def check_free(addresses: dict[str, str]) -> None:
    """Every local address can be bound now (one clear line for a port in use)."""
    for name, address in addresses.items():
        if not is_local(address):
            continue
        host, port = parse_address(address, name)
        if not _bindable(host, port):
            raise InputError(f"port {port} on {host} ({name}) is not free (in use or not ours)")
