"""``starcompute testbed``: provision a run and start its processes.

One ``node`` process per satellite chosen (``--satellites``, default all), the rest as
plain relays sharing one process, the link emulator, and the ground segment (with the
OpenAI gateway when serving). Each process runs exactly what ``starcompute node --data
DIR`` (or ``testbed emulator|ground``) runs. Nodes are forked from a fork server that
has imported PyTorch once: twelve start in about a third of the time on two cores, and
share those pages (the native decoder, ``compute/decoder.py``, spares each node
``transformers``' modelling stack); the emulator, the relays and the ground segment need
no engine and start as fresh interpreters (``python -m starcompute.testbed.launcher``).
Every one is its own OS process with its own memory, keys, store and engine. Children
die with the launcher (``PR_SET_PDEATHSIG``, a pidfd watch), and Ctrl-C or SIGTERM stops
them all: none is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import multiprocessing
import multiprocessing.process
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from starcompute.errors import InputError
from starcompute.links.contact_plan import ContactPlan
from starcompute.testbed.config import (
    CLOCK,
    CONFIG,
    STATE,
    Testbed,
    check_free,
    free_port,
    is_local,
    read_manifest,
)
from starcompute.times import format_utc, parse_utc

READY = "ready.json"  # all processes started and ready
READY_TIMEOUT_S = 300.0
STOP_GRACE_S = 10.0


@dataclass(slots=True)
class Options:
    constellation: str = "three-body-12"
    stations: str = "china,ksat,aws"
    start: str | None = None
    hours: float = 24.0
    time_scale: float = 1.0
    model: str | None = None
    dtype: str = "bfloat16"
    satellites: list[str] | None = None
    manifest: Path | None = None
    serve: bool = False
    host: str | None = None
    port: int | None = None
    run: Path | None = None
    resume: bool = False
    pace: str = "hardware"
    telemetry_s: float = 300.0
    timing_card: str = "qwen3-8b"
    silence_s: float = 600.0


def default_root() -> Path:
    from starcompute.compute.checkpoints import cache_dir

    return cache_dir().parent / "testbed"


def latest_run() -> Path:
    """The most recently started run folder under the default root."""
    runs = sorted(default_root().glob("run-*/state.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise InputError(f"no running testbed under {default_root()}: give --dir")
    return runs[-1].parent


def prepare(opts: Options) -> Testbed:
    """Check the options, compute the contact plan and provision the run folder (or
    take a run folder as it is, with ``resume``)."""
    if opts.resume:
        if opts.run is None or not (opts.run / CONFIG).is_file():
            raise InputError("--resume needs --dir of an existing testbed run")
        return Testbed.load(opts.run)
    from starcompute.compute.cards import load_card
    from starcompute.ground.stations import load_stations
    from starcompute.links.config import IslConfig
    from starcompute.links.contacts import contact_plan
    from starcompute.orbits.constellation import load_constellation

    load_card(opts.timing_card)
    const, stations = load_constellation(opts.constellation), load_stations(opts.stations)
    chosen = _chosen(opts.satellites, const)
    start = parse_utc(opts.start) if opts.start else np.datetime64("now", "s")
    if not (np.isfinite(opts.hours) and 0 < opts.hours <= 72):
        raise InputError(f"--hours must be within 0..72, got {opts.hours}")
    names = list(const.names) + [s.name for s in stations]
    manifest = read_manifest(opts.manifest, names) if opts.manifest else {"endpoints": {}}
    run = opts.run or default_root() / f"run-{time.strftime('%Y%m%dT%H%M%S')}"
    if (run / CONFIG).exists():
        raise InputError(f"{run} holds a testbed run already: give another --dir, or --resume")
    tb = Testbed(
        run=run,
        constellation=opts.constellation,
        stations=opts.stations,
        start=str(format_utc(start)),
        hours=opts.hours,
        time_scale=opts.time_scale,
        epoch_unix_s=0.0,  # the clock starts when every process is up
        emulator=manifest.get("emulator") or _local(),
        gateway=_gateway(opts, manifest),
        endpoints={n: _local() for n in names},
        satellites=chosen,
        model=opts.model or "",
        dtype=opts.dtype,
        pace=opts.pace,
        timing_card=opts.timing_card,
        telemetry_s=opts.telemetry_s,
        silence_s=opts.silence_s,
    )
    tb.endpoints.update({k: str(v) for k, v in manifest["endpoints"].items()})
    check_free(_addresses(tb, opts.serve))  # before anything is written
    plan = contact_plan(const, stations, start, tb.horizon_s, isl=IslConfig.default())
    roles = {n: ("inference" if n in chosen else "relay") for n in const.names}
    roles.update({n: r for n, r in zip(const.names, const.roles, strict=True) if n in chosen})
    _provision(tb, plan, roles)
    return tb


def _addresses(tb: Testbed, serve: bool) -> dict[str, str]:
    """Every address the run's local processes will listen on, by what listens."""
    out = {"emulator": tb.emulator, **tb.endpoints}
    if serve:
        out["gateway"] = tb.gateway
    return out


