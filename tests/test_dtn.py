"""Bundles (RFC 9171), the TCP convergence layer (RFC 7242) and the custody store.

The bundle tests read and write BPv7 independently of the code under test: cbor2 for the
CBOR, and CRC-16/X.25 and CRC-32C written out here bit by bit from their definitions
(RFC 9171 section 4.2.1 and appendix B), not taken from any library the code uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from pathlib import Path
from typing import Any

import cbor2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starcompute.dtn import tcpcl
from starcompute.dtn.bundle import (
    Bundle,
    BundleError,
    decode,
    dtn_ms,
    encode,
    from_dtn_ms,
)
from starcompute.dtn.eid import MISSION_CONTROL, Eid, NodeNames, Service
from starcompute.dtn.store import BundleStore

T0 = np.datetime64("2025-11-20T00:00:00.250", "ns")


def crc16_x25(data: bytes) -> int:
    """CRC-16/X.25: reflected polynomial 0x1021 (0x8408), init 0xFFFF, xor-out 0xFFFF."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli): reflected polynomial 0x1EDC6F41 (0x82F63B78), init and
    xor-out 0xFFFFFFFF."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_reference_crcs_match_their_check_values() -> None:
    # the "check" values of the CRC catalogue (CRC of ASCII "123456789")
    assert crc16_x25(b"123456789") == 0x906E
    assert crc32c(b"123456789") == 0xE3069283


def _with_crc(block: list[Any], crc_type: int) -> list[Any]:
    """RFC 9171 4.2.1: the CRC over the block's encoding with the CRC field all zeros."""
    n = 2 if crc_type == 1 else 4
    zeroed = cbor2.dumps([*block, bytes(n)])
    value = crc16_x25(zeroed) if crc_type == 1 else crc32c(zeroed)
    return [*block, value.to_bytes(n, "big")]


def reference_bundle(
    src: tuple[int, int], dst: tuple[int, int], created_ms: int, seq: int, payload: bytes
) -> bytes:
    """A bundle written from RFC 9171 alone: CRC-16 on the primary block, CRC-32C on
    the hop-count and payload blocks."""
    primary = [7, 0, 1, [2, list(dst)], [2, list(src)], [1, 0], [created_ms, seq], 3_600_000]
    hop = [10, 2, 0, 2, cbor2.dumps([30, 0])]
    body = [1, 1, 0, 2, payload]
    blocks = [_with_crc(primary, 1), _with_crc(hop, 2), _with_crc(body, 2)]
    return b"\x9f" + b"".join(cbor2.dumps(b) for b in blocks) + b"\xff"


def reference_read(data: bytes) -> dict[str, Any]:
    """Read a bundle from RFC 9171 alone, checking every block's CRC."""
    assert data[:1] == b"\x9f" and data[-1:] == b"\xff"  # an indefinite-length array
    blocks = cbor2.loads(data)
    # the encoding is canonical, so the CRCs computed on re-encoded blocks are over the
    # bytes that were sent
    assert b"\x9f" + b"".join(cbor2.dumps(b) for b in blocks) + b"\xff" == data
    out: dict[str, Any] = {"blocks": {}}
    for k, block in enumerate(blocks):
        crc_type = block[2] if k == 0 else block[3]
        n = {1: 2, 2: 4}[crc_type]
        assert _with_crc(block[:-1], crc_type)[-1] == block[-1], f"block {k} CRC"
        assert len(block[-1]) == n
        if k == 0:
            version, flags, _, dst, src, _, (created, seq), lifetime, _ = block
            assert version == 7 and flags & 0x01 == 0  # BPv7, not a fragment
            out.update(
                dst=tuple(dst[1]),
                src=tuple(src[1]),
                created_ms=created,
                seq=seq,
                lifetime_ms=lifetime,
            )
        else:
            kind, number, _, _, body = block[:5]
            out["blocks"][kind] = (number, body)
    assert blocks[-1][0] == 1 and blocks[-1][1] == 1  # the payload block comes last
    out["payload"] = blocks[-1][4]
    return out


