"""``Node``: the flight software of one satellite, whatever process it runs in.

It learns about the world only from what reaches it: bundles (through its agent and
its radio, the link emulator), the contact plan it was given, its own clock and orbit.

* A bundle for its job service is a query with its job telecommand: the node opens the
  telecommand with its own keys (``node.jobs``) and runs only what verifies; a forged,
  tampered or replayed one is refused and counted, and the engine never sees it.
* A verified job is journalled (with the new anti-replay state) before it runs, so a
  node killed and restarted resumes it: the job bundle leaves the store only once the
  answer's last chunk is in the store on its way down.
* A bundle for its command service is an operator's telecommand, opened with the same
  keys and then carried out: ``set-config`` changes the settings in ``SETTABLE`` (kept
  in the journal, so they survive a restart), ``rotate-key`` rekeys over the air
  (``security.telecommand``), ``upload-model`` installs the weights whose parts came to
  its model service (``node.uploads``) and serves them from then on; each outcome is
  counted and reported at once in a housekeeping bundle (the command's verification),
  as every ``telemetry_s`` orbit seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starcompute.compute.cards import load_card
from starcompute.compute.engine import Engine
from starcompute.compute.perf import ComputeTarget, PerformanceModel
from starcompute.dtn.agent import BundleAgent
from starcompute.dtn.bpsec import Bpsec
from starcompute.dtn.bundle import dtn_ms
from starcompute.dtn.eid import MISSION_CONTROL, Eid, NodeNames, Service
from starcompute.dtn.links import EmulatedLinks, Links
from starcompute.dtn.router import ContactRouter
from starcompute.dtn.store import BundleStore, Stored
from starcompute.errors import InputError, JobError, TelecommandError, UploadError
from starcompute.links.contact_plan import ContactPlan
from starcompute.node.config import MODEL, NodeConfig, parse_address
from starcompute.node.jobs import Chunk, Query, open_job
from starcompute.node.journal import Journal
from starcompute.node.pace import Pace
from starcompute.node.runner import JobRunner
from starcompute.node.state import Onboard
from starcompute.node.uploads import Uploads, check_command
from starcompute.security.telecommand import Command, CommandKind, SatelliteKeys
from starcompute.spacecraft.hardware import HardwareProfile
from starcompute.times import OrbitClock, format_utc, offsets_s

log = logging.getLogger(__name__)
TELEMETRY_LIFETIME_S = 6 * 3600.0
SETTABLE = {"max_batch": int, "max_tokens": int, "telemetry_s": float}  # set-config keys


def pace_for(config: NodeConfig, hardware: HardwareProfile | None) -> Pace:
    if config.pace == "host" or hardware is None:
        return Pace("host")
    target = ComputeTarget.from_profile(hardware)
    return Pace("hardware", PerformanceModel(load_card(config.timing_card), target, config.quant))


class Node:
    def __init__(
        self,
        config: NodeConfig,
        plan: ContactPlan,
        store: BundleStore,
        keys: SatelliteKeys,
        engine: Engine | None = None,
        onboard: Onboard | None = None,
        links: Links | None = None,
        clock: OrbitClock | None = None,
        data: Path | None = None,
        loader: Callable[[Path], Engine] | None = None,
    ) -> None:
        """``data``: the node's data directory (model uploads land there); ``loader``:
        builds an engine from a model directory (to serve an uploaded model)."""
        self.plan, self.store, self.data, self.loader = plan, store, data, loader
        self.uploads = Uploads(data) if data is not None else None
        self._installing = asyncio.Lock()
        self.clock = clock or config.clock()
        self.journal = Journal(store.db)
        self.config = config.override(**(self.journal.get("config") or {}))  # commanded
        saved = self.journal.keys()
        self.keys = SatelliteKeys.from_dict(saved) if saved else keys
        self.engine, self.onboard = engine, onboard
        if onboard is not None and (state := self.journal.get("onboard")) is not None:
            onboard.restore(state)  # the battery and radiator as they were
        names = NodeNames.of(plan.satellites, plan.stations)
        master = self.keys.master
        self.agent = BundleAgent(
            config.name,
            names,
            store,
            ContactRouter.of(plan),
            links or EmulatedLinks(*parse_address(config.emulator, "emulator")),
            self.clock,
            deliver=self._deliver,
            security=Bpsec({names.number(config.name): master}) if master else None,
        )
        self.runner: JobRunner | None = None
        if engine is not None:
            hardware = onboard.hardware if onboard is not None else None
            self.runner = JobRunner(
                engine,
                config.name,
                self.clock,
                pace_for(config, hardware),
                self.config.max_batch,
                on_batch=self._ran,
            )
        self._apply_config()
        self._tasks: list[asyncio.Task[None]] = []
        self._report_now = asyncio.Event()
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> int:
        host, port = parse_address(self.config.listen, "listen")
        if self.runner is not None:
            self.runner.start()
        self.port = await self.agent.start(host, port)
        self._tasks.append(asyncio.create_task(self._telemetry()))
        return self.port

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.agent.stop()
        if self.runner is not None:
            await self.runner.stop()

    # ------------------------------------------------------------------ jobs
    async def _deliver(self, stored: Stored) -> None:
        bundle = stored.bundle
        if bundle.destination.service == Service.COMMAND:
            self._command(stored)
            return
        if bundle.destination.service == Service.MODEL:
            await self._model_part(stored)
            return
        if bundle.destination.service != Service.JOB or self.runner is None:
            what = "no engine" if self.runner is None else f"service {bundle.destination.service}"
            self.store.count(f"rejected:not-served ({what})")
            self.agent.release(stored)
            return
        row = self.journal.job(stored.id)
        if row is None:
            try:
                query, _ = open_job(self.keys, bundle.payload)
            except (JobError, TelecommandError) as exc:
                self.store.count(f"rejected-jobs:{exc.reason}")
                self.journal.save_keys(self.keys.to_dict())
                self.agent.release(stored)
                log.warning("%s: %s", self.config.name, exc)
                return
            received = stored.stored_ms
            self.journal.verified(
                stored.id, query.query_id, query.to_bytes(), received, self.keys.to_dict()
            )
            skip = 0
        else:
            query, received, skip = Query.from_bytes(row.query), row.received_ms, row.chunks_sent
            if row.state == "answered":
                self.agent.release(stored)
                return
        await self.runner.run(query, received, lambda c: self._emit(stored, c), skip)
        self.agent.release(stored)

    def _command(self, stored: Stored) -> None:
        """An operator's telecommand: authenticated with the node's own keys, carried
        out, counted, and reported in a housekeeping bundle straight away."""
        packet = stored.bundle.payload
        try:
            command = self.keys.open(packet)
        except TelecommandError as exc:
            log.warning("%s: %s", self.config.name, exc)
        else:
            try:
                self._act(command, packet)
                if command.kind != CommandKind.UPLOAD_MODEL:  # counted once installed
                    self.store.count(f"commands-applied:{command.kind}")
                    self.keys.note(packet, command.kind, "applied")
                log.info("%s: applied telecommand %s", self.config.name, command.kind)
            except (TelecommandError, UploadError) as exc:
                self.store.count(f"commands-failed:{exc.reason}")
                self.keys.note(packet, command.kind, "failed", exc.reason)
                log.warning("%s: %s", self.config.name, exc)
        self.journal.save_keys(self.keys.to_dict())
        self.agent.release(stored)
        self._report_now.set()

    def _act(self, command: Command, packet: bytes) -> None:
        if command.kind == CommandKind.SET_CONFIG:
            self._set_config(command.args)
        elif command.kind == CommandKind.UPLOAD_MODEL:
            if self.uploads is None or self.loader is None or self.runner is None:
                raise UploadError("no-engine", "this node serves no model")
            name, digest, files = check_command(command.args)
            self.journal.put(
                "upload", {"name": name, "digest": digest, "files": files, "packet": packet.hex()}
            )
            self._tasks.append(asyncio.create_task(self._install()))
        elif command.kind == CommandKind.RUN_JOB:
            raise TelecommandError("no-query", "run-job comes bound to its query (job service)")
        # rotate-key: done by the keys themselves when they opened it

    def _set_config(self, args: dict[str, Any]) -> None:
        wrong = [
            k
            for k, v in args.items()
            if k not in SETTABLE or isinstance(v, bool) or not isinstance(v, int | float)
            or (SETTABLE[k] is int and not isinstance(v, int))
        ]  # fmt: skip
        if wrong or not args:
            allowed = ", ".join(f"{k} ({t.__name__})" for k, t in SETTABLE.items())
            raise TelecommandError("bad-config", f"set-config takes {allowed}; got {args}")
        try:
            self.config = self.config.override(**args)
        except InputError as exc:
            raise TelecommandError("bad-config", str(exc)) from None
        self.journal.put("config", {**(self.journal.get("config") or {}), **args})
        self._apply_config()

    def _apply_config(self) -> None:
        """The settings the runner reads (telemetry reads ``telemetry_s`` each period)."""
        if self.runner is not None:
            self.runner.max_batch = self.config.max_batch
            self.runner.max_tokens = self.config.max_tokens

    async def _model_part(self, stored: Stored) -> None:
        """A part of a model upload: written down; the upload is installed once it is
        complete and its command verified."""
        try:
            if self.uploads is None:
                raise UploadError("no-engine", "this node keeps no model")
            self.uploads.receive(stored.bundle.payload)
            self.store.count("model-parts")
        except UploadError as exc:
            self.store.count(f"commands-failed:{exc.reason}")
        self.agent.release(stored)
        if self.journal.get("upload"):
            await self._install()

    async def _install(self) -> None:
        """Install the commanded upload if all of it is here, then serve it."""
        if self.uploads is None or self.data is None or self.loader is None:
            return  # a node without a data directory or an engine loader installs nothing
        loop = asyncio.get_running_loop()
        async with self._installing:
            pending = self.journal.get("upload")
            if not pending:
                return
            digest = pending["digest"]
            if not await loop.run_in_executor(
                None, self.uploads.complete, digest, pending["files"]
            ):
                return  # parts still on their way
            self.uploads.install(digest, self.data / MODEL)
            self.journal.put("model", {"name": pending["name"], "digest": digest})
            self.journal.put("upload", {})
            packet = bytes.fromhex(pending.get("packet", ""))
            try:
                engine = await loop.run_in_executor(None, self.loader, self.data / MODEL)
            except Exception as exc:  # e.g. weights the engine cannot load: keep serving
                self.store.count("commands-failed:unloadable-model")
                self.keys.note(packet, CommandKind.UPLOAD_MODEL, "failed", "unloadable-model")
                self.journal.save_keys(self.keys.to_dict())
                log.warning("%s: the uploaded model does not load: %s", self.config.name, exc)
                return
            self.engine = engine
            if self.runner is not None:
                self.runner.engine = engine  # the next batch runs on it
            self.store.count("commands-applied:upload-model")
            self.keys.note(packet, CommandKind.UPLOAD_MODEL, "applied")
            self.journal.save_keys(self.keys.to_dict())
            log.info("%s: now serving %s (%s)", self.config.name, pending["name"], digest[:12])
            self._report_now.set()

    def _emit(self, stored: Stored, chunk: Chunk) -> None:
        """An answer chunk leaves for the ground (custody: it is in the store first)."""
        to = Eid(MISSION_CONTROL, Service.ANSWER)
        self.agent.send(self.agent.new_bundle(to, chunk.to_bytes(), Service.ANSWER, 24 * 3600.0))
        self.journal.chunk_sent(stored.id, chunk.seq, chunk.final)
        self.store.count("chunks-sent")

    def _ran(self, jobs: int, start_ms: int, end_ms: int) -> None:
        self.store.count("engine-calls")
        self.store.count("jobs-run", jobs)
        if self.onboard is not None:
            base = dtn_ms(self.plan.start)
            self.onboard.busy((start_ms - base) / 1000.0, (end_ms - base) / 1000.0)

    # ------------------------------------------------------------------ telemetry
    def housekeeping(self) -> dict[str, Any]:
        """What the node reports about itself now."""
        counters = self.store.counters()
        doc: dict[str, Any] = {
            "satellite": self.config.name,
            "role": self.config.role,
            "orbit_time": format_utc(self.clock.now()),
            "queue": len(self.runner.waiting) if self.runner else 0,
            "jobs_run": counters.get("jobs-run", 0),
            "engine_calls": counters.get("engine-calls", 0),
            "rejected_bundles": _prefixed(counters, "rejected:"),
            "rejected_jobs": _prefixed(counters, "rejected-jobs:"),
            "commands": {
                "accepted": self.keys.accepted,
                "rejected": dict(self.keys.rejected),
                "applied": _prefixed(counters, "commands-applied:"),
                "failed": _prefixed(counters, "commands-failed:"),
                "key_id": self.keys.active.key_id,
                "recent": self.keys.recent,  # each command's outcome, by its id
            },
            "config": {k: getattr(self.config, k) for k in SETTABLE},
            "model": self.journal.get("model") or {"name": "as provisioned"},
            "store": self.store.sizes(),
        }
        if self.onboard is not None:
            self.onboard.advance(float(offsets_s(self.clock.now(), self.plan.start)))
            doc.update(self.onboard.report())
            self.journal.put("onboard", self.onboard.to_dict())
        return doc

    async def _telemetry(self) -> None:
        to = Eid(MISSION_CONTROL, Service.TELEMETRY)
        while True:
            with contextlib.suppress(TimeoutError):  # the period, or a command to report
                await asyncio.wait_for(
                    self._report_now.wait(), self.clock.wall_s(self.config.telemetry_s)
                )
            self._report_now.clear()
            try:
                payload = json.dumps(self.housekeeping()).encode()
                self.agent.send(
                    self.agent.new_bundle(to, payload, Service.TELEMETRY, TELEMETRY_LIFETIME_S)
                )
            except Exception:  # housekeeping must never stop the node
                log.exception("%s: telemetry failed", self.config.name)


def _prefixed(counters: dict[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix) :]: v for k, v in counters.items() if k.startswith(prefix)}


def node_status(store: BundleStore) -> dict[str, Any]:
    """What a node's data directory says about it (readable while it runs or not)."""
    counters = store.counters()
    journal = Journal(store.db)
    keys = journal.keys() or {}
    return {
        "counters": counters,
        "store": store.sizes(),
        "jobs": journal.states(),
        "engine_calls": counters.get("engine-calls", 0),
        "rejected_jobs": _prefixed(counters, "rejected-jobs:"),
        "rejected_bundles": _prefixed(counters, "rejected:"),
        "commands": {
            "accepted": keys.get("accepted", 0),
            "rejected": keys.get("rejected", {}),
            "applied": _prefixed(counters, "commands-applied:"),
            "failed": _prefixed(counters, "commands-failed:"),
        },
        "config": journal.get("config") or {},
    }
