"""Queries and answers on the wire: CCSDS Space Packets (CCSDS 133.0-B-2).

A packet is the 6-byte primary header (``spacepackets``), a JSON payload and a trailing
CRC-16/CCITT-FALSE (the packet error control of ECSS-E-ST-70-41C) over header and
payload. Queries travel on APID 0x101 (telecommand), answers on 0x102 (telemetry).
Parsing is defensive: a short buffer, a length that disagrees with the header, a bad
CRC, an unknown APID or a malformed payload raises :class:`WireError`, and
:class:`WireStats` counts every rejection by reason; nothing crashes.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from fastcrc import crc16
from spacepackets.ccsds.spacepacket import PacketType, SpacePacketHeader

from starcompute.errors import StarcomputeError

QUERY_APID = 0x101
ANSWER_APID = 0x102
HEADER_BYTES = 6
CRC_BYTES = 2
MAX_PACKET_BYTES = 65542  # the 16-bit data length field: 65,536 + header


class WireError(StarcomputeError):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"rejected packet ({reason}): {detail}")


@dataclass(frozen=True, slots=True)
class QueryPacket:
    query_id: int
    model: str
    prompt: str
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0


@dataclass(frozen=True, slots=True)
class AnswerPacket:
    query_id: int
    text: str
    completion_tokens: int
    finish_reason: str


@dataclass
class WireStats:
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


def _crc(data: bytes) -> bytes:
    return int(crc16.ibm_3740(data)).to_bytes(2, "big")


def encode(message: QueryPacket | AnswerPacket, seq_count: int = 0) -> bytes:
    is_query = isinstance(message, QueryPacket)
    payload = json.dumps(asdict(message), separators=(",", ":")).encode("utf-8")
    data_len = len(payload) + CRC_BYTES - 1  # the CCSDS length field counts from 0
    if HEADER_BYTES + len(payload) + CRC_BYTES > MAX_PACKET_BYTES:
        raise WireError("too-long", f"{len(payload)} payload bytes exceed one space packet")
    header = SpacePacketHeader(
        PacketType.TC if is_query else PacketType.TM,
        QUERY_APID if is_query else ANSWER_APID,
        seq_count % 16384,
        data_len,
    ).pack()
    return bytes(header) + payload + _crc(bytes(header) + payload)


def _fields(payload: bytes, cls: type[Any]) -> Any:
    try:
        doc = json.loads(payload.decode("utf-8"))
        return cls(**doc)
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise WireError("bad-payload", str(exc)) from None


def decode(packet: bytes, stats: WireStats | None = None) -> QueryPacket | AnswerPacket:
    """Parse one packet; every failure is a WireError (counted in ``stats``)."""
    try:
        message = _decode(packet)
    except WireError as exc:
        if stats is not None:
            stats.rejected[exc.reason] += 1
        raise
    if stats is not None:
        stats.accepted += 1
    return message


def _decode(packet: bytes) -> QueryPacket | AnswerPacket:
    if len(packet) < HEADER_BYTES + CRC_BYTES:
        raise WireError("short", f"{len(packet)} bytes, a packet has at least 8")
    try:
        header = SpacePacketHeader.unpack(packet[:HEADER_BYTES])
    except Exception as exc:  # the library's own parse errors
        raise WireError("bad-header", str(exc)) from None
    if header.packet_len != len(packet):
        raise WireError("length", f"header says {header.packet_len} bytes, got {len(packet)}")
    if _crc(packet[:-CRC_BYTES]) != packet[-CRC_BYTES:]:
        raise WireError("crc", "CRC-16 mismatch")
    payload = packet[HEADER_BYTES:-CRC_BYTES]
    if header.apid == QUERY_APID:
        return _fields(payload, QueryPacket)  # type: ignore[no-any-return]
    if header.apid == ANSWER_APID:
        return _fields(payload, AnswerPacket)  # type: ignore[no-any-return]
    raise WireError("apid", f"unknown APID {header.apid:#x}")
