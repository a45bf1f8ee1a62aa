"""The testbed's ground segment: every ground station a bundle endpoint of its own, and
the space link through them.

Mission control plans each query as everywhere else (``mission.live``); here the job
becomes a bundle (source ``ipn:1.1``, mission control; destination the serving
satellite's job service) handed to the planned uplink station, whose agent keeps it
until a contact carries it up. Answer chunks and housekeeping come down wherever the
satellites' routing brings them: every station delivers what is addressed to mission
control (the terrestrial network joins them); chunks go to the request waiting for them,
telemetry into SQLite, each with the orbit time it reached the ground.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np

from starcompute.dtn.agent import BundleAgent
from starcompute.dtn.bpsec import Bpsec
from starcompute.dtn.bundle import Bundle, dtn_ms
from starcompute.dtn.eid import MISSION_CONTROL, Eid, NodeNames, Service
from starcompute.dtn.links import Links
from starcompute.dtn.router import ContactRouter
from starcompute.dtn.store import BundleStore, Stored
from starcompute.errors import InputError, JobError
from starcompute.links.contact_plan import ContactPlan
from starcompute.mission.control import Trace
from starcompute.mission.spacelink import Arrival
from starcompute.mission.telemetry import TelemetryStore
from starcompute.node.jobs import Chunk, Query, seal_job
from starcompute.node.uploads import PART_BYTES, check_command, digest_of, manifest, parts
from starcompute.security.telecommand import Command, CommandKind, GroundKeys
from starcompute.times import OrbitClock

log = logging.getLogger(__name__)
JOB_LIFETIME_S = 2 * 3600.0
Housekept = Callable[[str, dict[str, Any], np.datetime64], None]  # satellite, record, when


class Stations:
    """The ground stations' agents and what comes down through them."""

    def __init__(
        self,
        plan: ContactPlan,
        clock: OrbitClock,
        links: Links,
        folder: Path,
        keys: dict[str, GroundKeys],
        save_keys: Callable[[dict[str, GroundKeys]], None],
    ) -> None:
        self.names = NodeNames.of(plan.satellites, plan.stations)
        self.clock, self.keys, self.save_keys = clock, keys, save_keys
        folder.mkdir(parents=True, exist_ok=True)
        router = ContactRouter.of(plan)
        masters = {self.names.number(s): k.master for s, k in keys.items() if k.master}
        security = Bpsec(masters) if masters else None
        self.agents = {
            name: BundleAgent(
                name,
                self.names,
                BundleStore(folder / f"{name}.sqlite"),
                router,
                links,
                clock,
                deliver=self._deliverer(name),
                ground=True,
                security=security,
            )
            for name in plan.stations
        }
        self.waiting: dict[str, asyncio.Queue[Arrival]] = {}
        self.telemetry = TelemetryStore(folder / "telemetry.sqlite")
        self.on_housekeeping: Housekept | None = None  # mission control verifies commands
        self.counts: Counter[str] = Counter()
        self.heard: dict[str, np.datetime64] = {}  # satellite: when a bundle from it came down
        self._seq = 0

    async def start(self, addresses: dict[str, tuple[str, int]]) -> None:
        for name, agent in self.agents.items():
            host, port = addresses[name]
            try:
                await agent.start(host, port)
            except OSError as exc:
                raise InputError(
                    f"station {name}: cannot listen on {host}:{port}: {exc.strerror}"
                ) from None

    async def stop(self) -> None:
        for agent in self.agents.values():
            await agent.stop()
            agent.store.close()

    def _deliverer(self, station: str) -> Callable[[Stored], Any]:
        async def deliver(stored: Stored) -> None:
            self._receive(station, stored)
            self.agents[station].release(stored)

        return deliver

    def _receive(self, station: str, stored: Stored) -> None:
        bundle, now = stored.bundle, self.clock.now()
        known = self.names.index(bundle.source.node) is not None
        source = self.names.name(bundle.source.node) if known else "?"
        if known:
            self.heard[source] = now
        if bundle.destination.service == Service.ANSWER:
            try:
                chunk = Chunk.from_bytes(bundle.payload)
            except JobError:
                self.counts["bad-chunks"] += 1
                return
            queue = self.waiting.get(chunk.query_id)
            if queue is None:
                self.counts["chunks-nobody-waits-for"] += 1
                return
            self.counts["chunks"] += 1
            queue.put_nowait(Arrival(chunk, now, station))
        elif bundle.destination.service == Service.TELEMETRY:
            try:
                record = json.loads(bundle.payload)
            except ValueError:
                self.counts["bad-telemetry"] += 1
                return
            self.telemetry.add(source, station, now, record)
            if self.on_housekeeping is not None:
                self.on_housekeeping(source, record, now)
            self.counts["telemetry"] += 1
        else:
            self.counts[f"unexpected-service-{bundle.destination.service}"] += 1

    def uplink(self, station: str, satellite: str, service: Service, payload: bytes) -> Bundle:
        """A bundle from mission control to ``satellite``, handed to ``station``."""
        now_ms = dtn_ms(self.clock.now())
        self._seq += 1
        bundle = Bundle(
            Eid(MISSION_CONTROL, int(service)),
            self.names.eid(satellite, service),
            now_ms,
            self._seq,
            payload,
            int(JOB_LIFETIME_S * 1000),
        )
        self.agents[station].send(bundle)
        return bundle

    def best_uplink(self, satellite: str, size_bytes: int) -> str:
        """The station whose route reaches ``satellite`` first from now."""
        target = frozenset([self.names.names.index(satellite)])
        best, name = float("inf"), self.names.stations[0]
        for station, agent in self.agents.items():
            now_s = agent.router.at_s(self.clock.now())
            hop = agent.router.next_hop(agent.index, target, now_s, size_bytes)
            if hop is not None and hop.arrival_s < best:
                best, name = hop.arrival_s, station
        return name

    def seal(self, satellite: str, seal: Callable[[GroundKeys], bytes]) -> bytes:
        """Seal with the satellite's ground keys and persist the new sequence counter."""
        if satellite not in self.keys:
            raise InputError(f"no keys for {satellite!r}: not a node of this testbed")
        packet = seal(self.keys[satellite])
        self.save_keys(self.keys)
        return packet


