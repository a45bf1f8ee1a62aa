"""The bundle agent of one node: receive, store, route, forward, deliver.

* **Receive**: a TCPCL session (``dtn.tcpcl``) hands each bundle to the agent, which
  parses it (``dtn.bundle``: a malformed one, a bad CRC, an expired one, an unknown
  destination is refused and counted by reason), stores it (``dtn.store``) and only then
  lets the session acknowledge it.
* **Forward**: for every bundle held, the next hop is the first hop of its earliest
  route over the contact plan (``dtn.router``). While that contact is up the agent dials
  the neighbour through its radio (``dtn.links``: the link emulator) and sends; a bundle
  leaves the store only when the neighbour acknowledged it. Contact not up yet: the
  bundle waits (store-and-forward). Link refused or cut: it stays, and is routed again.
* **Deliver**: bundles for this node go to the application (``deliver``), which calls
  :meth:`BundleAgent.release` when it is done with one; after a restart, what was not
  released is delivered again.
* **Secure** (``security``, ``dtn.bpsec``): bundles created here leave signed (and
  encrypted when they carry a query or an answer); a bundle for this node that is
  unsigned, tampered or undecryptable is refused on arrival and counted
  (``rejected:bpsec-...``), and the application sees only verified plaintext.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from starcompute.dtn import tcpcl
from starcompute.dtn.bpsec import Bpsec
from starcompute.dtn.bundle import Bundle, decode, dtn_ms, encode
from starcompute.dtn.eid import MISSION_CONTROL, Eid, NodeNames
from starcompute.dtn.links import Links
from starcompute.dtn.router import ContactRouter, Hop
from starcompute.dtn.store import BundleStore, Stored
from starcompute.errors import BundleError, ClError, LinkDownError
from starcompute.times import OrbitClock, offsets_s

log = logging.getLogger(__name__)
Deliver = Callable[[Stored], Awaitable[None]]
ACK_TIMEOUT_S = 30.0
IDLE_CLOSE_S = 0.5  # wall seconds a session with nothing to send stays open
RETRY_S = 0.5  # wall seconds before dialling a neighbour again after a refusal or a cut
NO_ROUTE_RETRY_S = 5.0  # wall seconds between routing attempts for a bundle with no route


@dataclass(slots=True)
class _Route:
    hop: Hop | None
    until_s: float  # plan seconds: route again from then (window end, or a retry)


@dataclass(slots=True)
class BundleAgent:
    """One node's bundle protocol agent (satellite, relay or ground station)."""

    name: str
    names: NodeNames
    store: BundleStore
    router: ContactRouter
    links: Links
    clock: OrbitClock
    deliver: Deliver | None = None
    ground: bool = False  # a ground station: bundles for mission control are delivered here
    security: Bpsec | None = None  # BPSec keys and policy (None: bundles travel bare)
    _routes: dict[str, _Route] = field(default_factory=dict)
    _senders: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    _backoff_until: dict[int, float] = field(default_factory=dict)  # neighbour: wall time
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _server: asyncio.Server | None = None
    _last_ms: int = -1
    _seq: int = 0

    @property
    def index(self) -> int:
        return self.names.names.index(self.name)

    @property
    def eid(self) -> Eid:
        return self.names.eid(self.name)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: str, port: int) -> int:
        """Listen for sessions, deliver what was held for this node, start forwarding;
        returns the port (useful with 0)."""
        self._server = await asyncio.start_server(self._session, host, port, limit=2**20)
        for stored in self.store.queue(local=True):
            self._spawn(self._deliver(stored))
        self._spawn(self._forward_loop())
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in [*self._tasks, *self._senders.values()]:
            task.cancel()
        for task in [*self._tasks, *self._senders.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    # ------------------------------------------------------------------ sending
    def new_bundle(
        self, destination: Eid, payload: bytes, service: int, lifetime_s: float
    ) -> Bundle:
        """A bundle created here now (orbit time), source ``ipn:<me>.<service>``."""
        now_ms = dtn_ms(self.clock.now())
        self._seq = self._seq + 1 if now_ms == self._last_ms else 0
        self._last_ms = now_ms
        source = Eid(self.eid.node, service)
        return Bundle(source, destination, now_ms, self._seq, payload, int(lifetime_s * 1000))

    def send(self, bundle: Bundle) -> None:
        """Take custody of a bundle created here and forward it when a contact allows."""
        if self.security is not None:
            bundle = self.security.protect(bundle)
        self.store.add(bundle, encode(bundle), dtn_ms(self.clock.now()), local=False)
        self.store.count("created")
        self._wake.set()

    def release(self, stored: Stored) -> None:
        """The application is done with a bundle delivered to it."""
        self.store.remove(stored.id, stored.bundle.expires_ms)

    # ------------------------------------------------------------------ receiving
    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await tcpcl.receive(reader, writer, str(self.eid), self._accept)

    def _is_local(self, destination: Eid) -> bool:
        return destination.node == self.eid.node or (
            self.ground and destination.node == MISSION_CONTROL
        )

    async def _accept(self, data: bytes, peer: str) -> int | None:
        """Store one arriving bundle (None: acknowledge) or refuse it, counted."""
        try:
            bundle = decode(data)
        except BundleError as exc:
            self.store.count(f"rejected:{exc.reason}")
            return tcpcl.REFUSE_UNKNOWN
        now_ms = dtn_ms(self.clock.now())
        local = self._is_local(bundle.destination)
        if bundle.expires_ms <= now_ms:
            self.store.count("rejected:expired")
            return tcpcl.REFUSE_UNKNOWN
        if not local and self._targets(bundle.destination) is None:
            self.store.count("rejected:unknown-endpoint")
            return tcpcl.REFUSE_UNKNOWN
        if local and self.security is not None:
            try:
                self.security.accept(bundle)
            except BundleError as exc:  # unsigned, tampered, not ours: dropped, counted
                self.store.count(f"rejected:{exc.reason}")
                return tcpcl.REFUSE_UNKNOWN
        if not self.store.add(bundle, data, now_ms, local):
            self.store.count("duplicates")
            return None  # held or handled already: the sender may let it go
        self.store.count("received")
        if local:
            stored = Stored(bundle, data, now_ms)
            self._spawn(self._deliver(stored))
        else:
            self._wake.set()
        return None

    async def _deliver(self, stored: Stored) -> None:
        if self.security is not None:
            try:  # verified on arrival: the plaintext for the application
                stored = Stored(self.security.accept(stored.bundle), stored.data, stored.stored_ms)
            except BundleError as exc:  # e.g. held from before the keys changed
                self.store.count(f"rejected:{exc.reason}")
                self.release(stored)
                return
        if self.deliver is None:
            self.store.count("delivered")
            self.release(stored)
            return
        try:
            await self.deliver(stored)
        except asyncio.CancelledError:
            raise
        except Exception:  # the application failed on it: keep it, count, go on
            log.exception("%s: delivering %s failed", self.name, stored.id)
            self.store.count("deliver-errors")

    # ------------------------------------------------------------------ routing
    def _targets(self, destination: Eid) -> frozenset[int] | None:
        if destination.node == MISSION_CONTROL:
            return self.router.stations()
        i = self.names.index(destination.node)
        return None if i is None else frozenset([i])

    def _plan_s(self) -> float:
        return float(offsets_s(self.clock.now(), self.router.plan.start))

    def _route(self, stored: Stored, now_s: float) -> Hop | None:
        known = self._routes.get(stored.id)
        if known is not None and now_s < known.until_s:
            return known.hop
        targets = self._targets(stored.bundle.destination) or frozenset()
        hop = self.router.next_hop(self.index, targets, now_s, len(stored.data))
        retry = now_s + NO_ROUTE_RETRY_S * self.clock.time_scale
        self._routes[stored.id] = _Route(hop, hop.end_s if hop is not None else retry)
        return hop

    async def _forward_loop(self) -> None:
        while True:
            try:
                wake_s = self._forward_once()
            except Exception:  # never let one bad bundle stop the forwarding
                log.exception("%s: forwarding pass failed", self.name)
                wake_s = self._plan_s() + RETRY_S * self.clock.time_scale
            self._wake.clear()
            timeout = min(max(self.clock.wall_s(wake_s - self._plan_s()), 0.01), 5.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _forward_once(self) -> float:
        """Start a sender for each neighbour with bundles and a contact up now;
        returns when (plan seconds) something may change."""
        now_s, now_ms = self._plan_s(), dtn_ms(self.clock.now())
        for bid in self.store.expire(now_ms):
            self._routes.pop(bid, None)
            self.store.count("expired")
        wake_s, wall = math.inf, asyncio.get_running_loop().time()
        ready: set[int] = set()
        held = list(self.store.queue(local=False))
        for stored in held:
            hop = self._route(stored, now_s)
            if hop is None:
                wake_s = min(wake_s, self._routes[stored.id].until_s)
            elif hop.up_at(now_s) and self._backoff_until.get(hop.neighbour, 0.0) <= wall:
                ready.add(hop.neighbour)
            else:
                later = hop.start_s if hop.start_s > now_s else now_s
                wake_s = min(wake_s, later + RETRY_S * self.clock.time_scale, hop.end_s)
        self._routes = {s.id: self._routes[s.id] for s in held if s.id in self._routes}
        for neighbour in ready - set(self._senders):
            self._senders[neighbour] = asyncio.create_task(self._sender(neighbour))
        return wake_s

    def _due(self, neighbour: int, now_s: float) -> list[Stored]:
        out = []
        for stored in self.store.queue(local=False):
            hop = self._route(stored, now_s)
            if hop is not None and hop.neighbour == neighbour and hop.up_at(now_s):
                out.append(stored)
        return out

    async def _sender(self, neighbour: int) -> None:
        """Send to one neighbour while its contact lasts and bundles are due."""
        other = self.names.names[neighbour]
        try:
            reader, writer = await self.links.dial(self.name, other)
            session = await tcpcl.Session.start(reader, writer, str(self.eid), ACK_TIMEOUT_S)
            try:
                await self._drain(session, neighbour)
            finally:
                await session.close()
        except (LinkDownError, ClError, OSError) as exc:
            log.debug("%s -> %s: %s", self.name, other, exc)
            self.store.count("link-failures")
            self._backoff_until[neighbour] = asyncio.get_running_loop().time() + RETRY_S
        finally:
            self._senders.pop(neighbour, None)
            self._wake.set()

    async def _drain(self, session: tcpcl.Session, neighbour: int) -> None:
        idle_since = asyncio.get_running_loop().time()
        while True:
            due = self._due(neighbour, self._plan_s())
            if not due:
                if asyncio.get_running_loop().time() - idle_since > IDLE_CLOSE_S:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.2)
                continue
            for stored in due:
                await self._send_one(session, stored)
            idle_since = asyncio.get_running_loop().time()

    async def _send_one(self, session: tcpcl.Session, stored: Stored) -> None:
        bundle = stored.bundle
        if bundle.hop_count + 1 > bundle.hop_limit:
            self.store.count("dropped:hop-limit")
            self.store.remove(stored.id, bundle.expires_ms)
            return
        verdict = await session.send(encode(bundle.forwarded_by(self.eid)), ACK_TIMEOUT_S)
        if verdict in (None, tcpcl.REFUSE_COMPLETED):
            self.store.remove(stored.id, bundle.expires_ms)
            self._routes.pop(stored.id, None)
            self.store.count("forwarded")
        elif verdict == tcpcl.REFUSE_NO_RESOURCES:
            raise ClError(f"{session.peer} has no room now")
        else:  # the next hop will never take it (malformed or foreign): drop, counted
            self.store.count("dropped:refused")
            self.store.remove(stored.id, bundle.expires_ms)
