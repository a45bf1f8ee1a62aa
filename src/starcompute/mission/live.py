"""The ground segment on a live clock: the whole life of a request, from admission to
the last chunk of its answer on the ground.

The orbit clock runs ``time_scale`` times faster than the wall clock from a chosen start
(``times.OrbitClock``). For each request the ground segment takes a place in a bounded
queue (``QueueFullError`` when full), has mission control book the trip at "orbit now"
for the most it may need (``max_tokens`` of answer: the length is not known until the
model stops), sends the job through the space segment (``mission.spacelink``: the
in-process twin, or the testbed's bundles) and releases text only as answer chunks reach
the ground. A failure that strikes a trip, or a serving satellite that stays silent past
its planned delivery, gets the query planned again from the ground; chunks already given
are not given twice. Every request is logged (``mission.requestlog``). Mission control,
which is not thread-safe, plans on one worker thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from starcompute.compute.engine import (
    Completion,
    GenerationRequest,
    TokenLogprob,
    prompt_token_count,
)
from starcompute.errors import (
    InputError,
    OutOfContactError,
    PlanEndedError,
    QueueFullError,
    StarcomputeError,
    TelecommandError,
    UnavailableError,
)
from starcompute.mission import views
from starcompute.mission.command_log import CommandLog
from starcompute.mission.control import Mission, Trace
from starcompute.mission.failures import Outage, OutageKind
from starcompute.mission.health import profile
from starcompute.mission.policy import DEFAULT_POLICY
from starcompute.mission.requestlog import RequestLog
from starcompute.mission.spacelink import Arrival, SpaceLink
from starcompute.mission.telemetry import TelemetryStore, limits_of
from starcompute.mission.traffic import answer_bytes, chunk_bytes, job_bytes
from starcompute.node.jobs import DEFAULT_CHUNK_TOKENS, Query
from starcompute.routing.network import lookup_node
from starcompute.security.telecommand import packet_id
from starcompute.times import OrbitClock, format_utc, from_offsets, offsets_s

COMMAND_BYTES = 256  # an operator's sealed telecommand in its bundle (raw packets: their size)
CONTACT_SLACK_S = 10.0  # a command arriving within this of now is in contact (relays, light)

TokenCounter = Callable[[GenerationRequest], int]
logger = logging.getLogger(__name__)


class _StruckError(Exception):
    """The trip must be planned again (a failure struck it, or its satellite is silent)."""


@dataclass(slots=True)
class _Trip:
    """A request's current plan; ``struck`` is set when a failure hits it."""

    trace: Trace
    struck: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class Event:
    """What a request yields: ``planned`` (trace), ``piece`` (text), ``done``."""

    kind: str
    request_id: str = ""
    text: str = ""
    trace: Trace | None = None
    completion: Completion | None = None
    wall_ttft_s: float | None = None  # wall seconds from the request to its first text
    wall_s: float = 0.0  # wall seconds from the request to this event
    logprobs: tuple[TokenLogprob, ...] = ()  # a piece's tokens' (when the request asks)
    prompt_logprobs: tuple[TokenLogprob, ...] = ()  # the prompt's (echo: the first piece)

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
    """Mission control, the space link and the request log behind the gateway."""

    def __init__(
        self,
        mission: Mission,
        link: SpaceLink,
        clock: OrbitClock,
        log: RequestLog | None = None,
        max_queue: int = 64,
        policy: str = DEFAULT_POLICY,
        deadline_s: float = 3600.0,
        replan: Callable[[np.datetime64], Mission] | None = None,
        model: str = "model",
        tokens: TokenCounter | None = None,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        silence_s: float | None = None,
        commands: CommandLog | None = None,
        telemetry_s: float = 300.0,
    ) -> None:
        """``replan(start)``: a new mission plan from ``start`` when the clock nears the
        end of the current one (None: requests past the plan are refused). ``silence_s``:
        orbit seconds past a trip's planned delivery after which a satellite that sent
        nothing is taken as failed and the query is planned again (None: never).
        ``commands``: the operators' command history (in memory if None). Telemetry is
        the link's own (``link.telemetry``: housekeeping bundles on the testbed) or, over
        the twin, its model read every ``telemetry_s`` orbit seconds."""
        if max_queue < 1:
            raise InputError(f"queue size must be >= 1, got {max_queue}")
        self.mission, self.link, self.clock = mission, link, clock
        self.log = log or RequestLog()
        self.max_queue, self.policy, self.deadline_s = max_queue, policy, deadline_s
        self.replan, self.model, self.tokens = replan, model, tokens
        self.chunk_tokens, self.silence_s = chunk_tokens, silence_s
        self.planner = ThreadPoolExecutor(1, thread_name_prefix="mission-control")
        self.in_flight = 0
        self.completed = 0
        self._trips: dict[str, _Trip] = {}  # requests in flight by id
        self.commands = commands if commands is not None else CommandLog()
        if not telemetry_s > 0:
            raise InputError(f"telemetry period must be > 0 s, got {telemetry_s}")
        self.telemetry_s = telemetry_s
        self.telemetry: TelemetryStore = getattr(link, "telemetry", None) or TelemetryStore()
        const = mission.const
        self.telemetry.set_limits(
            {n: limits_of(profile(h)) for n, h in zip(const.names, const.hardware, strict=True)}
        )
        if hasattr(link, "on_housekeeping"):  # housekeeping that comes down verifies commands
            link.on_housekeeping = self._housekept

    def close(self) -> None:
        close = getattr(self.link, "close", None)
        if close is not None:
            close()
        self.planner.shutdown(wait=True)

    # ------------------------------------------------------------------ requests
    def _admit(self) -> str:
        if self.in_flight >= self.max_queue:
            retry = float(max(1, round(self.max_queue / 16)))
            raise QueueFullError(self.max_queue, retry)
        self.in_flight += 1
        return f"chatcmpl-{uuid.uuid4().hex[:24]}"

    def prompt_tokens(self, request: GenerationRequest) -> int:
        """Token count of the prompt (validates it against the context window)."""
        return prompt_token_count(request, self.tokens)

    async def request(
        self, request: GenerationRequest, key_id: str | None = None, stream: bool = False
    ) -> AsyncIterator[Event]:
        """Admit (QueueFullError), plan (DeadlineError, InputError), serve: ``planned``,
        then ``piece`` events as answer chunks reach the ground, then ``done``. However
        it ends, the queue place is given back and the outcome is logged."""
        request_id = self._admit()
        self.log.start(request_id, time.time(), key_id, self.model, stream)
        gone = threading.Event()  # the caller stopped listening: the engine drops it
        request = dataclasses.replace(request, cancelled=gone.is_set)
        outcome: dict[str, Any] = {"status": "cancelled", "error": None}
        try:
            async for event in self._run(request_id, request, outcome):
                yield event
        except Exception as exc:
            outcome.update(status="failed", error=str(exc))
            raise
        finally:
            gone.set()
            self.in_flight = max(0, self.in_flight - 1)
            if outcome["status"] != "completed":
                self.log.finish(request_id, status=outcome["status"], error=outcome["error"])

    async def _run(
        self, request_id: str, request: GenerationRequest, outcome: dict[str, Any]
    ) -> AsyncIterator[Event]:
        t0 = time.perf_counter()
        prompt_tokens = self.prompt_tokens(request)
        if request.temperature > 0 and request.seed is None:  # a re-run repeats the tokens
            request = dataclasses.replace(request, seed=secrets.randbits(31))
        query = Query.of(request_id, request, self.chunk_tokens)
        echoed = prompt_tokens if request.echo else 0
        answer = answer_bytes(request.max_tokens, self.chunk_tokens, request.logprobs, echoed)
        sizes = (job_bytes(query, self.model), answer)
        steps = max(request.max_tokens, 1)  # scoring a prompt (0 tokens): timed as one step
        trip = _Trip(await self._plan(prompt_tokens, steps, *sizes))
        self._trips[request_id] = trip
        self.log.planned(request_id, trip.trace.to_dict())  # its path, while it travels
        try:
            yield Event("planned", request_id, trace=trip.trace, wall_s=time.perf_counter() - t0)
            arrivals: list[Arrival] = []
            ttft: float | None = None
            async for arrival in self._arrivals(query, trip, request, prompt_tokens, sizes):
                arrivals.append(arrival)
                chunk = arrival.chunk
                if chunk.text:
                    ttft = ttft if ttft is not None else time.perf_counter() - t0
                if chunk.text or chunk.logprobs or chunk.prompt_logprobs:
                    yield Event(
                        "piece",
                        request_id,
                        text=chunk.text,
                        logprobs=chunk.logprobs,
                        prompt_logprobs=chunk.prompt_logprobs,
                    )
            done = self._finish(request_id, trip.trace, arrivals, ttft, time.perf_counter() - t0)
            if request.logprobs is not None:
                done.answer().logprobs = [t for a in arrivals for t in a.chunk.logprobs]
                prompt = [t for a in arrivals for t in a.chunk.prompt_logprobs]
                done.answer().prompt_logprobs = prompt or None
            outcome["status"] = "completed"
            yield done
        finally:
            self._trips.pop(request_id, None)

    async def _arrivals(
        self,
        query: Query,
        trip: _Trip,
        request: GenerationRequest,
        prompt_tokens: int,
        sizes: tuple[int, int],
    ) -> AsyncIterator[Arrival]:
        """The answer's chunks in order, each once, across re-plans (each attempt is a
        job of its own: ``<request id>.<attempt>``)."""
        given, attempt = 0, 0
        while True:
            job = dataclasses.replace(query, query_id=f"{query.query_id}.{attempt}")
            held: dict[int, Arrival] = {}
            try:
                async for arrival in self._watch(job, trip, request):
                    held[arrival.chunk.seq] = arrival
                    while given in held:  # in order: chunks may come down different ways
                        out = held.pop(given)
                        given += 1
                        yield out
                        if out.chunk.final:
                            return
                raise StarcomputeError(
                    f"the answer to {query.query_id} ended without its last chunk"
                )
            except _StruckError:
                attempt += 1
                steps = max(request.max_tokens, 1)
                trip.trace = await self._plan(prompt_tokens, steps, *sizes)
                trip.trace.replans = attempt
                self.log.planned(query.query_id, trip.trace.to_dict())

    async def _watch(
        self, job: Query, trip: _Trip, request: GenerationRequest
    ) -> AsyncIterator[Arrival]:
        """The link's arrivals for one attempt; _StruckError if a failure strikes the trip or
        the satellite stays silent ``silence_s`` past the planned delivery (or past its
        last chunk, once that is later) and nothing else of it came down meanwhile."""
        source = self.link.serve(job, trip.trace, self.model, request.cancelled).__aiter__()
        pending: asyncio.Future[Arrival] | None = None
        struck: asyncio.Future[Any] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(anext(source))
                struck = asyncio.ensure_future(trip.struck.wait())
                timeout = self._silence_wall_s(trip)
                await asyncio.wait(
                    {pending, struck}, timeout=timeout, return_when="FIRST_COMPLETED"
                )
                struck.cancel()
                if pending.done() and not trip.struck.is_set():
                    done, pending = pending, None
                    try:
                        arrival = done.result()
                    except StopAsyncIteration:
                        return
                    except StarcomputeError:  # e.g. no way down: a failure may be why
                        if not any(self._strikes(o, trip.trace) for o in self.mission.outages):
                            raise
                        raise _StruckError from None
                    yield await self._planned(arrival, trip.trace)
                    continue
                if not trip.struck.is_set():
                    if self._heard_lately(trip.trace.serving_satellite):
                        continue  # alive (it reports), only slow: keep waiting for it
                    await self._silent(trip.trace)
                trip.struck.clear()
                raise _StruckError
        finally:
            for task in (pending, struck):  # nothing of this attempt is left running
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            close = getattr(source, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    def _strikes(self, outage: Outage, trace: Trace) -> bool:
        """Does ``outage`` strike a trip in flight? Any leg it needs while it is out
        (``Outage.hits``), or its serving satellite from now or before the planned
        delivery: that satellite holds the job until its answer is down, which may be
        later than planned (the plan's inference time is the hardware's; the host running
        it may be slower)."""
        if outage.kind == OutageKind.SATELLITE and outage.target == trace.serving_satellite:
            return bool(outage.start <= max(trace.delivered, self.clock.now()))
        return outage.hits(trace.legs)

    async def _planned(self, arrival: Arrival, trace: Trace) -> Arrival:
        """The arrival with the plan's time for it, where the link did not give one: the
        earliest route down from when the satellite's hardware would have computed it."""
        if arrival.planned is not None:
            return arrival
        m = self.mission
        loop = asyncio.get_running_loop()
        planned = await loop.run_in_executor(
            self.planner, lambda: chunk_plan(m, arrival.chunk, trace)
        )
        return dataclasses.replace(arrival, planned=planned)

    def _heard_lately(self, satellite: str) -> bool:
        """Has anything from ``satellite`` come down within ``silence_s``?"""
        heard = getattr(self.link, "heard_from", lambda _: None)(satellite)
        if heard is None or self.silence_s is None:
            return False
        return float(offsets_s(self.clock.now(), heard)) < self.silence_s

    def _silence_wall_s(self, trip: _Trip) -> float | None:
        if self.silence_s is None:
            return None
        return self.clock.wall_until(trip.trace.delivered) + self.silence_s / self.clock.time_scale

    async def _silent(self, trace: Trace) -> None:
        """The serving satellite said nothing long past the planned delivery: mission
        control takes it as out for a while (other trips on it are struck too)."""
        outage = Outage.lasting(
            "satellite",
            trace.serving_satellite,
            self.clock.now(),
            max(self.silence_s or 60.0, 60.0) / 60.0,
            "silent",
        )
        await self.fail(outage)

    def _finish(
        self,
        request_id: str,
        trace: Trace,
        arrivals: list[Arrival],
        ttft: float | None,
        wall_s: float,
    ) -> Event:
        last = arrivals[-1].chunk
        if last.finish_reason == "error":
            raise UnavailableError(f"the satellite could not answer: {last.text}")
        text = "".join(a.chunk.text for a in arrivals)
        completion = Completion(
            text,
            last.prompt_tokens,
            last.completion_tokens,
            last.finish_reason or "stop",
            ttft or 0.0,
            wall_s,
        )
        trace.observed = observed(self.link.name, trace, arrivals)
        self.completed += 1
        self.log.finish(
            request_id,
            status="completed",
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            wall_ttft_s=ttft,
            wall_total_s=wall_s,
            orbit_submitted=format_utc(trace.submitted),
            orbit_delivered=format_utc(arrivals[-1].delivered),
            trace=trace.to_dict(),
        )
        return Event(
            "done", request_id, trace=trace, completion=completion, wall_ttft_s=ttft, wall_s=wall_s
        )

    # ------------------------------------------------------------------ planning
    async def _plan(self, prompt_tokens: int, max_tokens: int, up: int, down: int) -> Trace:
        """Book the trip from the ground at orbit now (on the planner thread)."""
        at = self.clock.now()
        return await asyncio.get_running_loop().run_in_executor(
            self.planner,
            lambda: self._current(at).submit(
                None,
                at,
                prompt_tokens,
                max_tokens,
                up,
                down,
                policy=self.policy,
                deadline_s=self.deadline_s,
            ),
        )

    async def fail(self, outage: Outage) -> list[str]:
        """Plan around ``outage`` from now on; the requests whose trips it strikes are
        planned again from the ground (their ids are returned)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.planner, lambda: self.mission.fail(outage))
        struck = [rid for rid, trip in self._trips.items() if self._strikes(outage, trip.trace)]
        for rid in struck:
            self._trips[rid].struck.set()
        return struck

    async def current(self) -> Mission:
        """The mission plan for orbit now, rolled forward first if the clock nears its end
        (on the planner thread; a plan that cannot roll is returned as it is)."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(PlanEndedError):
            await loop.run_in_executor(self.planner, self._current, self.clock.now())
        return self.mission

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

    def command(
        self,
        satellite: str,
        kind: str | None,
        args: dict[str, Any],
        packet: bytes | None,
        wait: bool = False,
    ) -> dict[str, Any]:
        """An operator's telecommand, or a raw packet from any transmitter, to a satellite
        that a station reaches now. Out of contact: OutOfContactError with the next
        contact (a command is not taken as accepted on board while nothing can carry it
        there), or with ``wait`` it is queued and goes up with that contact."""
        m = self.mission
        sat = lookup_node(m.names(), satellite)
        if sat >= m.n_sat:
            raise InputError(f"{satellite!r} is a station: telecommands go to satellites")
        sent = self.clock.now()
        now_s = float(offsets_s(sent, m.plan.start))
        size = len(packet) if packet is not None else COMMAND_BYTES
        arrive = m.uplink(sat, now_s, size)
        if arrive is None:
            raise OutOfContactError(satellite, None)
        later = from_offsets(m.plan.start, [arrive])[0]
        if arrive - now_s > CONTACT_SLACK_S and not wait:
            raise OutOfContactError(satellite, later)
        try:
            out = self.link.command(satellite, kind, args, packet, later)
        except TelecommandError as exc:  # a raw packet refused on board at once
            raw = packet if packet is not None else b""
            self.commands.add(
                satellite, kind or "raw", args, packet_id(raw), sent, later, "rejected", exc.reason
            )
            raise
        state = "accepted" if out.get("accepted") else "queued"
        ident = packet_id(bytes.fromhex(out.get("packet_hex", "")))
        logged = self.commands.add(satellite, kind or "raw", args, ident, sent, later, state)
        return {**out, **logged, "arrives": format_utc(later)}

    # ------------------------------------------------------------------ telemetry
    def _housekept(self, satellite: str, record: dict[str, Any], at: np.datetime64) -> None:
        """A housekeeping record reached the ground: the outcomes of commands in it."""
        outcomes = (record.get("commands") or {}).get("recent")
        if isinstance(outcomes, list):
            self.commands.verify(satellite, outcomes, at)

    def sample_telemetry(self) -> int:
        """Over the twin: every satellite's housekeeping now, kept as received now (the
        testbed's comes down as bundles instead); returns how many records."""
        read = getattr(self.link, "housekeeping", None)
        if read is None:
            return 0
        now = self.clock.now()
        queue: dict[str, int] = {}
        for trip in self._trips.values():
            sat = trip.trace.serving_satellite
            queue[sat] = queue.get(sat, 0) + 1
        records = read(now, queue)
        self.telemetry.add_many("twin", now, records)
        for satellite, record in records:
            self._housekept(satellite, record, now)
        return len(records)

    async def run_telemetry(self) -> None:
        """Sample the twin's telemetry every ``telemetry_s`` orbit seconds (1 s of wall
        time at least) until cancelled; nothing to do over the testbed."""
        if getattr(self.link, "housekeeping", None) is None:
            return
        period = max(1.0, self.clock.wall_s(self.telemetry_s))
        while True:
            try:
                self.sample_telemetry()
            except Exception:  # telemetry must never stop the ground segment
                logger.exception("telemetry sampling failed")
            await asyncio.sleep(period)

    # ------------------------------------------------------------------ views
    def health(self) -> dict[str, Any]:
        plan = self.mission.plan
        return {
            "status": "ok",
            "model": self.model,
            "orbit_time": format_utc(self.clock.now()),
            "wall_time_unix_s": time.time(),  # the server's clock at that reading
            "plan_start": format_utc(plan.start),  # the span /api/czml draws (it rolls on)
            "plan_end": format_utc(plan.start + np.timedelta64(round(plan.duration_s), "s")),
            "time_scale": self.clock.time_scale,
            "in_flight": self.in_flight,
            "queue_limit": self.max_queue,
            "completed": self.completed,
            **self.link.stats(),
        }

    def contacts(self, window_s: float) -> dict[str, Any]:
        return views.contacts(self.mission, self.clock.now(), window_s)

    def timeline(self, before_s: float, ahead_s: float) -> dict[str, Any]:
        """The pass timeline: contact windows from ``before_s`` ago to ``ahead_s`` ahead,
        and the planned hops of every request in flight (its bookings on them)."""
        now = self.clock.now()
        doc = views.contacts(self.mission, now, ahead_s, before_s)
        doc["span"] = {
            "from": format_utc(now - np.timedelta64(round(before_s * 1e3), "ms")),
            "to": format_utc(now + np.timedelta64(round(ahead_s * 1e3), "ms")),
        }
        doc["requests"] = [
            {
                "id": rid,
                "serving_satellite": trip.trace.serving_satellite,
                "hops": trip.trace.hops(),
            }
            for rid, trip in self._trips.items()
        ]
        return doc

    def positions(self) -> dict[str, Any]:
        return views.positions(self.mission, self.clock.now())

    def seu_rate_per_bit_per_day(self) -> float:
        return views.mean_seu_rate(self.mission, self.clock.now())


def _received_late_s(trace: Trace, chunk: Any) -> float | None:
    """The query's arrival on board (the node's clock) minus the plan's."""
    from starcompute.dtn.bundle import from_dtn_ms

    up = [g for g in trace.legs if g.dst == trace.serving_satellite]
    if not up:
        return None
    return round(float(offsets_s(from_dtn_ms(chunk.received_ms), up[0].arrive)), 3)


def chunk_plan(m: Mission, chunk: Any, trace: Trace) -> np.datetime64:
    """When the plan would deliver ``chunk``: released at its predicted (hardware) time,
    down by the earliest route from then (nothing booked); the trace's delivery if none."""
    from starcompute.dtn.bundle import from_dtn_ms

    t_s = float(offsets_s(from_dtn_ms(chunk.predicted_ms), m.plan.start))
    size = chunk_bytes(chunk)
    found = m.downlink(m.const.index(chunk.satellite), t_s, size)
    if found is None:
        return trace.delivered
    return m.plan.start + np.timedelta64(round(found[1] * 1e9), "ns")


def observed(link: str, trace: Trace, arrivals: list[Arrival]) -> dict[str, Any]:
    """What happened to a request, beside what was planned: per chunk its on-board
    times (host computed, hardware predicted, released) and its arrival on the ground."""
    from starcompute.dtn.bundle import from_dtn_ms

    first, last = arrivals[0], arrivals[-1]
    c = last.chunk
    return {
        "link": link,
        "pace": c.pace,
        "serving_satellite": c.satellite,
        "received_on_board": format_utc(from_dtn_ms(c.received_ms)),
        "inference_start": format_utc(from_dtn_ms(c.started_ms)),
        "host_inference_s": round((c.computed_ms - c.started_ms) / 1000.0, 3),
        "predicted_inference_s": round((c.predicted_ms - c.started_ms) / 1000.0, 3),
        "first_delivery": format_utc(first.delivered),
        "delivered": format_utc(last.delivered),
        "delivered_minus_planned_s": round(float(offsets_s(last.delivered, trace.delivered)), 3),
        "query_received_minus_planned_s": _received_late_s(trace, c),
        "chunks": [a.to_dict() for a in arrivals],
    }