class BundleLink:
    """The space link of the testbed: jobs up as bundles, chunks down as they arrive.
    ``ready()``: whether every process of the testbed has started (the launcher says)."""

    name = "testbed"

    def __init__(self, stations: Stations, ready: Callable[[], bool] = lambda: True) -> None:
        self.stations, self.ready = stations, ready

    @property
    def telemetry(self) -> TelemetryStore:
        """Housekeeping as it came down."""
        return self.stations.telemetry

    @property
    def on_housekeeping(self) -> Housekept | None:
        return self.stations.on_housekeeping

    @on_housekeeping.setter
    def on_housekeeping(self, hook: Housekept | None) -> None:
        self.stations.on_housekeeping = hook

    async def serve(
        self,
        query: Query,
        trace: Trace,
        model: str,
        cancelled: Callable[[], bool] | None = None,
    ) -> AsyncIterator[Arrival]:
        sat = trace.serving_satellite
        payload = self.stations.seal(sat, lambda keys: seal_job(keys, query, model))
        queue: asyncio.Queue[Arrival] = asyncio.Queue()
        self.stations.waiting[query.query_id] = queue
        try:
            self.stations.uplink(trace.uplink_station, sat, Service.JOB, payload)
            seen: set[int] = set()
            last: int | None = None  # the final chunk's seq, once it is down
            while last is None or len(seen) <= last:  # chunks may come down different ways
                arrival = await queue.get()
                if arrival.chunk.seq in seen:
                    continue
                seen.add(arrival.chunk.seq)
                if arrival.chunk.final:
                    last = arrival.chunk.seq
                yield arrival
        finally:
            self.stations.waiting.pop(query.query_id, None)

    def heard_from(self, satellite: str) -> np.datetime64 | None:
        """When the last bundle from ``satellite`` (an answer chunk, housekeeping) reached
        the ground: a satellite that reports is alive, however slowly it answers."""
        return self.stations.heard.get(satellite)

    def command(
        self,
        satellite: str,
        kind: str | None,
        args: dict[str, Any],
        packet: bytes | None,
        arrives: np.datetime64,
    ) -> dict[str, Any]:
        """Seal an operator's command (or take a raw packet) and send it up as a bundle:
        the station holds it until a contact carries it (the plan says ``arrives``), and
        the satellite authenticates it, acts on it and reports it in its housekeeping.
        ``rotate-key`` rekeys over the air: commands sealed after it use the new key, so
        one that reaches the satellite before the rotation itself is refused there.
        ``upload-model`` (``args``: ``path`` of a checkpoint directory here, ``name``) sends
        the files up in parts first, then the command naming their digest."""
        if kind == CommandKind.UPLOAD_MODEL and packet is None:
            return self._upload(satellite, args)
        if packet is None:
            command = Command(kind or "", args)
            rekey = kind == CommandKind.ROTATE_KEY
            packet = self.stations.seal(
                satellite, lambda keys: keys.rotate() if rekey else keys.seal(command)
            )
        station = self.stations.best_uplink(satellite, len(packet))
        bundle = self.stations.uplink(station, satellite, Service.COMMAND, packet)
        return {
            "accepted": None,
            "state": "queued",
            "bundle": bundle.id,
            "packet_hex": packet.hex(),
        }

    def _upload(self, satellite: str, args: dict[str, Any]) -> dict[str, Any]:
        path = args.get("path")
        if not isinstance(path, str) or not Path(path).is_dir():
            raise InputError("upload-model needs args.path: a checkpoint directory on the ground")
        files = manifest(Path(path))
        doc = {"name": str(args.get("name") or Path(path).name), "digest": digest_of(files)}
        command = Command(CommandKind.UPLOAD_MODEL, {**doc, "files": files})
        check_command(command.args)  # a bad name is refused here, not on board
        packet = self.stations.seal(satellite, lambda keys: keys.seal(command))
        station = self.stations.best_uplink(satellite, PART_BYTES)
        sent = [
            self.stations.uplink(station, satellite, Service.MODEL, part)
            for part in parts(Path(path), files)
        ]
        bundle = self.stations.uplink(station, satellite, Service.COMMAND, packet)
        return {
            "accepted": None,
            "state": "queued",
            "bundle": bundle.id,
            **doc,
            "parts": len(sent),
            "bytes": sum(f["bytes"] for f in files.values()),
            "packet_hex": packet.hex(),
        }

    def stats(self) -> dict[str, Any]:
        held = {n: a.store.sizes() for n, a in self.stations.agents.items()}
        return {
            "link": self.name,
            **({} if self.ready() else {"status": "starting"}),
            "ground": dict(self.stations.counts),
            "telemetry_records": self.stations.telemetry.count(),
            "stations_holding": {n: s for n, s in held.items() if s["forward"] or s["local"]},
        }
