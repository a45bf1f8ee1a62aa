"""The in-process path obeys the same causality as the testbed: text reaches the caller
only when the answer's chunks reach the ground, on the live clock; the job the engine
runs is the one the satellite verified."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import numpy as np

from starcompute import load_constellation, load_stations, parse_utc
from starcompute.compute.engine import GenerationRequest
from starcompute.mission.control import Mission
from starcompute.mission.twin import twin_segment
from starcompute.times import OrbitClock, format_utc, offsets_s

from fakes import EchoEngine

START = parse_utc("2025-11-20T00:00:00Z")
SCALE = 600.0


def _alaska_mission() -> tuple[Mission, np.datetime64]:
    """Three-Body seen from AWS's Alaska site alone: hours without a contact, then a
    five-hour cluster of passes (the first AOS after a gap of at least three hours)."""
    alaska = [s for s in load_stations("aws") if s.name == "AWS-Alaska"]
    m = Mission.build(load_constellation("three-body-12"), alaska, START, 24 * 3600.0)
    passes = sorted(zip(m.plan.ground.aos_s.tolist(), m.plan.ground.los_s.tolist(), strict=True))
    end = -1e9
    for aos, los in passes:
        if aos - end >= 3 * 3600.0 and aos > 3600.0:
            return m, START + np.timedelta64(round(aos * 1e3), "ms")
        end = max(end, los)
    raise AssertionError("no gap of three hours")


def test_no_text_before_its_chunk_reaches_the_ground() -> None:
    m, aos = _alaska_mission()
    submitted = aos - np.timedelta64(20 * 60, "s")  # 20 orbit minutes (2 s) before the pass
    clock = OrbitClock(submitted, SCALE)
    engine = EchoEngine()
    segment = twin_segment(m, engine, clock, model="echo", chunk_tokens=2)

    def wall(orbit: str) -> float:
        return clock.epoch_unix_s + float(offsets_s(parse_utc(orbit), clock.start)) / SCALE

    async def go() -> tuple[list[tuple[float, str]], dict]:  # type: ignore[type-arg]
        pieces: list[tuple[float, str]] = []
        trace = None
        request = GenerationRequest(prompt="one two three four five six seven", max_tokens=7)
        async for event in segment.request(request):
            if event.kind == "piece":
                pieces.append((time.time(), event.text))
            elif event.kind == "done":
                trace = event.planned().to_dict()
        assert trace is not None
        return pieces, trace

    try:
        pieces, trace = asyncio.run(go())
    finally:
        segment.close()
    assert trace["timings_s"]["wait_for_contact"] > 1000  # the query waited for the pass
    chunks = trace["observed"]["chunks"]
    assert [p for _, p in pieces] == ["one ", "two three ", "four five ", "six seven "]
    assert len(chunks) == 5 and engine.calls == 1  # the first token alone, ..., the final
    for (t, _), chunk in zip(pieces, chunks[:-1], strict=True):  # the final one: no text
        # a piece is given out no earlier than its chunk's delivery on the live clock
        # (50 ms: the event loop's and the clock's resolution, 30 orbit s at x600)
        assert t >= wall(chunk["delivered"]) - 0.05
        assert parse_utc(chunk["delivered"]) >= aos  # nothing comes down before the pass
        assert parse_utc(chunk["released"]) >= parse_utc(chunk["predicted"])


def test_an_answer_finished_after_the_last_pass_waits_for_the_next_one() -> None:
    """Submitted in the last pass of a cluster: the job goes up at once, but the answer
    is computed after loss of signal, so every piece waits hours (seconds at x3000) for
    the next cluster of passes."""
    m, _ = _alaska_mission()
    passes = sorted(zip(m.plan.ground.aos_s.tolist(), m.plan.ground.los_s.tolist(), strict=True))
    last = next((a, b) for (a, b), (nxt, _) in itertools.pairwise(passes) if nxt - b >= 3 * 3600)
    scale = 3000.0
    clock = OrbitClock(START + np.timedelta64(round(last[0] * 1e3), "ms"), scale)
    engine = EchoEngine(step_s=0.1)  # 0.7 s of host time: 35 orbit minutes at x3000
    segment = twin_segment(m, engine, clock, model="echo", chunk_tokens=2)

    async def go() -> tuple[list[float], dict]:  # type: ignore[type-arg]
        times, trace = [], None
        request = GenerationRequest(prompt="one two three four five six seven", max_tokens=7)
        async for event in segment.request(request):
            if event.kind == "piece":
                times.append(time.time())
            elif event.kind == "done":
                trace = event.planned().to_dict()
        assert trace is not None
        return times, trace

    try:
        times, trace = asyncio.run(go())
    finally:
        segment.close()
    chunks = trace["observed"]["chunks"]
    los = START + np.timedelta64(round(last[1] * 1e3), "ms")
    for t, chunk in zip(times, chunks[:-1], strict=True):  # the final chunk has no text
        delivered = parse_utc(chunk["delivered"])
        assert parse_utc(chunk["computed"]) > los and delivered - los > np.timedelta64(3, "h")
        wall = clock.epoch_unix_s + float(offsets_s(delivered, clock.start)) / scale
        assert t >= wall - 0.05


def test_a_telecommand_to_a_satellite_out_of_contact_is_refused_with_the_next_contact() -> None:
    """Issue 19: a command is not taken as accepted on board while no station can reach
    the satellite; the refusal says when the contact plan's next way up arrives."""
    import pytest

    from starcompute.errors import OutOfContactError, http_error
    from starcompute.security.telecommand import CommandKind

    m, aos = _alaska_mission()
    sat = m.const.names[0]
    before = aos - np.timedelta64(3600, "s")  # in the gap before the cluster of passes
    segment = twin_segment(m, EchoEngine(), OrbitClock(before, SCALE), model="echo")
    try:
        with pytest.raises(OutOfContactError, match=f"{sat} is out of contact") as refused:
            segment.command(sat, CommandKind.SET_CONFIG, {"max_batch": 4}, None)
        nxt = refused.value.next_contact
        assert nxt is not None and nxt >= aos  # not before the pass that carries it up
        assert http_error(refused.value).code == "out_of_contact"
        assert segment.link.commands.stats()["accepted"] == 0  # nothing reached the satellite

        async def wait_for_it() -> tuple[dict[str, Any], int, int]:
            out = segment.command(sat, CommandKind.SET_CONFIG, {"max_batch": 4}, None, wait=True)
            before = segment.link.commands.stats()["accepted"]
            await asyncio.sleep(segment.clock.wall_until(parse_utc(out["arrives"])) + 0.3)
            return out, before, segment.link.commands.stats()["accepted"]

        queued, before, after = asyncio.run(wait_for_it())
        assert queued["state"] == "queued"
        assert abs(parse_utc(queued["arrives"]) - nxt) < np.timedelta64(1, "ms")
        assert (before, after) == (0, 1)  # opened on board when the contact carried it
    finally:
        segment.close()
    during = aos + np.timedelta64(60, "s")  # a station sees the cluster (ISLs relay)
    segment = twin_segment(m, EchoEngine(), OrbitClock(during, SCALE), model="echo")
    try:
        out = segment.command(sat, CommandKind.SET_CONFIG, {"max_batch": 4}, None)
        assert out["accepted"] is True
    finally:
        segment.close()


