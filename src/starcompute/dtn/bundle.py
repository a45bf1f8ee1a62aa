"""BPv7 bundles (RFC 9171): written with pyd3tn's ``bundle7``, read defensively.

A bundle is a CBOR indefinite-length array of blocks: the primary block (version 7,
flags, CRC type, destination, source, report-to, creation timestamp, lifetime, CRC),
then canonical blocks (type, number, flags, CRC type, data, CRC), the payload block
last. Ours carry a CRC-32C on every block, a hop-count block (type 10, number 2), once
forwarded a previous-node block (type 6, number 3), and the BPSec blocks (types 11 and 12,
numbers 4 and up: ``dtn.bpsec``), which travel unchanged from source to destination.
Creation times are DTN times (milliseconds since 2000-01-01T00:00:00Z) of the orbit clock.

Parsing never trusts its input: the framing, every field's type and range, each
block's CRC (recomputed over the block's own bytes with the CRC field zeroed), block
numbers, the hop limit and the size are checked; a failure is a :class:`BundleError`
with a reason (counted by the agent), never another exception.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
import numpy as np
from fastcrc import crc16, crc32

from starcompute.dtn.eid import Eid
from starcompute.errors import BundleError

DTN_EPOCH = np.datetime64("2000-01-01T00:00:00", "ns")
MAX_BUNDLE_BYTES = 16 * 2**20
DEFAULT_LIFETIME_MS = 24 * 3600 * 1000
DEFAULT_HOP_LIMIT = 64
BLOCK_PAYLOAD, BLOCK_PREVIOUS_NODE, BLOCK_AGE, BLOCK_HOP_COUNT = 1, 6, 7, 10
BLOCK_BIB, BLOCK_BCB = 11, 12  # BPSec (RFC 9172): integrity, confidentiality
FIRST_SECURITY_NUMBER = 4  # 2 and 3 are the hop-count and previous-node blocks
FLAG_IS_FRAGMENT = 0x01
FLAG_DELETE_IF_UNPROCESSED = 0x04  # block processing control flag (RFC 9171 4.2.4)
CRC_NONE, CRC16, CRC32 = 0, 1, 2
_CRC_BYTES = {CRC16: 2, CRC32: 4}
_MAX_DEPTH = 16


def dtn_ms(t: np.datetime64) -> int:
    """DTN time of a UTC instant: milliseconds since 2000-01-01T00:00:00Z."""
    return int((np.asarray(t, dtype="datetime64[ns]") - DTN_EPOCH) // np.timedelta64(1, "ms"))


def from_dtn_ms(ms: int) -> np.datetime64:
    return DTN_EPOCH + np.timedelta64(int(ms), "ms")


@dataclass(frozen=True, slots=True)
class Block:
    """A canonical block kept as it came (the BPSec blocks): type, number, flags, data."""

    kind: int
    number: int
    flags: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Bundle:
    source: Eid
    destination: Eid
    created_ms: int  # DTN time of the orbit clock
    sequence: int  # tells apart bundles of one source created in the same millisecond
    payload: bytes
    lifetime_ms: int = DEFAULT_LIFETIME_MS
    hop_limit: int = DEFAULT_HOP_LIMIT
    hop_count: int = 0
    previous_node: Eid | None = None
    blocks: tuple[Block, ...] = ()  # BPSec blocks, carried unchanged

    @property
    def id(self) -> str:
        """The bundle's identity (source, creation timestamp): the same at every hop."""
        return f"{self.source}/{self.created_ms}/{self.sequence}"

    @property
    def expires_ms(self) -> int:
        return self.created_ms + self.lifetime_ms

    def forwarded_by(self, node: Eid) -> Bundle:
        """The copy that leaves ``node``: one hop more, ``node`` as the previous node."""
        return dataclasses.replace(self, hop_count=self.hop_count + 1, previous_node=node)


def _primary_block(bundle: Bundle) -> Any:
    from pyd3tn import bundle7 as b7

    created = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(milliseconds=bundle.created_ms)
    return b7.PrimaryBlock(
        crc_type=b7.CRCType.CRC32,
        destination=str(bundle.destination),
        source=str(bundle.source),
        report_to=None,
        creation_time=b7.CreationTimestamp(created, bundle.sequence),
        lifetime=bundle.lifetime_ms,
    )


def primary_bytes(bundle: Bundle) -> bytes:
    """The primary block as it is sent (its canonical form, CRC included)."""
    return bytes(_primary_block(bundle))


