"""The in-process twin of the space segment: no sockets, the same rules.

The job is sealed under the serving satellite's key as it would be uplinked and opened
on board with the satellite's own keys (``node.jobs``): the engine gets the query from
the verified job and nothing else. One local engine (behind a batcher) stands in for
every satellite's accelerator; it starts on a query at the planned inference start. Each
answer chunk leaves the satellite at its pace (``node.pace``: the hardware's predicted
time, never before the host computed it) and reaches the ground when the contact plan's
earliest route down from that instant delivers it: no text is released earlier.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from starcompute.compute.cards import load_card
from starcompute.compute.engine import Engine
from starcompute.compute.perf import ComputeTarget, PerformanceModel
from starcompute.dtn.bundle import dtn_ms, from_dtn_ms
from starcompute.errors import InputError, TelecommandError, UnavailableError
from starcompute.mission import views
from starcompute.mission.control import Mission, Trace
from starcompute.mission.health import profile
from starcompute.mission.live import CONTACT_SLACK_S, GroundSegment
from starcompute.mission.requestlog import RequestLog
from starcompute.mission.spacelink import Arrival
from starcompute.mission.traffic import chunk_bytes
from starcompute.node.jobs import Chunk, Query, open_job, seal_job
from starcompute.node.pace import ChunkBuilder, Pace
from starcompute.security.telecommand import Command, CommandKind, CommandLink
from starcompute.times import OrbitClock, format_utc, offsets_s


def pace_of(m: Mission, satellite: str) -> Pace:
    """The hardware pace of ``satellite``: its profile running the mission's timing card."""
    target = ComputeTarget.from_profile(profile(m.const.hardware[m.const.index(satellite)]))
    return Pace("hardware", PerformanceModel(load_card(m.timing_card), target, m.quant))


def chunk_arrival(m: Mission, chunk: Chunk, after: np.datetime64) -> Arrival:
    """When a chunk reaches the ground: the earliest route down from its release, never
    before ``after`` (StarcomputeError if the plan has no way down from there)."""
    released = from_dtn_ms(chunk.released_ms)
    t_s = float(offsets_s(released, m.plan.start))
    size = chunk_bytes(chunk)
    found = m.downlink(m.const.index(chunk.satellite), t_s, size)
    if found is None:
        raise UnavailableError(
            f"no way down from {chunk.satellite} after {format_utc(released)} in the plan"
        )
    delivered = max(m.plan.start + np.timedelta64(round(found[1] * 1e9), "ns"), after)
    return Arrival(chunk, delivered, found[0], planned=delivered)