def test_the_plan_rolls_on_when_the_dashboard_asks_near_its_end() -> None:
    """Issue 21: the dashboard's scene (/api/czml) is the mission plan for orbit now; near
    the plan's end asking for it rolls the plan on (as a new request would), so the globe
    never runs past the end of what it was given; /healthz says which span it is."""
    const, stations = load_constellation("three-body-12"), load_stations("china")
    start = parse_utc("2025-11-20T00:00:00Z")

    def build(t: np.datetime64) -> Mission:
        return Mission.build(const, stations, t, 2 * 3600.0)

    late = start + np.timedelta64(90 * 60, "s")  # 30 min left: under the 1 h deadline
    segment = twin_segment(build(start), EchoEngine(), OrbitClock(late, SCALE), replan=build)
    try:
        assert segment.health()["plan_start"] == format_utc(start)
        rolled = asyncio.run(segment.current())
        assert rolled.plan.start >= late - np.timedelta64(60, "s")
        health = segment.health()
        assert parse_utc(health["plan_start"]) <= parse_utc(health["orbit_time"])
        assert parse_utc(health["plan_end"]) - parse_utc(health["orbit_time"]) > np.timedelta64(
            3600, "s"
        )
        assert asyncio.run(segment.current()) is rolled  # not again while far from its end
    finally:
        segment.close()