def encode(bundle: Bundle) -> bytes:
    """Serialise with pyd3tn (CRC-32C on every block)."""
    from pyd3tn import bundle7 as b7

    crc = b7.CRCType.CRC32
    blocks: list[Any] = [b7.HopCountBlock(bundle.hop_limit, bundle.hop_count, crc_type=crc)]
    if bundle.previous_node is not None:
        blocks.append(b7.PreviousNodeBlock(str(bundle.previous_node), crc_type=crc))
    for b in bundle.blocks:
        blocks.append(b7.CanonicalBlock(b.kind, b.data, b.number, b.flags, crc_type=crc))
    payload = b7.PayloadBlock(bytes(bundle.payload), crc_type=crc)
    data = bytes(b7.Bundle(_primary_block(bundle), payload, blocks))
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError("too-long", f"{len(data)} bytes exceed {MAX_BUNDLE_BYTES}")
    return data


def decode(data: bytes) -> Bundle:
    """Parse and check one serialised bundle (BundleError on anything wrong)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BundleError("type", "a bundle is bytes")
    data = bytes(data)
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError("too-long", f"{len(data)} bytes exceed {MAX_BUNDLE_BYTES}")
    blocks = _blocks(data)
    if len(blocks) < 2:
        raise BundleError("framing", "a bundle has a primary and a payload block at least")
    fields = _primary(*blocks[0])
    extensions = _canonical_blocks(blocks[1:])
    return Bundle(**fields, **extensions)


def _blocks(data: bytes) -> list[tuple[Any, bytes]]:
    """Each top-level item of the indefinite array with its own bytes."""
    if len(data) < 3 or data[0] != 0x9F or data[-1] != 0xFF:
        raise BundleError("framing", "a bundle is a CBOR indefinite-length array")
    out, pos = [], 1
    while pos < len(data) - 1:
        end = _item_end(data, pos, 0)
        try:
            item = cbor2.loads(data[pos:end])
        except Exception as exc:  # cbor2 raises several kinds on hostile input
            raise BundleError("cbor", f"block at byte {pos}: {exc}") from None
        out.append((item, data[pos:end]))
        pos = end
    if pos != len(data) - 1:
        raise BundleError("framing", "the last block runs past the end of the bundle")
    return out


def cbor_sequence(data: bytes, most: int) -> list[Any]:
    """The items of a CBOR sequence (RFC 8742), at most ``most`` of them (BundleError)."""
    out: list[Any] = []
    pos = 0
    while pos < len(data):
        if len(out) == most:
            raise BundleError("cbor", f"more than {most} items in a CBOR sequence")
        end = _item_end(data, pos, 0)
        try:
            out.append(cbor2.loads(data[pos:end]))
        except Exception as exc:  # cbor2 raises several kinds on hostile input
            raise BundleError("cbor", f"item at byte {pos}: {exc}") from None
        pos = end
    return out


def _item_end(data: bytes, pos: int, depth: int) -> int:
    """Where the CBOR data item at ``pos`` ends (RFC 8949 section 3), without decoding it."""
    if depth > _MAX_DEPTH or pos >= len(data):
        raise BundleError("cbor", f"truncated or too deeply nested item at byte {pos}")
    major, info = data[pos] >> 5, data[pos] & 0x1F
    pos += 1
    if info == 31:  # indefinite length: items (or string chunks) until a break
        if major not in (2, 3, 4, 5):
            raise BundleError("cbor", f"unexpected break or indefinite item at byte {pos - 1}")
        while pos < len(data) and data[pos] != 0xFF:
            pos = _item_end(data, pos, depth + 1)
        if pos >= len(data):
            raise BundleError("cbor", "an indefinite-length item has no break")
        return pos + 1
    if info < 24:
        value = info
    elif info <= 27:
        n = 1 << (info - 24)
        value, pos = int.from_bytes(data[pos : pos + n], "big"), pos + n
    else:
        raise BundleError("cbor", f"reserved additional information {info} at byte {pos - 1}")
    if major in (2, 3):
        pos += value
    elif major in (4, 5):
        for _ in range(value * (2 if major == 5 else 1)):
            pos = _item_end(data, pos, depth + 1)
    elif major == 6:
        pos = _item_end(data, pos, depth + 1)
    if pos > len(data):
        raise BundleError("cbor", "an item runs past the end of the bundle")
    return pos


def _uint(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise BundleError("field", f"{what} must be an unsigned integer, got {value!r}")
    return value


def eid_from_cbor(value: Any, what: str) -> Eid:
    """An ipn endpoint as CBOR carries it, ``[2, [node, service]]`` (BundleError)."""
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and value[0] == 2
        and isinstance(value[1], list)
        and len(value[1]) == 2
    )
    if not ok:
        raise BundleError("endpoint", f"{what} must be an ipn endpoint [2, [node, service]]")
    return Eid(_uint(value[1][0], what), _uint(value[1][1], what))


def _check_crc(crc_type: Any, raw: bytes, value: Any, where: str) -> None:
    if not isinstance(crc_type, int) or crc_type not in _CRC_BYTES:
        raise BundleError("crc", f"{where} must carry a CRC (type 1 or 2), got {crc_type!r}")
    n = _CRC_BYTES[crc_type]
    if not isinstance(value, bytes) or len(value) != n or raw[-n:] != value:
        raise BundleError("crc", f"{where}: the CRC field is not a {n}-byte string")
    zeroed = raw[:-n] + bytes(n)
    expected = crc16.ibm_sdlc(zeroed) if crc_type == CRC16 else crc32.iscsi(zeroed)
    if int.from_bytes(value, "big") != expected:
        raise BundleError("crc", f"{where}: CRC mismatch")


def _primary(item: Any, raw: bytes) -> dict[str, Any]:
    if not isinstance(item, list) or not 8 <= len(item) <= 11:
        raise BundleError("primary", "the primary block is an array of 8 to 11 fields")
    version, flags, crc_type, dst, src, _report_to, created, lifetime = item[:8]
    if version != 7:
        raise BundleError("version", f"bundle protocol version {version!r}, expected 7")
    if _uint(flags, "bundle flags") & FLAG_IS_FRAGMENT:
        raise BundleError("fragment", "fragments are not supported")
    if len(item) != 9:
        raise BundleError(
            "primary", f"a whole bundle's primary block has 9 fields, got {len(item)}"
        )
    _check_crc(crc_type, raw, item[8], "primary block")
    if not (isinstance(created, list) and len(created) == 2):
        raise BundleError("field", "the creation timestamp is [time, sequence]")
    return {
        "destination": eid_from_cbor(dst, "destination"),
        "source": eid_from_cbor(src, "source"),
        "created_ms": _uint(created[0], "creation time"),
        "sequence": _uint(created[1], "sequence number"),
        "lifetime_ms": _uint(lifetime, "lifetime"),
    }


def _canonical_blocks(blocks: list[tuple[Any, bytes]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    numbers: set[int] = set()
    for k, (item, raw) in enumerate(blocks):
        if not isinstance(item, list) or len(item) not in (5, 6):
            raise BundleError("block", f"block {k + 1} is not an array of 5 or 6 fields")
        kind, number, flags, crc_type, data = item[:5]
        kind, number = _uint(kind, "block type"), _uint(number, "block number")
        if number in numbers or number == 0:
            raise BundleError("block", f"block number {number} is zero or repeated")
        numbers.add(number)
        if len(item) == 6:
            _check_crc(crc_type, raw, item[5], f"block {number}")
        elif crc_type != CRC_NONE:
            raise BundleError("crc", f"block {number} names a CRC type but has no CRC")
        if not isinstance(data, bytes):
            raise BundleError("block", f"block {number}'s data must be a byte string")
        last = k == len(blocks) - 1
        if (kind == BLOCK_PAYLOAD) != last or (last and number != 1):
            raise BundleError("block", "the payload block (type 1, number 1) must be last")
        _extension(kind, number, _uint(flags, "block flags"), data, out)
    hop_count, hop_limit = out.get("hop_count", 0), out.get("hop_limit", DEFAULT_HOP_LIMIT)
    if hop_count > hop_limit:
        raise BundleError("hop-limit", f"hop count {hop_count} exceeds its limit {hop_limit}")
    return out


def _extension(kind: int, number: int, flags: int, data: bytes, out: dict[str, Any]) -> None:
    if kind == BLOCK_PAYLOAD:
        out["payload"] = data
        return
    if kind in (BLOCK_BIB, BLOCK_BCB):
        if number < FIRST_SECURITY_NUMBER or len(out.get("blocks", ())) >= 4:
            raise BundleError(
                "bpsec-block", f"security block number {number} (4 and up, 4 at most)"
            )
        out["blocks"] = (*out.get("blocks", ()), Block(kind, number, flags, data))
        return
    if kind not in (BLOCK_PREVIOUS_NODE, BLOCK_AGE, BLOCK_HOP_COUNT):
        if flags & FLAG_DELETE_IF_UNPROCESSED:
            raise BundleError("unsupported-block", f"block type {kind} must be processed")
        return  # an unknown block we may discard
    try:
        value = cbor2.loads(data)
    except Exception as exc:
        raise BundleError("cbor", f"block type {kind}: {exc}") from None
    if kind == BLOCK_PREVIOUS_NODE:
        out["previous_node"] = eid_from_cbor(value, "previous node")
    elif kind == BLOCK_HOP_COUNT:
        if not (isinstance(value, list) and len(value) == 2):
            raise BundleError("field", "the hop-count block holds [limit, count]")
        out["hop_limit"], out["hop_count"] = _uint(value[0], "hop limit"), _uint(value[1], "hops")
    else:
        _uint(value, "bundle age")