class _Mailbox:
    """Pieces from the engine's thread to the event loop, one wake-up per burst: the
    engine emits a piece for every request at every decode step, and waking the loop
    for each would cost the engine its speed (the GIL)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.items: list[tuple[asyncio.Queue[str | None], str | None]] = []
        self.scheduled = False

    def post(self, queue: asyncio.Queue[str | None], item: str | None) -> None:
        with self.lock:
            self.items.append((queue, item))
            if self.scheduled:
                return
            self.scheduled = True
        self.loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self.lock:
            items, self.items, self.scheduled = self.items, [], False
        for queue, item in items:
            queue.put_nowait(item)


class TwinLink:
    """Jobs answered by the local engine on the planned times of the contact plan."""

    name = "twin"

    def __init__(
        self,
        engine: Engine,
        clock: OrbitClock,
        mission: Callable[[], Mission],
        commands: CommandLink,
        max_batch: int = 16,
        continuous: bool = True,
    ) -> None:
        self.engine, self.clock, self.mission, self.commands = engine, clock, mission, commands
        self._coming = 0  # jobs on their way to the engine (a static batcher waits for them)
        self.batcher = engine.scheduler(max_batch, lambda: self._coming, continuous)
        self._box: _Mailbox | None = None
        self.planner: Executor | None = None  # mission control's thread (searches run there)

    def close(self) -> None:
        self.batcher.close()

    def housekeeping(
        self, now: np.datetime64, queue: dict[str, int]
    ) -> list[tuple[str, dict[str, Any]]]:
        """Every satellite's housekeeping now: the twin's model, and the outcome of each
        command its keys opened (as a node reports them)."""
        records = views.housekeeping(self.mission(), now, queue)
        for name, record in records:
            keys = self.commands.onboard.get(name)
            if keys is not None:
                record["commands"] = {
                    "accepted": keys.accepted,
                    "rejected": dict(keys.rejected),
                    "recent": list(keys.recent),
                }
        return records

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"link": self.name, "telecommands": self.commands.stats()}
        stats = self.engine.stats()
        if stats:
            out["radiation"] = stats
        return out

    async def serve(
        self,
        query: Query,
        trace: Trace,
        model: str,
        cancelled: Callable[[], bool] | None = None,
    ) -> AsyncIterator[Arrival]:
        self._coming += 1
        handed = False
        dropped = threading.Event()  # this attempt was given up: the engine drops it

        def gone() -> bool:
            return dropped.is_set() or (cancelled is not None and cancelled())

        try:
            sat = trace.serving_satellite
            ground, onboard = self.commands.ends(sat)
            payload = seal_job(ground, query, model)  # as it is uplinked
            start = trace.inference_start if trace.inference_start is not None else trace.submitted
            await asyncio.sleep(self.clock.wall_until(start))
            verified, _ = open_job(onboard, payload)  # on board, with its own keys
            request = dataclasses.replace(verified.request(), cancelled=gone)
            builder = self._builder(verified, trace, request)
            pieces: asyncio.Queue[str | None] = asyncio.Queue()
            box = self._mailbox()
            future = self.batcher.submit(request, lambda piece: box.post(pieces, piece))
            handed = True
            self._coming -= 1
            future.add_done_callback(lambda _: box.post(pieces, None))
            last = trace.submitted
            while (piece := await pieces.get()) is not None:
                chunk = builder.step(piece, dtn_ms(self.clock.now()))
                if chunk is not None:
                    arrival = await self._arrival(chunk, trace, last)
                    last = arrival.delivered
                    await asyncio.sleep(self.clock.wall_until(last))
                    yield arrival
            done = future.result()  # raises what the engine raised
            final = builder.finish(done, dtn_ms(self.clock.now()))
            arrival = await self._arrival(final, trace, last)
            await asyncio.sleep(self.clock.wall_until(arrival.delivered))
            yield arrival
        finally:
            dropped.set()
            if not handed:
                self._coming -= 1

    def command(
        self,
        satellite: str,
        kind: str | None,
        args: dict[str, Any],
        packet: bytes | None,
        arrives: np.datetime64,
    ) -> dict[str, Any]:
        """Seal a command on the ground and open it on board when it ``arrives``: now,
        with the verdict (TelecommandError when the satellite refuses it: a raw packet
        that is forged, tampered, replayed, ...), or at its next contact (queued; the
        verdict is counted on board then)."""
        if kind == CommandKind.UPLOAD_MODEL:
            raise InputError(
                "upload-model needs the testbed (`starcompute testbed --serve`): the twin "
                "serves one local engine for every satellite"
            )
        if packet is None:
            ground = self.commands.ends(satellite)[0]
            command = Command(kind or "", args)
            packet = ground.rotate() if kind == CommandKind.ROTATE_KEY else ground.seal(command)
        delay_s = self.clock.wall_until(arrives)
        if delay_s <= self.clock.wall_s(CONTACT_SLACK_S):
            arrived = self.commands.receive(satellite, packet)
            return {"accepted": True, "kind": arrived.kind, "packet_hex": packet.hex()}
        loop = asyncio.get_running_loop()
        loop.call_later(delay_s, self._open_later, satellite, packet)
        return {"accepted": None, "state": "queued", "packet_hex": packet.hex()}

    def _open_later(self, satellite: str, packet: bytes) -> None:
        with contextlib.suppress(TelecommandError):  # refused on board: counted there
            self.commands.receive(satellite, packet)

    def _builder(self, query: Query, trace: Trace, request: Any) -> ChunkBuilder:
        m = self.mission()
        up = [g for g in trace.legs if g.dst == trace.serving_satellite]
        received = up[0].arrive if up else trace.submitted
        prompt_tokens = self.engine.count_tokens(request)
        start = trace.inference_start if trace.inference_start is not None else received
        pace = pace_of(m, trace.serving_satellite)
        return ChunkBuilder(
            query,
            trace.serving_satellite,
            pace,
            dtn_ms(received),
            dtn_ms(start),
            prompt_tokens,
            m.max_batch,
        )

    async def _arrival(self, chunk: Chunk, trace: Trace, after: np.datetime64) -> Arrival:
        """On mission control's thread: it may be booking into the same contact graph."""
        m = self.mission()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.planner, lambda: chunk_arrival(m, chunk, after))

    def _mailbox(self) -> _Mailbox:
        loop = asyncio.get_running_loop()
        if self._box is None or self._box.loop is not loop:
            self._box = _Mailbox(loop)
        return self._box


def twin_segment(
    mission: Mission,
    engine: Engine,
    clock: OrbitClock,
    log: RequestLog | None = None,
    max_queue: int = 64,
    max_batch: int = 16,
    replan: Callable[[np.datetime64], Mission] | None = None,
    model: str | None = None,
    continuous: bool = True,
    **options: Any,
) -> GroundSegment:
    """The ground segment over the in-process twin, with ``engine`` for every satellite
    (continuous batching where it can, unless not ``continuous``)."""
    holder: list[GroundSegment] = []
    commands = CommandLink(frozenset(mission.const.names))
    link = TwinLink(engine, clock, lambda: holder[0].mission, commands, max_batch, continuous)
    segment = GroundSegment(
        mission,
        link,
        clock,
        log,
        max_queue,
        replan=replan,
        model=model or engine.name,
        tokens=engine.count_tokens,
        **options,
    )
    holder.append(segment)
    link.planner = segment.planner
    return segment
