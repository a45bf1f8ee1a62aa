"""The TCP convergence layer, version 3 (RFC 7242), with acknowledged bundles.

A session opens with both sides' contact headers (pyd3tn writes them; ours request
acknowledgements and allow refusal). Each bundle travels as one DATA_SEGMENT (start and
end flags set); the receiver answers with an ACK_SEGMENT for the bundle's whole length
only once it has stored the bundle durably, or with a REFUSE_BUNDLE and a reason code.
That acknowledgement is the hop-by-hop custody of this network: a sender keeps every
bundle in its store until the next hop acknowledged it, so a connection cut at loss of
signal, or a receiver killed before it committed, loses nothing. SHUTDOWN ends a session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starcompute.errors import ClError

MAGIC = b"dtn!"
VERSION = 3
FLAG_REQUEST_ACK, FLAG_ALLOW_REFUSAL = 0x01, 0x04
DATA, ACK, REFUSE, KEEPALIVE, SHUTDOWN, LENGTH = 0x1, 0x2, 0x3, 0x4, 0x5, 0x6
SEGMENT_START_END = 0x3
REFUSE_UNKNOWN, REFUSE_COMPLETED, REFUSE_NO_RESOURCES, REFUSE_RETRANSMIT = 0x0, 0x1, 0x2, 0x3
MAX_SEGMENT_BYTES = 32 * 2**20
MAX_EID_BYTES = 1024

# what a receiver does with a bundle: None = stored (ACK), else a refusal code
BundleHandler = Callable[[bytes, str], Awaitable[int | None]]


def _sdnv(value: int) -> bytes:
    from pyd3tn.sdnv import sdnv_encode

    return bytes(sdnv_encode(value))


async def _read_sdnv(reader: asyncio.StreamReader) -> int:
    value = 0
    for _ in range(10):
        byte = (await reader.readexactly(1))[0]
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value
    raise ClError("an SDNV longer than 10 bytes")


def contact_header(eid: str) -> bytes:
    from pyd3tn.tcpcl import serialize_tcpcl_contact_header

    flags = FLAG_REQUEST_ACK | FLAG_ALLOW_REFUSAL
    return bytes(serialize_tcpcl_contact_header(eid, flags=flags))


async def read_contact_header(reader: asyncio.StreamReader) -> str:
    """The peer's contact header; returns its endpoint id."""
    fixed = await reader.readexactly(8)
    if fixed[:4] != MAGIC or fixed[4] != VERSION:
        raise ClError("the peer is not a TCPCL v3 endpoint")
    n = await _read_sdnv(reader)
    if n > MAX_EID_BYTES:
        raise ClError(f"a {n}-byte endpoint id in a contact header")
    try:
        return (await reader.readexactly(n)).decode("ascii")
    except UnicodeDecodeError:
        raise ClError("a contact header's endpoint id is not ASCII") from None


def data_segment(bundle: bytes) -> bytes:
    return bytes([(DATA << 4) | SEGMENT_START_END]) + _sdnv(len(bundle)) + bundle


@dataclass(slots=True)
class Session:
    """The sending side of one session (stop-and-wait: one bundle unacknowledged)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str

    @classmethod
    async def start(
        cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, eid: str, timeout_s: float
    ) -> Session:
        """Exchange contact headers over an open connection."""
        writer.write(contact_header(eid))
        try:
            await asyncio.wait_for(writer.drain(), timeout_s)
            peer = await asyncio.wait_for(read_contact_header(reader), timeout_s)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            writer.close()
            raise ClError(f"no contact header from the peer: {exc!r}") from None
        except ClError:
            writer.close()
            raise
        return cls(reader, writer, peer)

    async def send(self, bundle: bytes, timeout_s: float) -> int | None:
        """Send one bundle; None once the peer acknowledged it, else its refusal code.
        Raises ClError if the session ends first (the bundle stays the sender's)."""
        try:
            self.writer.write(data_segment(bundle))
            await asyncio.wait_for(self.writer.drain(), timeout_s)
            return await asyncio.wait_for(self._answer(len(bundle)), timeout_s)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self.abort()
            raise ClError(f"session to {self.peer} lost: {exc!r}") from None

    async def _answer(self, length: int) -> int | None:
        while True:
            head = (await self.reader.readexactly(1))[0]
            kind = head >> 4
            if kind == ACK:
                acked = await _read_sdnv(self.reader)
                if acked == length:
                    return None
                continue  # a partial acknowledgement (segmented transfers): keep waiting
            if kind == REFUSE:
                return head & 0x0F
            if kind == KEEPALIVE:
                continue
            self.abort()
            raise ClError(f"the peer sent message type {kind} instead of an acknowledgement")

    async def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.write(bytes([SHUTDOWN << 4]))
            await asyncio.wait_for(self.writer.drain(), 1.0)
        self.abort()

    def abort(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.close()


async def receive(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    eid: str,
    handler: BundleHandler,
    timeout_s: float = 30.0,
) -> None:
    """Serve one incoming session: each bundle goes to ``handler``, which stores it
    (then it is acknowledged) or refuses it. Returns when the peer shuts down or the
    connection ends; malformed sessions are closed, never raised."""
    try:
        peer = await asyncio.wait_for(read_contact_header(reader), timeout_s)
        writer.write(contact_header(eid))
        await writer.drain()
        while True:
            head = (await reader.readexactly(1))[0]
            kind = head >> 4
            if kind == SHUTDOWN:
                return
            if kind == KEEPALIVE:
                continue
            if kind == LENGTH:
                await _read_sdnv(reader)
                continue
            if kind != DATA or head & 0x0F != SEGMENT_START_END:
                raise ClError(f"unsupported message {head:#04x} (whole-bundle segments only)")
            size = await _read_sdnv(reader)
            if size > MAX_SEGMENT_BYTES:
                raise ClError(f"a {size}-byte segment exceeds {MAX_SEGMENT_BYTES}")
            bundle = await reader.readexactly(size)
            verdict = await handler(bundle, peer)
            if verdict is None:
                writer.write(bytes([ACK << 4]) + _sdnv(size))
            else:
                writer.write(bytes([(REFUSE << 4) | (verdict & 0x0F)]))
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ClError):
        return
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()
