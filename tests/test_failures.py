"""Failures mission control plans around (issue 10): a lost serving satellite, a ground
station out for 10 minutes, a laser link down. Every affected query is planned again from
the ground and delivered by another way; none is lost."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from starcompute import InputError, load_constellation, load_stations, parse_utc
from starcompute.errors import DeadlineError
from starcompute.mission.control import Mission, Trace
from starcompute.mission.failures import Outage

START = parse_utc("2025-11-20T00:00:00Z")
SECOND = np.timedelta64(1, "s")


def _mission() -> Mission:
    return Mission.build(
        load_constellation("three-body-12"), load_stations("china,ksat"), START, 12 * 3600.0
    )


def _submit(m: Mission, at: np.datetime64) -> Trace:
    return m.submit(None, at, 40, 64, 200, 600, deadline_s=6 * 3600.0)


def test_a_lost_serving_satellite_is_replaced_mid_query() -> None:
    m = _mission()
    at = START + 600 * SECOND
    first = _submit(m, at)
    assert first.inference_start is not None
    dies = first.inference_start + SECOND  # mid-inference
    lost = Outage("satellite", first.serving_satellite, dies, None, "lost")
    m.fail(lost)
    assert lost.hits(first.legs)
    again = _submit(m, dies)  # the ground still holds the query: it goes up again
    assert again.serving_satellite != first.serving_satellite
    assert first.serving_satellite not in again.path_up + again.path_down
    assert again.delivered > dies
    # and nothing planned after the loss uses that satellite again
    for minute in range(20, 600, 40):
        tr = _submit(m, START + minute * 60 * SECOND)
        assert first.serving_satellite not in tr.path_up + tr.path_down


def test_a_ten_minute_station_outage_loses_no_query() -> None:
    """120 queries over 2 h; the busiest uplink station goes dark for 10 minutes in the
    middle. Every query whose trip needed it while dark is re-planned; all are delivered,
    none through the dark station while it is dark."""
    m = _mission()
    times = [START + int(t) * SECOND for t in np.linspace(0, 7200, 120)]
    trips = [_submit(m, t) for t in times]
    station = max(set(t.uplink_station for t in trips), key=[t.uplink_station for t in trips].count)
    mid = START + 3600 * SECOND
    outage = Outage("station", station, mid - 300 * SECOND, mid + 300 * SECOND)
    m.fail(outage)
    hit = [i for i, t in enumerate(trips) if outage.hits(t.legs)]
    assert hit  # the outage mattered
    delivered = {}
    for i, tr in enumerate(trips):
        if i in hit:
            tr = _submit(m, max(times[i], outage.start))  # planned again when it went dark
        delivered[i] = tr
        assert not outage.hits(tr.legs)
    assert len(delivered) == len(trips)  # none lost


def test_a_ground_link_outage_is_routed_around() -> None:
    """The link between a station and a satellite fails (its terminal, say) for an hour:
    the trips that used it go another way."""
    m = _mission()
    at = START + 1800 * SECOND
    trip = _submit(m, at)
    g = trip.legs[0]  # the uplink
    outage = Outage("link", f"{g.src}~{g.dst}", at, at + 3600 * SECOND)
    m.fail(outage)
    assert outage.hits(trip.legs)
    again = _submit(m, at)
    assert not outage.hits(again.legs) and again.delivered > at
    for k in range(30):
        assert not outage.hits(_submit(m, at + k * 120 * SECOND).legs)


def test_bad_outages() -> None:
    m = _mission()
    with pytest.raises(InputError, match="kind 'meteor' is unknown"):
        Outage("meteor", "X", START)
    with pytest.raises(InputError, match="a link is named A~B"):
        Outage("link", "TB500-P00-S00", START)
    with pytest.raises(InputError, match="is not after start"):
        Outage("station", "Kashi", START, START)
    with pytest.raises(InputError, match="is not a station"):
        m.fail(Outage("station", "TB500-P00-S00", START))
    with pytest.raises(InputError, match="unknown node"):
        m.fail(Outage("satellite", "TB999", START))


def test_when_every_satellite_is_lost_the_query_gets_an_explicit_error() -> None:
    m = _mission()
    for name in m.plan.satellites:
        m.fail(Outage("satellite", name, START, None, "lost"))
    with pytest.raises(DeadlineError):
        _submit(m, START + 60 * SECOND)


def _segment(m: Mission, at: np.datetime64) -> Any:
    from starcompute.compute.cards import load_card
    from starcompute.compute.perf import ComputeTarget, PerformanceModel, SimulatedEngine
    from starcompute.mission.twin import twin_segment
    from starcompute.spacecraft.hardware import load_hardware
    from starcompute.times import OrbitClock

    target = ComputeTarget.from_profile(load_hardware("three-body-sat"))
    engine = SimulatedEngine(PerformanceModel(load_card("qwen3-8b"), target, "int8"))
    # wait=False: orbital waits are reported, not slept through; the clock still runs
    return twin_segment(m, engine, OrbitClock(at, 1.0, wait=False), max_batch=4)


def test_live_request_survives_the_loss_of_its_serving_satellite_exactly_once() -> None:
    """Through the ground segment the gateway uses: the serving satellite is lost after
    the request was planned; the request is planned again from the ground, answered by
    another satellite, and delivered once."""
    from starcompute.compute.engine import GenerationRequest

    m = _mission()
    seg = _segment(m, START + 600 * SECOND)

    async def go() -> None:
        events = seg.request(GenerationRequest(prompt="What is 2 + 2?", max_tokens=8))
        first = await anext(events)
        serving = first.planned().serving_satellite
        lost = Outage("satellite", serving, seg.clock.now(), None, "lost")
        assert await seg.fail(lost) == [first.request_id]
        rest = [e async for e in events]
        done = [e for e in rest if e.kind == "done"]
        assert len(done) == 1  # delivered exactly once
        final = done[0].planned()
        assert final.serving_satellite != serving and final.replans == 1
        assert serving not in final.path_up + final.path_down
        assert done[0].answer().completion_tokens == 8

    try:
        asyncio.run(go())
    finally:
        seg.close()
    assert seg.completed == 1 and not seg._trips


def test_live_request_with_no_way_left_ends_with_an_explicit_error() -> None:
    from starcompute.compute.engine import GenerationRequest

    m = _mission()
    seg = _segment(m, START + 600 * SECOND)

    async def go() -> None:
        events = seg.request(GenerationRequest(prompt="Hello?", max_tokens=4))
        await anext(events)
        for name in m.plan.satellites:
            await seg.fail(Outage("satellite", name, seg.clock.now(), None, "lost"))
        with pytest.raises(DeadlineError):
            async for _ in events:
                pass

    try:
        asyncio.run(go())
    finally:
        seg.close()
    assert seg.completed == 0 and not seg._trips