def _chosen(satellites: list[str] | None, const: Any) -> list[str]:
    if not satellites:
        return list(const.names)
    unknown = [s for s in satellites if s not in const.names]
    if unknown:
        raise InputError(
            f"--satellites: {unknown[0]!r} is not in {const.name} "
            f"(e.g. {', '.join(const.names[:3])}, ...)"
        )
    return list(dict.fromkeys(satellites))


def _local() -> str:
    return f"127.0.0.1:{free_port()}"


def _gateway(opts: Options, manifest: dict[str, Any]) -> str:
    base = manifest.get("gateway") or "127.0.0.1:8000"
    host, _, port = str(base).rpartition(":")
    if opts.port is not None and not 1 <= opts.port <= 65535:
        raise InputError(f"--port must be within 1..65535, got {opts.port}")
    return f"{opts.host or host}:{opts.port if opts.port is not None else port}"


def _provision(tb: Testbed, plan: ContactPlan, roles: dict[str, str]) -> None:
    from starcompute.compute.batcher import off_main_thread
    from starcompute.compute.real import checkpoint_as, checkpoint_dir
    from starcompute.testbed.provision import provision

    checkpoint = None
    if any(r != "relay" for r in roles.values()):
        print("preparing the model checkpoint ...", file=sys.stderr, flush=True)
        checkpoint = off_main_thread(
            lambda: checkpoint_as(checkpoint_dir(tb.model or None)[0], tb.dtype)
        )
    provision(tb, plan, roles, checkpoint)


# ---------------------------------------------------------------------- processes
PRELOAD = [  # not transformers: the native decoder runs the nodes' models without it
    "torch",
    "tokenizers",
    "starcompute.compute.decoder",
    "starcompute.compute.real",
    "starcompute.node.process",
    "starcompute.testbed.processes",
]


class Forked:
    """A child forked from the fork server, with the calls the launcher makes of one."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self.process = process

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    def poll(self) -> int | None:
        return self.process.exitcode

    def terminate(self) -> None:
        self.process.terminate()

    def kill(self) -> None:
        self.process.kill()

    def wait(self, timeout: float | None = None) -> int | None:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired("testbed child", timeout or 0.0)
        return self.process.exitcode


@dataclass(slots=True)
class Child:
    role: str  # emulator | node | relays | ground
    name: str
    args: list[str]  # node: data directories; emulator: the run; ground: the run [serve]
    ready: list[Path]  # files that say it is ready
    address: str
    proc: Forked | subprocess.Popen[bytes] | None = None
    log: Path | None = None


def _die_with(launcher_pid: int) -> None:
    """SIGTERM this process when the launcher ends, however it ends (even SIGKILL): a
    thread waits on the launcher's pidfd. (Its parent is the fork server, which outlives
    the launcher while its children hold its pipe, so PR_SET_PDEATHSIG is not enough.)"""
    with contextlib.suppress(OSError, AttributeError):
        libc: Any = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the fork server's end
    try:
        pidfd = os.pidfd_open(launcher_pid)
    except (OSError, AttributeError):
        return

    def watch() -> None:
        select.select([pidfd], [], [])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


def child_main(role: str, args: list[str], log: str, launcher_pid: int) -> None:
    """A testbed process (what ``starcompute node --data DIR`` or ``starcompute testbed
    emulator|ground --dir RUN`` runs), output to ``log``, ending with the launcher. Bad
    input is one line and exit code 2, as from the command line."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    _die_with(launcher_pid)
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    from starcompute.node.process import run_nodes
    from starcompute.testbed.processes import run_emulator, run_ground

    try:
        if role in ("node", "relays"):
            code = run_nodes([Path(a) for a in args])
        elif role == "emulator":
            code = run_emulator(Path(args[0]))
        else:
            code = run_ground(Path(args[0]), serve="--serve" in args)
    except InputError as exc:
        print(f"starcompute: error: {exc}", file=sys.stderr)
        code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# roles whose process needs no engine: started as a fresh interpreter, not forked from
