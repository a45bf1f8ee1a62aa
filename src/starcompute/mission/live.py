"""The ground segment on a live clock: chat requests from the gateway go to orbit, are
answered by the real engine on the serving satellite, and come back when mission control
says they arrive.

The orbit clock runs ``time_scale`` times faster than the wall clock from a chosen
start. For each request mission control books the trip at "orbit now" when it is
admitted, for the most it may need (``max_tokens`` of answer: the length is not known
until the model stops), so that concurrent requests queue behind each other's bookings
rather than all planning into the same free slot; the first token is released when the
satellite starts on the query (after the up trip, waits for contacts and the queue, on
the live clock) and the last one when the answer reaches the ground. The engine behind
a :class:`~starcompute.compute.batcher.Batcher` serves many requests at once; mission
control, which is not thread-safe, plans on one worker thread so the event loop never
blocks on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from starcompute.compute.batcher import Batcher
from starcompute.compute.engine import Completion, Engine, GenerationRequest
from starcompute.errors import InputError, StarcomputeError
from starcompute.mission.control import Mission, Trace
from starcompute.mission.failures import Outage
from starcompute.mission.health import profile
from starcompute.mission.requestlog import RequestLog
from starcompute.mission.wire import QueryPacket, encode
from starcompute.security.telecommand import Command, CommandLink, TelecommandError
from starcompute.times import format_utc, from_offsets, offsets_s

ANSWER_OVERHEAD_BYTES = 64  # packet header, CRC and JSON framing of an answer (approx.)


class QueueFullError(StarcomputeError):
    """The request queue is full; ``retry_after_s`` says when to try again."""

    def __init__(self, limit: int, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"the request queue is full ({limit} requests in flight)")


class PlanEndedError(StarcomputeError):
    """The orbit clock has run past the mission plan (and nothing rolls it forward)."""

    def __init__(self, end: np.datetime64) -> None:
        super().__init__(f"the mission plan ends at {format_utc(end)}: no new queries")


@dataclass(slots=True)
class LiveClock:
    """Orbit time = ``orbit_start`` + (wall time since start) x ``time_scale``."""

    orbit_start: np.datetime64
    time_scale: float = 1.0
    wall_start: float = field(default_factory=time.monotonic)
    wait: bool = True  # False: report orbital waits but do not hold answers for them

    def __post_init__(self) -> None:
        if not (np.isfinite(self.time_scale) and self.time_scale > 0):
            raise InputError(f"time scale must be > 0, got {self.time_scale}")

    def now(self) -> np.datetime64:
        now: np.datetime64 = from_offsets(self.orbit_start, [self.elapsed_s()])[0]
        return now

    def elapsed_s(self) -> float:
        """Orbit seconds since ``orbit_start``."""
        return (time.monotonic() - self.wall_start) * self.time_scale

    def wall_until(self, when: np.datetime64) -> float:
        """Wall seconds until orbit time ``when`` (0 if past, or when not waiting)."""
        if not self.wait:
            return 0.0
        return max(0.0, float(offsets_s(when, self.now())) / self.time_scale)


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


@dataclass(slots=True)
class _Trip:
    """A request's current plan; ``struck`` is set when a failure hits it."""

    trace: Trace
    struck: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class Event:
    """What a request yields: ``planned`` (trace), ``piece`` (text), ``done``."""

    kind: str
    text: str = ""
    trace: Trace | None = None
    completion: Completion | None = None

    def planned(self) -> Trace:
        """The trace of a ``planned`` or ``done`` event."""
        if self.trace is None:
            raise StarcomputeError(f"a {self.kind!r} event carries no trace")
        return self.trace

    def answer(self) -> Completion:
        """The completion of a ``done`` event."""
        if self.completion is None:
            raise StarcomputeError(f"a {self.kind!r} event carries no completion")
        return self.completion