def test_bundles_written_here_read_from_the_rfc_alone() -> None:
    b = Bundle(Eid(MISSION_CONTROL, 1), Eid(103, 1), dtn_ms(T0), 7, b"query bytes")
    for bundle in (b, b.forwarded_by(Eid(112, 0))):
        doc = reference_read(encode(bundle))
        assert doc["dst"] == (103, 1) and doc["src"] == (1, 1)
        assert doc["created_ms"] == dtn_ms(T0) and doc["seq"] == 7
        assert doc["payload"] == b"query bytes"
        limit, count = cbor2.loads(doc["blocks"][10][1])  # hop-count block
        assert count == bundle.hop_count and limit == bundle.hop_limit
    prev = cbor2.loads(reference_read(encode(b.forwarded_by(Eid(112, 0))))["blocks"][6][1])
    assert prev == [2, [112, 0]]  # previous-node block


def test_bundles_written_from_the_rfc_are_read_here() -> None:
    data = reference_bundle((104, 2), (MISSION_CONTROL, 2), 816_912_000_250, 3, b"chunk")
    b = decode(data)
    assert (b.source, b.destination) == (Eid(104, 2), Eid(MISSION_CONTROL, 2))
    assert b.created_ms == 816_912_000_250 and b.sequence == 3 and b.payload == b"chunk"
    assert (b.hop_limit, b.hop_count) == (30, 0)


def test_dtn_time_is_milliseconds_since_2000() -> None:
    # RFC 9171 4.2.6: DTN time 0 is 2000-01-01T00:00:00Z; one day = 86,400,000 ms
    assert dtn_ms(np.datetime64("2000-01-02T00:00:00", "ns")) == 86_400_000
    assert from_dtn_ms(dtn_ms(T0)) == np.datetime64(T0, "ms")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: d[:-3] + bytes([d[-3] ^ 1]) + d[-2:], "crc"),
        (lambda d: d[: len(d) // 2], "framing"),
        (lambda d: d[:1] + b"\x1c" + d[2:], "cbor"),
        (lambda d: d + b"\x00", "framing"),
        (lambda d: b"\x80" + d[1:], "framing"),
        (lambda d: b"", "framing"),
    ],
)
def test_damaged_bundles_are_refused_with_a_reason(damage: Any, reason: str) -> None:
    data = encode(Bundle(Eid(1, 1), Eid(103, 1), dtn_ms(T0), 0, b"x" * 40))
    with pytest.raises(BundleError) as exc:
        decode(damage(data))
    assert exc.value.reason == reason


def test_protocol_violations_are_refused() -> None:
    def bad_primary(**change: Any) -> bytes:
        primary = [7, 0, 2, [2, [103, 1]], [2, [1, 1]], [1, 0], [5, 0], 1000]
        for k, v in change.items():
            primary[int(k[1:])] = v
        body = [1, 1, 0, 2, b"x"]
        blocks = [_with_crc(primary, 2), _with_crc(body, 2)]
        return b"\x9f" + b"".join(cbor2.dumps(b) for b in blocks) + b"\xff"

    cases = {
        "version": bad_primary(v0=6),
        "fragment": bad_primary(v1=1),
        "endpoint": bad_primary(v3=[1, "//node/"]),
    }
    for reason, data in cases.items():
        with pytest.raises(BundleError) as exc:
            decode(data)
        assert exc.value.reason == reason
    over = reference_bundle((104, 2), (1, 2), 5, 0, b"x")
    over = over.replace(cbor2.dumps(cbor2.dumps([30, 0])), cbor2.dumps(cbor2.dumps([1, 2])))
    with pytest.raises(BundleError):  # the CRC no longer matches, or the limit is exceeded
        decode(over)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_bytes_never_escape_as_anything_but_a_bundle_error(data: bytes) -> None:
    with contextlib.suppress(BundleError):
        decode(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 200), st.integers(0, 7), st.integers(1, 3))
