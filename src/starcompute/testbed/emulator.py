"""The space-link emulator: the one process that knows which links are up now.

It holds the orbit clock and the contact plan. Every convergence-layer connection
between nodes and stations passes through it: a node dials the emulator and names the
link (``LINK <from> <to>``, see ``dtn.links``); if the contact plan has that link up now,
the emulator connects to the neighbour's address and carries the bytes both ways

* delayed by the light time of the current range (from the ephemeris, cubic Hermite),
* shaped to the link's data rate (the contact's rate from the link budgets),
* both scaled by the time scale (one wall second carries ``time_scale`` orbit seconds),

and cuts both connections at the window's end (loss of signal): what was in flight is
lost, and the sender, whose bundle was never acknowledged, still holds it. Laser links
come up after their acquisition time (the contact plan's windows start after it).
Per link it counts bytes carried, connections and cuts; ``STATUS`` returns them as JSON.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starcompute.dtn.links import read_command
from starcompute.links.contact_plan import ContactPlan
from starcompute.orbits.constants import SPEED_OF_LIGHT_KM_S
from starcompute.routing.cgr import RangeFn
from starcompute.times import OrbitClock, format_utc, from_offsets, offsets_s

log = logging.getLogger(__name__)
CHUNK_BYTES = 64 * 1024
QUEUE_BYTES = 4 * 2**20  # bytes buffered on one direction of a link before reading pauses


@dataclass(frozen=True, slots=True)
class Window:
    start_s: float
    end_s: float
    rate_bps: float
    kind: str  # "ground" | "laser"


@dataclass(slots=True)
class LinkStats:
    bytes: int = 0
    connections: int = 0
    cuts: int = 0


@dataclass(slots=True)
class LinkEmulator:
    plan: ContactPlan
    addresses: dict[str, tuple[str, int]]  # node name -> its bundle agent's address
    clock: OrbitClock
    range_fn: RangeFn | None = None
    windows: dict[tuple[int, int], list[Window]] = field(default_factory=dict)
    stats: dict[tuple[str, str], LinkStats] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    _server: asyncio.Server | None = None
    _conns: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        n_sat = len(self.plan.satellites)
        g, isl = self.plan.ground, self.plan.isl
        for st, sat, a, b, down, up in zip(
            g.station, g.satellite, g.aos_s, g.los_s, g.rate_bps, g.up_rate_bps, strict=True
        ):
            node = n_sat + int(st)
            if up > 0:  # the uplink closes
                self._add(node, int(sat), Window(float(a), float(b), float(up), "ground"))
            self._add(int(sat), node, Window(float(a), float(b), float(down), "ground"))
        for x, y, a, b, rate in zip(
            isl.a, isl.b, isl.start_s, isl.end_s, isl.rate_bps, strict=True
        ):
            w = Window(float(a), float(b), float(rate), "laser")
            self._add(int(x), int(y), w)
            self._add(int(y), int(x), w)
        for ws in self.windows.values():
            ws.sort(key=lambda w: w.start_s)

    def _add(self, a: int, b: int, w: Window) -> None:
        """A window of the link a -> b (each direction has its own rate)."""
        self.windows.setdefault((a, b), []).append(w)

    @property
    def names(self) -> list[str]:
        return self.plan.satellites + self.plan.stations

    def plan_s(self) -> float:
        return float(offsets_s(self.clock.now(), self.plan.start))

    def window(self, a: int, b: int, t_s: float) -> Window | None:
        """The window of link a-b open at ``t_s`` (None: the link is down)."""
        ws = self.windows.get((a, b), [])
        k = bisect.bisect_right([w.start_s for w in ws], t_s) - 1
        return ws[k] if k >= 0 and t_s < ws[k].end_s else None

    def next_window(self, a: int, b: int, t_s: float) -> Window | None:
        return next((w for w in self.windows.get((a, b), []) if w.start_s > t_s), None)

    def delay_s(self, a: int, b: int, t_s: float) -> float:
        """One-way light time of link a-b at ``t_s`` (orbit seconds)."""
        if self.range_fn is None:
            return 0.0
        return self.range_fn(a, b, t_s) / SPEED_OF_LIGHT_KM_S

    # ------------------------------------------------------------------ serving
    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port, limit=2**20)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            words = await asyncio.wait_for(read_command(reader), 10.0)
            if words == ["STATUS"]:
                writer.write(json.dumps(self.status()).encode() + b"\n")
                await writer.drain()
            elif len(words) == 3 and words[0] == "LINK":
                await self._link(words[1], words[2], reader, writer)
            else:
                writer.write(b"DOWN bad request: LINK <from> <to> or STATUS\n")
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # the emulator is stopping: end quietly
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()
            if task is not None:
                self._conns.discard(task)

    async def _refuse(self, writer: asyncio.StreamWriter, reason: str, label: str) -> None:
        self.refused[label] += 1
        writer.write(f"DOWN {reason}\n".encode())
        await writer.drain()

    async def _link(
        self, src: str, dst: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        names = self.names
        if src not in names or dst not in names or src == dst:
            await self._refuse(writer, f"unknown link {src} -> {dst}", "unknown")
            return
        a, b = names.index(src), names.index(dst)
        now_s = self.plan_s()
        w = self.window(a, b, now_s)
        if w is None:
            nxt = self.next_window(a, b, now_s)
            when = self._utc(nxt.start_s) if nxt else "none in the plan"
            await self._refuse(
                writer, f"no contact {src} -> {dst} now (next: {when})", "no-contact"
            )
            return
        host, port = self.addresses[dst]
        try:
            peer_r, peer_w = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=2**20), 5.0
            )
        except (OSError, TimeoutError):
            await self._refuse(writer, f"{dst} does not answer at {host}:{port}", "unreachable")
            return
        writer.write(b"UP\n")
        await writer.drain()
        await self._carry(a, b, w, (reader, writer), (peer_r, peer_w))

    async def _carry(
        self,
        a: int,
        b: int,
        w: Window,
        near: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        far: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        """Carry bytes both ways until either side closes or the window ends (a cut)."""
        names = self.names
        forward = self.stats.setdefault((names[a], names[b]), LinkStats())
        back = self.stats.setdefault((names[b], names[a]), LinkStats())
        forward.connections += 1
        pumps = [
            asyncio.create_task(self._pump(near[0], far[1], a, b, w, forward)),
            asyncio.create_task(self._pump(far[0], near[1], b, a, w, back)),
        ]
        left_s = self.clock.wall_s(w.end_s - self.plan_s())
        try:
            done, _ = await asyncio.wait(pumps, timeout=max(left_s, 0.0))
            if not done:  # loss of signal: a real cut, in flight is lost
                forward.cuts += 1
                for _, wr in (near, far):
                    with contextlib.suppress(OSError, RuntimeError):
                        wr.transport.abort()
            else:
                await asyncio.wait(
                    pumps, timeout=max(self.clock.wall_s(w.end_s - self.plan_s()), 0)
                )
        finally:
            for p in pumps:
                p.cancel()
            for p in pumps:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await p
            for _, wr in (near, far):
                with contextlib.suppress(OSError, RuntimeError):
                    wr.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        a: int,
        b: int,
        w: Window,
        stats: LinkStats,
    ) -> None:
        """One direction: serialise at the link rate, deliver after the light time."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        buffered = [0]
        room = asyncio.Event()
        room.set()

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                at, data = item
                await asyncio.sleep(max(0.0, at - loop.time()))
                writer.write(data)
                await writer.drain()
                stats.bytes += len(data)
                buffered[0] -= len(data)
                if buffered[0] < QUEUE_BYTES:
                    room.set()
            with contextlib.suppress(OSError, RuntimeError):
                writer.write_eof()

        sender = asyncio.create_task(deliver())
        free_at = loop.time()
        scale = self.clock.time_scale
        try:
            while data := await reader.read(CHUNK_BYTES):
                tx_wall = 8.0 * len(data) / (w.rate_bps * scale)
                free_at = max(free_at, loop.time()) + tx_wall
                queue.put_nowait((free_at + self.delay_s(a, b, self.plan_s()) / scale, data))
                buffered[0] += len(data)
                if buffered[0] >= QUEUE_BYTES:
                    room.clear()
                    await room.wait()
            queue.put_nowait(None)
            await sender
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    # ------------------------------------------------------------------ reporting
    def _utc(self, t_s: float) -> str:
        return str(format_utc(from_offsets(self.plan.start, [t_s])[0]))

    def links_up(self) -> list[dict[str, Any]]:
        """Every link the contact plan has up now (each pair once)."""
        now_s, names, out = self.plan_s(), self.names, []
        for (a, b), _ in self.windows.items():
            if a > b:
                continue
            w = self.window(a, b, now_s)
            if w is None:
                continue
            out.append(
                {
                    "a": names[a],
                    "b": names[b],
                    "kind": w.kind,
                    "rate_bps": w.rate_bps,
                    "delay_ms": round(self.delay_s(a, b, now_s) * 1e3, 4),
                    "until": self._utc(w.end_s),
                }
            )
        return out

    def status(self) -> dict[str, Any]:
        return {
            "orbit_time": format_utc(self.clock.now()),
            "time_scale": self.clock.time_scale,
            "links_up": self.links_up(),
            "carried": [
                {"from": x, "to": y, "bytes": s.bytes, "connections": s.connections, "cuts": s.cuts}
                for (x, y), s in sorted(self.stats.items())
                if s.bytes or s.connections
            ],
            "refused": dict(self.refused),
        }
