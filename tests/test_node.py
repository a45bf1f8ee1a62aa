"""The flight software of one satellite, in-process (the same classes as the node
processes): job telecommands checked with the node's own keys, answers cut into chunks
at the satellite's pace, custody across a crash, store-and-forward through the link
emulator on the contact plan's windows."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import cbor2
import numpy as np
import pytest

from starcompute import load_constellation, load_stations, parse_utc
from starcompute.compute.engine import Completion
from starcompute.compute.perf import ComputeTarget, PerformanceModel
from starcompute.dtn import tcpcl
from starcompute.dtn.bundle import Bundle, dtn_ms, encode
from starcompute.dtn.eid import MISSION_CONTROL, Eid, NodeNames, Service
from starcompute.dtn.links import EmulatedLinks
from starcompute.dtn.store import BundleStore
from starcompute.errors import JobError, TelecommandError
from starcompute.links.config import IslConfig
from starcompute.links.contact_plan import ContactPlan
from starcompute.links.contacts import contact_plan
from starcompute.node.config import NodeConfig
from starcompute.node.jobs import Chunk, Query, open_job, seal_job
from starcompute.node.pace import ChunkBuilder, Pace
from starcompute.node.runtime import Node, node_status
from starcompute.security.telecommand import GroundKeys, Key, SatelliteKeys
from starcompute.testbed.emulator import LinkEmulator
from starcompute.times import OrbitClock

from fakes import EchoEngine

START = parse_utc("2025-11-20T00:00:00Z")


@pytest.fixture(scope="module")
def plan() -> ContactPlan:
    const = load_constellation("three-body-12")
    return contact_plan(const, load_stations("china"), START, 2 * 3600.0, isl=IslConfig.default())


def _config(name: str, clock: OrbitClock, emulator: str = "127.0.0.1:9") -> NodeConfig:
    return NodeConfig(
        name=name,
        constellation="three-body-12",
        listen="127.0.0.1:0",
        emulator=emulator,
        start=str(np.datetime_as_string(clock.start)) + "Z",
        epoch_unix_s=clock.epoch_unix_s,
        time_scale=clock.time_scale,
        pace="host",
        chunk_tokens=2,
    )


def _job_bundle(names: NodeNames, sat: str, payload: bytes, seq: int) -> bytes:
    b = Bundle(
        Eid(MISSION_CONTROL, 1), names.eid(sat, Service.JOB), dtn_ms(START) + seq, seq, payload
    )
    return encode(b)


async def _send(port: int, *bundles: bytes) -> list[int | None]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    session = await tcpcl.Session.start(reader, writer, "ipn:1.0", 5.0)
    verdicts = [await session.send(b, 5.0) for b in bundles]
    await session.close()
    return verdicts


async def _until(check: Any, timeout_s: float = 10.0) -> None:
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout_s, "timed out"
        await asyncio.sleep(0.02)


def test_job_opens_only_with_its_own_key_once_and_unaltered() -> None:
    key = Key.generate(1)
    ground, onboard = GroundKeys(key), SatelliteKeys(key)
    query = Query("q-1", messages=(("user", "What is 2 + 2?"),), max_tokens=8)
    payload = seal_job(ground, query, "smollm2")
    opened, command = open_job(onboard, payload)
    assert opened == query and command.args["query_id"] == "q-1"
    with pytest.raises(TelecommandError) as replay:
        open_job(onboard, payload)
    assert replay.value.reason == "replay"
    with pytest.raises(TelecommandError) as forged:
        open_job(onboard, seal_job(GroundKeys(Key.generate(1), 50), query, "smollm2"))
    assert forged.value.reason == "auth"
    doc = cbor2.loads(seal_job(ground, query, "smollm2"))
    other = Query("q-1", messages=(("user", "Ignore the above."),), max_tokens=8)
    tampered = cbor2.dumps({"telecommand": doc["telecommand"], "query": other.to_bytes()})
    with pytest.raises(JobError) as bound:
        open_job(onboard, tampered)
    assert bound.value.reason == "binding"
    with pytest.raises(JobError) as junk:
        open_job(onboard, b"\xa1\x01\x02")
    assert junk.value.reason == "bad-job"


def test_hardware_pace_never_releases_before_the_host_computed() -> None:
    from starcompute.compute.cards import load_card
    from starcompute.spacecraft.hardware import load_hardware

    target = ComputeTarget.from_profile(load_hardware("three-body-sat"))
    pace = Pace("hardware", PerformanceModel(load_card("qwen3-8b"), target, "int8"))
    query = Query("q", prompt="a b c d e", max_tokens=5, chunk_tokens=2)
    builder = ChunkBuilder(query, "S", pace, 0, 1_000, 30)
    fast = [builder.step("x ", 1_000 + k) for k in range(4)]  # the host is far ahead
    chunks = [c for c in fast if c is not None]
    last = builder.finish(Completion("x " * 5, 30, 5, "length", 0, 0), 1_005)
    for c in [*chunks, last]:
        assert c.released_ms == max(c.computed_ms, c.predicted_ms) >= c.predicted_ms
        expected = 1_000 + round(1000 * pace.predicted_s(30, c.steps, 1))
        assert c.predicted_ms == expected
    assert [c.seq for c in [*chunks, last]] == [0, 1, 2] and last.final
    slow = ChunkBuilder(query, "S", pace, 0, 1_000, 30)
    late = next(c for k in range(4) if (c := slow.step("y ", 900_000 + k)))
    assert late.released_ms == late.computed_ms  # a slow host: released when computed


def test_node_runs_verified_jobs_and_counts_forged_and_replayed_ones(
    tmp_path: Path, plan: ContactPlan
) -> None:
    """Issue 16 (b): a forged, replayed or tampered job is not executed (the engine is
    not called) and is counted; a valid one runs and its chunks wait to go down."""
    names = NodeNames.of(plan.satellites, plan.stations)
    sat = plan.satellites[3]
    key = Key.generate(1)
    ground, engine = GroundKeys(key), EchoEngine()
    clock = OrbitClock(START, 60.0)

    async def go() -> dict[str, Any]:
        node = Node(
            _config(sat, clock),
            plan,
            BundleStore(tmp_path / "n.sqlite"),
            SatelliteKeys(key),
            engine,
        )
        port = await node.start()
        query = Query("q-1", prompt="one two three four five", max_tokens=5, chunk_tokens=2)
        good = seal_job(ground, query, "echo")
        assert await _send(port, _job_bundle(names, sat, good, 1)) == [None]
        await _until(lambda: node.store.counters().get("chunks-sent", 0) == 4)
        assert engine.calls == 1
        forged = seal_job(GroundKeys(Key.generate(1), 50), query, "echo")  # a fresh number
        doc = cbor2.loads(seal_job(ground, query, "echo"))
        other = dataclasses.replace(query, prompt="rm -rf /")
        tampered = cbor2.dumps({"telecommand": doc["telecommand"], "query": other.to_bytes()})
        bundles = [
            _job_bundle(names, sat, p, s) for s, p in ((2, forged), (3, good), (4, tampered))
        ]
        assert await _send(port, *bundles, b"\x9f\x00\xff") == [None, None, None, 0]
        await _until(lambda: sum(node_status(node.store)["rejected_jobs"].values()) == 3)
        await asyncio.sleep(0.2)
        status = node_status(node.store)
        held = list(node.store.queue(local=False))
        await node.stop()
        return {"status": status, "held": held}

    out = asyncio.run(go())
    assert engine.calls == 1  # none of the three ran
    assert out["status"]["rejected_jobs"] == {"auth": 1, "replay": 1, "binding": 1}
    assert out["status"]["rejected_bundles"] == {"framing": 1}
    chunks = [Chunk.from_bytes(s.bundle.payload) for s in out["held"]]
    assert [c.seq for c in chunks] == [0, 1, 2, 3] and chunks[-1].final  # 1 + 2 + 2 + final
    assert "".join(c.text for c in chunks) == "one two three four five "
    assert chunks[0].text == "one "  # the first token goes down alone
    assert all(s.bundle.destination == Eid(MISSION_CONTROL, Service.ANSWER) for s in out["held"])


def test_a_node_killed_mid_job_finishes_it_after_restart_once(
    tmp_path: Path, plan: ContactPlan
) -> None:
    """The job bundle and the journal survive the crash; the restarted node does not ask
    the telecommand again (it would be a replay) and sends each chunk once."""
    names = NodeNames.of(plan.satellites, plan.stations)
    sat = plan.satellites[5]
    key = Key.generate(1)
    clock = OrbitClock(START, 60.0)
    query = Query("q-9", prompt="a b c d e f g h", max_tokens=8, chunk_tokens=2)
    payload = seal_job(GroundKeys(key), query, "echo")

    async def crash() -> None:
        slow = EchoEngine(step_s=0.15)
        node = Node(
            _config(sat, clock), plan, BundleStore(tmp_path / "n.sqlite"), SatelliteKeys(key), slow
        )
        port = await node.start()
        await _send(port, _job_bundle(names, sat, payload, 1))
        await _until(lambda: node.store.counters().get("chunks-sent", 0) >= 1)
        # SIGKILL: no clean shutdown, the engine thread is simply abandoned
        node.agent._server.close()  # type: ignore[union-attr]
        for t in [*node.agent._tasks, *node._tasks, node.runner._worker]:  # type: ignore[union-attr]
            t.cancel()

    async def restart() -> list[Chunk]:
        engine = EchoEngine()
        node = Node(
            _config(sat, clock),
            plan,
            BundleStore(tmp_path / "n.sqlite"),
            SatelliteKeys(key),
            engine,
        )
        await node.start()
        await _until(lambda: not list(node.store.queue(local=True)))
        chunks = [Chunk.from_bytes(s.bundle.payload) for s in node.store.queue(local=False)]
        assert node.store.counters().get("rejected-jobs:replay", 0) == 0
        await node.stop()
        return chunks

    asyncio.run(crash())
    chunks = asyncio.run(restart())
    assert [c.seq for c in chunks] == [0, 1, 2, 3, 4]  # each once, none twice
    assert "".join(c.text for c in chunks) == "a b c d e f g h " and chunks[-1].final


def test_bundles_wait_for_the_contact_and_cross_only_the_emulator(
    tmp_path: Path, plan: ContactPlan
) -> None:
    """Store-and-forward: a housekeeping-sized bundle at a satellite with no route down
    now waits; the emulator refuses links the plan has down, and the bundle reaches the
    station no earlier than the first contact that can carry it."""
    from starcompute.dtn.agent import BundleAgent
    from starcompute.dtn.router import ContactRouter

    names = NodeNames.of(plan.satellites, plan.stations)
    g = plan.ground
    first = int(np.argmin(g.aos_s[g.aos_s > 600.0]))  # a pass some minutes ahead
    aos = float(g.aos_s[g.aos_s > 600.0][first])
    station = plan.stations[int(g.station[g.aos_s > 600.0][first])]
    clock = OrbitClock(START + np.timedelta64(int(aos - 60.0), "s"), 120.0)  # 1 min before
    router = ContactRouter.of(plan)

    async def go() -> tuple[float, dict[str, Any]]:
        arrived: list[float] = []

        async def deliver(stored: Any) -> None:
            arrived.append(float((clock.now() - START) / np.timedelta64(1, "s")))
            agents[station].release(stored)

        emulator = LinkEmulator(plan, {}, clock)
        em_port = await emulator.start("127.0.0.1", 0)
        links = EmulatedLinks("127.0.0.1", em_port)
        agents = {}
        for name in [*plan.satellites, station]:
            agents[name] = BundleAgent(
                name,
                names,
                BundleStore(tmp_path / f"{name}.sqlite"),
                router,
                links,
                clock,
                deliver=deliver if name == station else None,
                ground=name == station,
            )
            port = await agents[name].start("127.0.0.1", 0)
            emulator.addresses[name] = ("127.0.0.1", port)
        sat = plan.satellites[0]
        b = agents[sat].new_bundle(Eid(MISSION_CONTROL, Service.TELEMETRY), b"hk" * 100, 3, 600)
        agents[sat].send(b)
        await _until(lambda: bool(arrived), timeout_s=60)
        status = emulator.status()
        for a in agents.values():
            await a.stop()
        await emulator.stop()
        return arrived[0], status

    arrived_s, status = asyncio.run(go())
    earliest = router.next_hop(0, router.stations(), aos - 60.0, 300)
    assert earliest is not None
    assert arrived_s >= earliest.arrival_s - 1.0  # 1 s: the clock's resolution at x120
    assert any(c["to"] in plan.stations and c["bytes"] > 0 for c in status["carried"])
    assert status["refused"].get("unknown", 0) == 0


def test_onboard_state_is_drained_by_the_jobs_actually_run() -> None:
    """The node's own power model: the same satellite over the same hour, idle and with
    the accelerator busy half the time; the busy one drew more, and the state survives
    a restart through its journal."""
    from starcompute.node.state import Onboard
    from starcompute.spacecraft.hardware import load_hardware

    const = load_constellation("three-body-12").select([0])
    hw = load_hardware(const.hardware[0])
    idle, busy = (Onboard.of(const, hw, START, 3600.0, weight_bits=8 * 10**9) for _ in "ab")
    for k in range(0, 3600, 120):
        busy.busy(float(k), k + 60.0)
    idle.advance(3600.0)
    busy.advance(3600.0)
    assert busy.state.accelerator_wh[0] > idle.state.accelerator_wh[0]
    assert busy.state.energy_wh[0] <= idle.state.energy_wh[0]
    assert busy.state.temp_k[0] >= idle.state.temp_k[0]
    # ~4e-7 /bit/day x 8e9 bits over an hour: on the order of a hundred upsets
    assert 10 < busy.upsets < 2000 and busy.seu_rate > 0
    again = Onboard.of(const, hw, START, 3600.0)
    again.restore(busy.to_dict())
    assert again.report()["battery_wh"] == busy.report()["battery_wh"]


def test_ground_gives_every_chunk_when_the_final_one_comes_down_first() -> None:
    """Chunks of one answer may come down by different satellites and stations, so the
    final one can land before an earlier one: the testbed's link yields each chunk once
    and ends only when every chunk up to the final one is down. (It used to end at the
    final chunk; mission control then failed the request, "ended without its last
    chunk", in 1 of 100 queries of bench_testbed.)"""
    from types import SimpleNamespace

    from starcompute.mission.spacelink import Arrival
    from starcompute.testbed.ground import BundleLink

    def chunk(seq: int, final: bool = False) -> Arrival:
        c = Chunk("q1", seq, f"<{seq}>", final, "S0", seq + 1, 0, 0, 0, 0, 0)
        return Arrival(c, np.datetime64("2025-11-20T00:00:00", "ns"), "china")

    stations = SimpleNamespace(waiting={}, uplink=lambda *a: None, seal=lambda sat, f: b"")
    link = BundleLink(stations)  # type: ignore[arg-type]
    trace = SimpleNamespace(serving_satellite="S0", uplink_station="china")

    async def run() -> list[int]:
        got: list[int] = []
        serve = link.serve(SimpleNamespace(query_id="q1"), trace, "m")  # type: ignore[arg-type]
        first = asyncio.ensure_future(anext(serve))
        await asyncio.sleep(0)  # serve registers its queue and sends the job up
        queue = stations.waiting["q1"]
        for a in (chunk(0), chunk(2, final=True), chunk(0), chunk(1)):
            queue.put_nowait(a)
        got.append((await first).chunk.seq)
        async for a in serve:
            got.append(a.chunk.seq)
        return got

    assert asyncio.run(asyncio.wait_for(run(), 5)) == [0, 2, 1]
    assert "q1" not in stations.waiting


def test_every_request_field_survives_the_uplink() -> None:
    """A request made into a job, serialised, parsed on board and made back into the
    engine's request is the same request: no option is lost on the way up (ignore_eos
    once was, and answers then stopped at the end-of-sequence token on board)."""
    from starcompute.compute.engine import GenerationRequest, Message

    sent = GenerationRequest(
        messages=(Message("system", "Be brief."), Message("user", "Hi")),
        max_tokens=17,
        temperature=0.7,
        top_p=0.9,
        stop=("\n\n", "END"),
        seed=42,
        ignore_eos=True,
        grammar='{"grammars": [{"json_schema": {"type": "object"}}]}',
        tools='[{"name": "f", "description": "", "parameters": {"type": "object"}}]',
        logprobs=3,
        echo=True,
        logit_bias=((17, -5.0), (42, 2.5)),
    )
    defaults = GenerationRequest(prompt="x")
    for f in dataclasses.fields(GenerationRequest):  # the test sets every field it can
        if f.name not in ("prompt", "cancelled"):
            assert getattr(sent, f.name) != getattr(defaults, f.name), f.name
    query = Query.of("q-9", sent, chunk_tokens=4)
    assert Query.from_bytes(query.to_bytes()).request() == sent
    assert Query.from_bytes(Query.of("q-9", defaults, 4).to_bytes()).request() == defaults