def test_flipped_bits_are_caught(position: int, bit: int, flips: int) -> None:
    data = bytearray(encode(Bundle(Eid(1, 1), Eid(103, 1), dtn_ms(T0), 0, b"payload" * 20)))
    for k in range(flips):
        i = (position + 37 * k) % len(data)
        data[i] ^= 1 << bit
    with pytest.raises(BundleError):
        decode(bytes(data))


def test_store_keeps_custody_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite"
    store = BundleStore(path)
    b = Bundle(Eid(1, 1), Eid(103, 1), dtn_ms(T0), 0, b"q")
    assert store.add(b, encode(b), 5, local=False)
    assert not store.add(b, encode(b), 6, local=False)  # held already: one copy
    store.count("received")
    store.db.close()  # no clean shutdown
    again = BundleStore(path)
    assert again.holds(b.id) and [s.bundle for s in again.queue(local=False)] == [b]
    assert again.counters() == {"received": 1}
    again.remove(b.id, b.expires_ms)  # delivered here
    assert not again.add(b, encode(b), 7, local=True)  # a retransmission: not twice
    assert again.expire(b.expires_ms + 1) == [] and again.add(b, encode(b), 8, local=True)


def test_store_takes_back_a_bundle_it_forwarded(tmp_path: Path) -> None:
    """A bundle to forward that comes back after it left (round a routing loop: node A
    passed it to B, whose route led back through A) is held again, not dropped as a
    duplicate. bench_testbed lost an answer chunk that way: S05 -> S04 -> S03 -> S04,
    where S04 acknowledged it as "seen" and dropped it."""
    store = BundleStore(tmp_path / "node.sqlite")
    b = Bundle(Eid(105, 2), Eid(0, 2), dtn_ms(T0), 0, b"chunk")
    assert store.add(b, encode(b), 5, local=False)
    store.remove(b.id, b.expires_ms)  # forwarded: the next hop acknowledged it
    assert store.add(b, encode(b), 9, local=False) and store.holds(b.id)


def test_node_names_map_to_ipn_numbers() -> None:
    names = NodeNames.of(["A", "B"], ["Sanya"])
    assert names.number("B") == 101 and names.name(102) == "Sanya"
    assert names.eid("A", Service.JOB) == Eid(100, 1) and names.is_station("Sanya")
    assert Eid.parse("ipn:101.2") == Eid(101, 2)
    with pytest.raises(ValueError, match=r"ipn:NODE\.SERVICE"):
        Eid.parse("dtn://x/")


def test_tcpcl_acknowledges_stored_bundles_and_refuses_others() -> None:
    async def go() -> tuple[list[int | None], list[bytes]]:
        got: list[bytes] = []

        async def handler(data: bytes, peer: str) -> int | None:
            if data.startswith(b"bad"):
                return tcpcl.REFUSE_UNKNOWN
            got.append(data)
            return None

        server = await asyncio.start_server(
            lambda r, w: tcpcl.receive(r, w, "ipn:101.0", handler), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        session = await tcpcl.Session.start(reader, writer, "ipn:100.0", 5.0)
        assert session.peer == "ipn:101.0"
        verdicts = [await session.send(x, 5.0) for x in (b"one", b"bad", b"x" * 100_000)]
        await session.close()
        server.close()
        return verdicts, got

    verdicts, got = asyncio.run(go())
    assert verdicts == [None, tcpcl.REFUSE_UNKNOWN, None]
    assert got == [b"one", b"x" * 100_000]


def test_tcpcl_contact_header_is_rfc_7242() -> None:
    header = tcpcl.contact_header("ipn:100.0")
    magic, version, flags, keepalive = struct.unpack("!4sBBH", header[:8])
    assert (magic, version) == (b"dtn!", 3) and flags & tcpcl.FLAG_REQUEST_ACK
    assert keepalive == 0 and header[8] == len("ipn:100.0") and header[9:] == b"ipn:100.0"