# the fork server (whose PyTorch every forked child would map and count in its RSS)
LIGHT_ROLES = ("emulator", "relays", "ground")


def fork_server() -> Any:
    """The fork server's context, PyTorch and the engine imported once in it."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


@dataclass(slots=True)
class Launcher:
    tb: Testbed
    serve: bool = False
    children: list[Child] = field(default_factory=list)
    _ctx: Any = None

    def plan_children(self) -> list[Child]:
        tb, out = self.tb, []
        out.append(
            Child(
                "emulator",
                "emulator",
                [str(tb.run)],
                [tb.run / "emulator" / "ready.json"],
                tb.emulator,
            )
        )
        const_names = [n for n in tb.endpoints if (tb.run / "nodes" / n).is_dir()]
        for name in tb.satellites:
            if is_local(tb.endpoints[name]):
                data = tb.node_dir(name)
                out.append(
                    Child(
                        "node",
                        name,
                        [str(data)],
                        [data / "ready.json"],
                        tb.endpoints[name],
                    )
                )
        relays = [n for n in const_names if n not in tb.satellites and is_local(tb.endpoints[n])]
        if relays:
            datas = [tb.node_dir(n) for n in relays]
            args = [str(d) for d in datas]
            out.append(
                Child(
                    "relays",
                    f"{len(relays)} relays",
                    args,
                    [d / "ready.json" for d in datas],
                    "several",
                )
            )
        ground = [str(tb.run)] + (["--serve"] if self.serve else [])
        out.append(
            Child(
                "ground",
                "ground",
                ground,
                [tb.run / "ground" / "ready.json"],
                tb.gateway if self.serve else "stations",
            )
        )
        return out

    def start(self) -> float:
        """Start every child and wait until all are ready; returns the seconds it took."""
        t0 = time.monotonic()
        check_free(_addresses(self.tb, self.serve))
        (self.tb.run / "logs").mkdir(parents=True, exist_ok=True)
        self.children = self.plan_children()
        (self.tb.run / READY).unlink(missing_ok=True)
        for child in self.children:
            for path in child.ready:
                path.unlink(missing_ok=True)
            self._spawn(child)
        self._write_state()
        self._wait_ready(t0)
        took = time.monotonic() - t0
        self._start_clock()
        ready = {"ready_unix_s": time.time(), "took_s": round(took, 2)}
        (self.tb.run / READY).write_text(json.dumps(ready), encoding="utf-8")
        return took

    def _start_clock(self) -> None:
        """Orbit time starts now, at ``--start``, in every process (a resumed run keeps
        the epoch it had)."""
        if (self.tb.run / CLOCK).is_file() or self.tb.epoch_unix_s > 0:
            return
        text = json.dumps({"epoch_unix_s": time.time()})
        for name in self.tb.satellites + [
            n for n in self.tb.endpoints if self.tb.node_dir(n).is_dir()
        ]:
            (self.tb.node_dir(name) / CLOCK).write_text(text, encoding="utf-8")
        (self.tb.run / CLOCK).write_text(text, encoding="utf-8")

    def _spawn(self, child: Child) -> None:
        child.log = self.tb.run / "logs" / f"{child.role}-{child.name.replace(' ', '-')}.log"
        if child.role in LIGHT_ROLES:  # no PyTorch: a fresh interpreter maps far less
            cmd = [sys.executable, "-m", __name__, child.role, str(child.log), str(os.getpid())]
            child.proc = subprocess.Popen([*cmd, *child.args], stdin=subprocess.DEVNULL)
            return
        if self._ctx is None:
            self._ctx = fork_server()
        process = self._ctx.Process(
            target=child_main,
            args=(child.role, child.args, str(child.log), os.getpid()),
            name=child.name,
            daemon=False,
        )
        process.start()
        child.proc = Forked(process)

    def _wait_ready(self, t0: float) -> None:
        waiting = list(self.children)
        while waiting:
            for child in list(waiting):
                if child.proc is not None and child.proc.poll() is not None:
                    raise InputError(
                        f"{child.role} {child.name} failed to start: {self._last_line(child)}"
                    )
                if all(p.is_file() for p in child.ready):
                    waiting.remove(child)
            if time.monotonic() - t0 > READY_TIMEOUT_S:
                names = ", ".join(c.name for c in waiting)
                raise InputError(f"not ready after {READY_TIMEOUT_S:.0f} s: {names}")
            time.sleep(0.2)

    def _last_line(self, child: Child) -> str:
        if child.log is None or not child.log.is_file():
            return f"exit code {child.proc.returncode if child.proc else '?'}"
        lines = [ln for ln in child.log.read_text(errors="replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()]
        return (errors or lines or ["no output"])[-1].strip()

    def _write_state(self) -> None:
        doc = {
            "run": str(self.tb.run),
            "launcher_pid": os.getpid(),
            "started_unix_s": time.time(),
            "emulator": self.tb.emulator,
            "gateway": self.tb.gateway if self.serve else None,
            "processes": [
                {
                    "role": c.role,
                    "name": c.name,
                    "pid": c.proc.pid if c.proc else None,
                    "address": c.address,
                    "log": str(c.log),
                }
                for c in self.children
            ],
        }
        (self.tb.run / STATE).write_text(json.dumps(doc, indent=1), encoding="utf-8")

    def watch(self, stop: Any) -> None:
        """Until ``stop()`` says so: report children that end on their own."""
        reported: set[int | None] = set()
        while not stop():
            for child in self.children:
                proc = child.proc
                if proc is not None and proc.poll() is not None and proc.pid not in reported:
                    reported.add(proc.pid)
                    print(
                        f"testbed: {child.role} {child.name} (pid {proc.pid}) exited with "
                        f"code {proc.returncode}",
                        file=sys.stderr,
                        flush=True,
                    )
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM every child, SIGKILL what is left after a grace period."""
        procs = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.1, deadline - time.monotonic()))
        for p in procs:
            if p.poll() is None:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
        (self.tb.run / STATE).unlink(missing_ok=True)
        (self.tb.run / READY).unlink(missing_ok=True)

    def restart(self, name: str) -> None:
        """Start a child again (e.g. after it was killed), with the same arguments."""
        child = next(c for c in self.children if c.name == name)
        for path in child.ready:
            path.unlink(missing_ok=True)
        self._spawn(child)
        self._write_state()


def run(opts: Options) -> int:
    """Provision, start, serve until Ctrl-C or SIGTERM, stop everything."""
    tb = prepare(opts)
    launcher = Launcher(tb, opts.serve)
    stopping = {"now": False}

    def on_signal(signum: int, _frame: Any) -> None:
        stopping["now"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        took = launcher.start()
        nodes = sum(1 for c in launcher.children if c.role == "node")
        print(
            f"testbed ready in {took:.1f} s: {nodes} nodes, the link emulator on "
            f"{tb.emulator}, the ground segment; run folder {tb.run}",
            file=sys.stderr,
        )
        if opts.serve:
            print(f"OpenAI API on http://{tb.gateway}/v1 (dashboard at /)", file=sys.stderr)
        print(f"orbit clock: {tb.start} at epoch, x{tb.time_scale:g}", file=sys.stderr, flush=True)
        launcher.watch(lambda: stopping["now"])
    finally:
        launcher.stop()
        for s, handler in old.items():
            signal.signal(s, handler)
    return 0


if __name__ == "__main__":  # a light child: ROLE LOG LAUNCHER_PID ARGS...
    child_main(sys.argv[1], sys.argv[4:], sys.argv[2], int(sys.argv[3]))