class GroundSegment:
    """Mission control, the engine and the request log behind the gateway."""

    def __init__(
        self,
        mission: Mission,
        engine: Engine,
        clock: LiveClock,
        log: RequestLog | None = None,
        max_queue: int = 64,
        policy: str = "earliest-completion",
        deadline_s: float = 3600.0,
        max_batch: int = 16,
        replan: Callable[[np.datetime64], Mission] | None = None,
    ) -> None:
        """``replan(start)``: a new mission plan from ``start`` when the clock nears the
        end of the current one (None: requests past the plan are refused)."""
        if max_queue < 1:
            raise InputError(f"queue size must be >= 1, got {max_queue}")
        self.mission, self.engine, self.clock = mission, engine, clock
        self.log = log or RequestLog()
        self.max_queue, self.policy, self.deadline_s = max_queue, policy, deadline_s
        self._coming = 0  # admitted, not yet handed to the engine
        self.batcher = Batcher(engine, max_batch, coming=lambda: self._coming)
        self._planner = ThreadPoolExecutor(1, thread_name_prefix="mission-control")
        self.replan = replan
        self._box: _Mailbox | None = None
        self.in_flight = 0
        self.completed = 0
        self._trips: dict[str, _Trip] = {}  # requests in flight by id
        self.commands = CommandLink(frozenset(mission.const.names))  # the uplink's keys

    def close(self) -> None:
        self.batcher.close()
        self._planner.shutdown(wait=True)

    def admit(self) -> str:
        """Take a place in the queue (raises QueueFullError) and return a new request id."""
        if self.in_flight >= self.max_queue:
            raise QueueFullError(self.max_queue, self._retry_after_s())
        self.in_flight += 1
        self._coming += 1
        return f"chatcmpl-{uuid.uuid4().hex[:24]}"

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def _retry_after_s(self) -> float:
        return float(max(1, round(self.max_queue / max(self.batcher.max_batch, 1))))

    def prompt_tokens(self, request: GenerationRequest) -> int:
        """Token count of the prompt (validates it against the context window)."""
        encode_fn = getattr(self.engine, "encode", None)
        if encode_fn is not None:
            return len(encode_fn(request))
        text = request.prompt or " ".join(m.content for m in request.messages)
        return max(1, round(1.3 * len(text.split())))

    async def run(self, request_id: str, request: GenerationRequest) -> AsyncIterator[Event]:
        """Plan, wait for the satellite, generate (pieces as they come), deliver."""
        handed = [False]  # set once the engine has the request
        gone = threading.Event()  # the caller stopped listening: the engine drops it
        request = dataclasses.replace(request, cancelled=gone.is_set)
        try:
            async for event in self._run(request_id, request, handed):
                yield event
        finally:
            gone.set()
            if not handed[0]:
                self._coming -= 1

    async def _run(
        self, request_id: str, request: GenerationRequest, handed: list[bool]
    ) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        prompt_tokens = self.prompt_tokens(request)
        text = " ".join(m.content for m in request.messages) if request.messages else request.prompt
        query_bytes = len(encode(QueryPacket(1, self.engine.name, text or "", request.max_tokens)))
        answer_bytes = ANSWER_OVERHEAD_BYTES + 8 * request.max_tokens
        digest = hashlib.sha256((text or "").encode()).hexdigest()

        async def plan() -> Trace:  # from the ground, at orbit now
            at = self.clock.now()
            return await loop.run_in_executor(
                self._planner,
                lambda: self._current(at).submit(
                    None, at, prompt_tokens, request.max_tokens, query_bytes, answer_bytes,
                    self.policy, self.deadline_s,
                ),
            )  # fmt: skip

        trip = _Trip(await plan())
        self._trips[request_id] = trip
        try:
            yield Event("planned", trace=trip.trace)
            await self._hold(trip, lambda t: t.inference_start, plan)
            self._command_job(trip.trace.serving_satellite, request_id, digest, request.max_tokens)
            pieces: asyncio.Queue[str | None] = asyncio.Queue()
            mailbox = self._mailbox(loop)
            future = self.batcher.submit(request, lambda piece: mailbox.post(pieces, piece))
            handed[0] = True
            self._coming -= 1
            future.add_done_callback(lambda _: mailbox.post(pieces, None))
            finished = False
            while not finished:
                burst = [await pieces.get()]
                while not pieces.empty():  # whatever else has arrived goes out together
                    burst.append(pieces.get_nowait())
                finished = burst[-1] is None
                text = "".join(p for p in burst if p is not None)
                if text:
                    yield Event("piece", text=text)
            done = future.result()  # raises what the engine raised
            await self._hold(trip, lambda t: t.delivered, plan)
            self.completed += 1
            yield Event("done", trace=trip.trace, completion=done)
        finally:
            self._trips.pop(request_id, None)

    def _command_job(self, satellite: str, request_id: str, digest: str, max_tokens: int) -> None:
        """The job goes up as an authenticated telecommand bound to its query (SHA-256);
        the satellite runs only what it opened and verified."""
        job = {"query_id": request_id, "model": self.engine.name, "max_tokens": max_tokens,
               "sha256": digest}  # fmt: skip
        _, arrived = self.commands.send(satellite, Command("run-job", job))
        if arrived.args.get("sha256") != digest:
            raise TelecommandError("bad-payload", f"job {request_id} does not match its query")

    async def _hold(
        self,
        trip: _Trip,
        when: Callable[[Trace], np.datetime64 | None],
        plan: Callable[[], Awaitable[Trace]],
    ) -> None:
        """Wait (on the live clock) until ``when(trip.trace)``; if a failure strikes the
        trip meanwhile, plan it again from the ground and wait for the new time."""
        while (target := when(trip.trace)) is not None:
            if not trip.struck.is_set():
                try:
                    await asyncio.wait_for(trip.struck.wait(), self.clock.wall_until(target))
                except TimeoutError:
                    return
            trip.struck.clear()
            replans = trip.trace.replans + 1
            trip.trace = await plan()
            trip.trace.replans = replans

    async def fail(self, outage: Outage) -> list[str]:
        """Plan around ``outage`` from now on; the requests whose trips it strikes are
        planned again from the ground (their ids are returned)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._planner, lambda: self.mission.fail(outage))
        struck = [rid for rid, trip in self._trips.items() if outage.hits(trip.trace.legs)]
        for rid in struck:
            self._trips[rid].struck.set()
        return struck

    def _mailbox(self, loop: asyncio.AbstractEventLoop) -> _Mailbox:
        if self._box is None or self._box.loop is not loop:
            self._box = _Mailbox(loop)
        return self._box

    def _current(self, at: np.datetime64) -> Mission:
        """The mission plan covering ``at`` plus a deadline (rolled forward if need be;
        runs on the planner thread)."""
        left_s = float(offsets_s(self.mission.plan.end, at))
        if left_s < self.deadline_s:
            if self.replan is None:
                raise PlanEndedError(self.mission.plan.end)
            old, self.mission = self.mission, self.replan(at.astype("datetime64[m]"))
            for outage in old.outages:  # what is still out stays out
                if outage.end is None or outage.end > at:
                    self.mission.fail(outage)
        return self.mission

    def contacts(self, window_s: float) -> dict[str, Any]:
        """Ground and laser-link windows open now or opening within ``window_s``."""
        m, now = self.mission, self.clock.now()
        t = float(offsets_s(now, m.plan.start))
        g, isl = m.plan.ground, m.plan.isl
        names, stations = m.plan.satellites, m.plan.stations
        ground = np.flatnonzero((g.los_s > t) & (g.aos_s < t + window_s))
        lasers = np.flatnonzero((isl.end_s > t) & (isl.start_s < t + window_s))

        def at(seconds: float) -> str:
            return str(format_utc(from_offsets(m.plan.start, [seconds])[0]))

        return {
            "orbit_time": format_utc(now),
            "ground": [
                {
                    "station": stations[int(g.station[k])],
                    "satellite": names[int(g.satellite[k])],
                    "aos": at(float(g.aos_s[k])),
                    "los": at(float(g.los_s[k])),
                    "open": bool(g.aos_s[k] <= t),
                }
                for k in ground
            ],
            "isl": [
                {
                    "a": names[int(isl.a[k])],
                    "b": names[int(isl.b[k])],
                    "start": at(float(isl.start_s[k])),
                    "end": at(float(isl.end_s[k])),
                    "open": bool(isl.start_s[k] <= t),
                }
                for k in lasers
            ],
        }

    def _geodetic_now(self) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """(plan seconds now, and every satellite's latitude, longitude deg, altitude km)."""
        from starcompute.orbits.frames import ecef_to_geodetic

        m = self.mission
        t_s = float(offsets_s(self.clock.now(), m.plan.start))
        t_s = min(max(t_s, 0.0), m.plan.duration_s)
        r = m.eph.r_ecef_at(np.arange(m.n_sat), np.full(m.n_sat, t_s))
        lat, lon, alt = ecef_to_geodetic(r)
        return t_s, lat, lon, alt

    def seu_rate_per_bit_per_day(self) -> float:
        """The constellation's mean upset rate now: the radiation model at every
        satellite's position (one engine stands for all the serving satellites)."""
        from starcompute.spacecraft.radiation import seu_rate_per_bit_per_day

        _, lat, lon, alt = self._geodetic_now()
        return float(np.mean(seu_rate_per_bit_per_day(lat, lon, alt)))

    def positions(self) -> dict[str, Any]:
        """Every satellite now: sub-satellite point, altitude, sunlit, battery, role."""
        m, now = self.mission, self.clock.now()
        t_s, lat, lon, alt = self._geodetic_now()
        out = []
        for i in range(m.n_sat):
            energy, temp = m.health.at(i, t_s) if m.health else (float("nan"), float("nan"))
            capacity = profile(m.const.hardware[i]).battery.capacity_wh
            out.append(
                {
                    "name": m.const.names[i],
                    "role": m.const.roles[i],
                    "shell": m.const.shells[i],
                    "lat_deg": round(float(lat[i]), 4),
                    "lon_deg": round(float(lon[i]), 4),
                    "alt_km": round(float(alt[i]), 3),
                    "sunlit": m.health.sunlit_at(i, t_s) if m.health else None,
                    "battery_soc": round(energy / capacity, 4),
                    "temperature_c": round(temp, 2),
                }
            )
        return {"orbit_time": format_utc(now), "satellites": out}
