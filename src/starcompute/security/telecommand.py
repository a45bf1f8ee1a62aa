"""Authenticated telecommands: every ground -> satellite command (model upload,
configuration change, job, key rotation) is a CCSDS space packet (133.0-B-2, telecommand,
APID ``COMMAND_APID``) whose data field is protected in the manner of CCSDS Space Data
Link Security (SDLS, 355.0-B-2) in authenticated-encryption mode:

    primary header (6) | SPI = key id (2) | sequence number (8) | AES-GCM ciphertext | MAC (16)

The 12-byte GCM nonce is the key's 4-byte salt followed by the 64-bit sequence number, so
a nonce never repeats under one key; the primary header and the security header are
authenticated as associated data (a changed length, APID, key id or sequence number fails
the MAC). Keys are per satellite; the ground counts sequence numbers per satellite and
key. A satellite accepts a sequence number once, and none older than its anti-replay
window (a sliding window as in IPsec, RFC 4303 section 3.4.3), so packets may arrive out of
order within the window. Every rejection is a :class:`TelecommandError` with a reason,
counted per satellite; nothing crashes.

Over-the-air rekeying (the SDLS key-management idea, 355.1-B-1): each satellite is
launched with a 32-byte master key, which never travels. Session keys are derived from
it (HKDF-SHA-256 over the key id and a nonce). ``rotate-key``, authenticated under the
current session key, carries only the next key id and a fresh 16-byte nonce; both ends
derive the next key from the master key, and the old one is retired at once, so an
eavesdropper who holds the old session key learns nothing of the new one. The master key
also keys the satellite's BPSec blocks (``dtn.bpsec``, under other HKDF labels).
"""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spacepackets.ccsds.spacepacket import PacketType, SpacePacketHeader

from starcompute.errors import InputError, StarcomputeError, TelecommandError

COMMAND_APID = 0x1C0
HEADER_BYTES = 6
RECENT_OUTCOMES = 32  # command outcomes a satellite reports back
SECURITY_HEADER = struct.Struct(">HQ")  # SPI (key id), 64-bit sequence number
MAC_BYTES = 16
KEY_BYTES = 32  # AES-256
SALT_BYTES = 4
DEFAULT_WINDOW = 64
MAX_SEQUENCE = 2**64 - 1
MASTER_BYTES, NONCE_BYTES = 32, 16


class CommandKind(StrEnum):
    """The telecommands a satellite accepts (the API schema and the nodes use these)."""

    UPLOAD_MODEL = "upload-model"
    SET_CONFIG = "set-config"
    RUN_JOB = "run-job"
    ROTATE_KEY = "rotate-key"


COMMANDS = tuple(CommandKind)
MIN_BYTES = HEADER_BYTES + SECURITY_HEADER.size + MAC_BYTES


@dataclass(frozen=True, slots=True)
class Command:
    kind: str
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in COMMANDS:
            raise InputError(f"command {self.kind!r} is unknown: choose {', '.join(COMMANDS)}")


@dataclass(frozen=True, slots=True)
class Key:
    key_id: int  # the SDLS security parameter index (1..65535)
    secret: bytes  # 32 bytes, AES-256
    salt: bytes  # 4 bytes, the fixed part of the nonce

    def __post_init__(self) -> None:
        if not 1 <= self.key_id <= 0xFFFF:
            raise InputError(f"key id must be within 1..65535, got {self.key_id}")
        if len(self.secret) != KEY_BYTES or len(self.salt) != SALT_BYTES:
            raise InputError(f"a key is {KEY_BYTES} bytes with a {SALT_BYTES}-byte salt")

    @classmethod
    def generate(cls, key_id: int) -> Key:
        return cls(key_id, AESGCM.generate_key(bit_length=256), os.urandom(SALT_BYTES))

    @classmethod
    def derive(cls, master: bytes, key_id: int, nonce: bytes = b"") -> Key:
        """Session key ``key_id`` from the master key (HKDF-SHA-256, the nonce as salt)."""
        if len(master) != MASTER_BYTES:
            raise InputError(f"a master key is {MASTER_BYTES} bytes, got {len(master)}")
        info = b"starcompute telecommand key " + key_id.to_bytes(2, "big")
        okm = HKDF(hashes.SHA256(), KEY_BYTES + SALT_BYTES, nonce or None, info).derive(master)
        return cls(key_id, okm[:KEY_BYTES], okm[KEY_BYTES:])

    def next_id(self) -> int:
        return self.key_id % 0xFFFF + 1

    def nonce(self, sequence: int) -> bytes:
        return self.salt + sequence.to_bytes(8, "big")

    def to_args(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "secret": self.secret.hex(), "salt": self.salt.hex()}

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> Key:
        try:
            return cls(
                int(args["key_id"]), bytes.fromhex(args["secret"]), bytes.fromhex(args["salt"])
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"a stored key needs key_id, secret, salt: {exc}") from None


def new_master() -> bytes:
    """A satellite's master key, provisioned before launch."""
    return os.urandom(MASTER_BYTES)


def _rekey(master: bytes | None, args: dict[str, Any]) -> Key:
    """The session key a ``rotate-key`` command names: derived on board, never sent."""
    if master is None:
        raise TelecommandError("no-master", "this satellite holds no master key to rekey from")
    try:
        key_id, nonce = int(args["key_id"]), bytes.fromhex(args["nonce"])
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"the nonce is {NONCE_BYTES} bytes")
        return Key.derive(master, key_id, nonce)
    except (KeyError, ValueError, TypeError, InputError) as exc:
        raise TelecommandError("bad-payload", f"rotate-key needs key_id and nonce: {exc}") from None


def _header(body_bytes: int, seq_count: int) -> bytes:
    return bytes(
        SpacePacketHeader(PacketType.TC, COMMAND_APID, seq_count % 16384, body_bytes - 1).pack()
    )


@dataclass(slots=True)
class GroundKeys:
    """Mission control's side for one satellite: the active key and its counter."""

    key: Key
    next_sequence: int = 1
    master: bytes | None = None  # for over-the-air rekeying (and the BPSec keys)

    @classmethod
    def provision(cls, master: bytes) -> GroundKeys:
        return cls(Key.derive(master, 1), 1, master)

    def seal(self, command: Command) -> bytes:
        """The packet for ``command`` under the active key (the next sequence number)."""
        if self.next_sequence > MAX_SEQUENCE:
            raise StarcomputeError(
                f"key {self.key.key_id} has used every sequence number: rotate it"
            )
        seq, self.next_sequence = self.next_sequence, self.next_sequence + 1
        plaintext = json.dumps({"kind": command.kind, "args": command.args}, separators=(",", ":"))
        sec = SECURITY_HEADER.pack(self.key.key_id, seq)
        body_bytes = len(sec) + len(plaintext.encode()) + MAC_BYTES
        header = _header(body_bytes, seq)
        sealed = AESGCM(self.key.secret).encrypt(
            self.key.nonce(seq), plaintext.encode(), header + sec
        )
        return header + sec + sealed

    def rotate(self) -> bytes:
        """The ``rotate-key`` packet (under the current key: the next key id and a fresh
        nonce, no key material); later packets use the key both ends derive from it."""
        if self.master is None:
            raise StarcomputeError("no master key for this satellite: it cannot be rekeyed")
        args = {"key_id": self.key.next_id(), "nonce": os.urandom(NONCE_BYTES).hex()}
        packet = self.seal(Command(CommandKind.ROTATE_KEY, args))
        self.key, self.next_sequence = _rekey(self.master, args), 1
        return packet

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"key": self.key.to_args(), "next_sequence": self.next_sequence}
        return doc | ({"master": self.master.hex()} if self.master else {})

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> GroundKeys:
        master = bytes.fromhex(doc["master"]) if "master" in doc else None
        return cls(Key.from_args(doc["key"]), int(doc["next_sequence"]), master)


@dataclass(slots=True)
class ReplayWindow:
    """Accept each sequence number once, none more than ``size`` below the highest seen."""

    size: int = DEFAULT_WINDOW
    highest: int = 0
    seen: set[int] = field(default_factory=set)

    def check(self, seq: int) -> None:
        if seq == 0:
            raise TelecommandError("sequence", "sequence number 0 is never sent")
        if seq <= self.highest - self.size:
            raise TelecommandError(
                "stale", f"sequence {seq} is below the window ({self.highest} - {self.size})"
            )
        if seq in self.seen:
            raise TelecommandError("replay", f"sequence {seq} was already accepted")

    def accept(self, seq: int) -> None:
        self.seen.add(seq)
        self.highest = max(self.highest, seq)
        self.seen = {s for s in self.seen if s > self.highest - self.size}


@dataclass(slots=True)
class SatelliteKeys:
    """A satellite's side: its keys, the replay window of the active one, counters."""

    active: Key
    window_size: int = DEFAULT_WINDOW
    master: bytes | None = None
    retired: set[int] = field(default_factory=set)
    window: ReplayWindow = field(init=False)
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    recent: list[dict[str, Any]] = field(default_factory=list)  # the last outcomes, newest last

    def __post_init__(self) -> None:
        self.window = ReplayWindow(self.window_size)

    def note(self, packet: bytes, kind: str | None, outcome: str, reason: str = "") -> None:
        """Remember a command's outcome (``accepted``, ``rejected``; the node adds
        ``applied`` or ``failed`` once it acted), reported in housekeeping so the ground
        can verify each command it sent by its id (``key id:sequence number``)."""
        ident = packet_id(packet)
        for entry in self.recent:
            if ident is not None and entry["id"] == ident and entry["outcome"] == "accepted":
                entry.update(outcome=outcome, reason=reason)  # acted on: its final outcome
                return
        self.recent.append({"id": ident, "kind": kind, "outcome": outcome, "reason": reason})
        del self.recent[:-RECENT_OUTCOMES]

    @classmethod
    def provision(cls, master: bytes, window_size: int = DEFAULT_WINDOW) -> SatelliteKeys:
        return cls(Key.derive(master, 1), window_size, master)

    def to_dict(self) -> dict[str, Any]:
        """Everything the satellite must keep across a restart (keys, replay window,
        counters): persisted after every command it accepts."""
        return {
            "active": self.active.to_args(),
            "window_size": self.window_size,
            "retired": sorted(self.retired),
            "highest": self.window.highest,
            "seen": sorted(self.window.seen),
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "recent": self.recent,
        } | ({"master": self.master.hex()} if self.master else {})

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> SatelliteKeys:
        master = bytes.fromhex(doc["master"]) if "master" in doc else None
        window = int(doc.get("window_size", DEFAULT_WINDOW))
        keys = cls(Key.from_args(doc["active"]), window, master)
        keys.retired = {int(k) for k in doc.get("retired", [])}
        keys.window.highest = int(doc.get("highest", 0))
        keys.window.seen = {int(k) for k in doc.get("seen", [])}
        keys.accepted = int(doc.get("accepted", 0))
        keys.rejected = Counter({str(k): int(v) for k, v in doc.get("rejected", {}).items()})
        keys.recent = [dict(e) for e in doc.get("recent", [])]
        return keys

    def open(self, packet: bytes) -> Command:
        """Authenticate, check freshness and decrypt one packet; counts the outcome."""
        try:
            command = self._open(packet)
        except TelecommandError as exc:
            self.rejected[exc.reason] += 1
            self.note(packet, None, "rejected", exc.reason)
            raise
        self.accepted += 1
        self.note(packet, command.kind, "accepted")
        return command

    def _open(self, packet: bytes) -> Command:
        key_id, seq, header, sec = _parse(packet)
        if key_id != self.active.key_id:
            reason = "retired-key" if key_id in self.retired else "unknown-key"
            raise TelecommandError(reason, f"key id {key_id} (active: {self.active.key_id})")
        self.window.check(seq)
        body = packet[HEADER_BYTES + SECURITY_HEADER.size :]
        try:
            plaintext = AESGCM(self.active.secret).decrypt(
                self.active.nonce(seq), body, header + sec
            )
        except InvalidTag:
            raise TelecommandError("auth", "the MAC does not verify (tampered or forged)") from None
        command = _command(plaintext)
        self.window.accept(seq)  # only authenticated packets move the window
        if command.kind == CommandKind.ROTATE_KEY:
            new = _rekey(self.master, command.args)  # checked before anything changes
            self.retired.add(self.active.key_id)
            self.active, self.window = new, ReplayWindow(self.window_size)
        return command


def _parse(packet: bytes) -> tuple[int, int, bytes, bytes]:
    if not isinstance(packet, bytes | bytearray) or len(packet) < MIN_BYTES:
        raise TelecommandError("short", f"a protected command has at least {MIN_BYTES} bytes")
    packet = bytes(packet)
    try:
        header = SpacePacketHeader.unpack(packet[:HEADER_BYTES])
    except Exception as exc:  # the library's own parse errors
        raise TelecommandError("header", str(exc)) from None
    if header.packet_type != PacketType.TC or header.apid != COMMAND_APID:
        raise TelecommandError("apid", f"not a telecommand on APID {COMMAND_APID:#x}")
    if header.packet_len != len(packet):
        raise TelecommandError(
            "length", f"header says {header.packet_len} bytes, got {len(packet)}"
        )
    sec = packet[HEADER_BYTES : HEADER_BYTES + SECURITY_HEADER.size]
    key_id, seq = SECURITY_HEADER.unpack(sec)
    return key_id, seq, packet[:HEADER_BYTES], sec


def packet_id(packet: bytes) -> str | None:
    """A command packet's id, ``key id:sequence number`` (its clear header: no key
    needed); None if it is not a command packet at all."""
    try:
        key_id, seq, _, _ = _parse(packet)
    except TelecommandError:
        return None
    return f"{key_id}:{seq}"


def _command(plaintext: bytes) -> Command:
    try:
        doc = json.loads(plaintext.decode("utf-8"))
        return Command(str(doc["kind"]), dict(doc["args"]))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, InputError) as exc:
        raise TelecommandError("bad-payload", str(exc)) from None


@dataclass(slots=True)
class CommandLink:
    """The uplink of a whole constellation, both ends (the twin holds mission control's
    keys and every satellite's): a command is sealed on the ground under that satellite's
    key and opened on board, which authenticates it, checks its freshness and counts the
    outcome. Keys are provisioned per satellite at first use (at launch, in reality)."""

    satellites: frozenset[str]
    ground: dict[str, GroundKeys] = field(default_factory=dict)
    onboard: dict[str, SatelliteKeys] = field(default_factory=dict)

    def ends(self, satellite: str) -> tuple[GroundKeys, SatelliteKeys]:
        if satellite not in self.satellites:
            raise InputError(f"no satellite {satellite!r} in the constellation")
        if satellite not in self.ground:
            master = new_master()
            self.ground[satellite] = GroundKeys.provision(master)
            self.onboard[satellite] = SatelliteKeys.provision(master)
        return self.ground[satellite], self.onboard[satellite]

    def send(self, satellite: str, command: Command) -> tuple[bytes, Command]:
        """Seal ``command`` on the ground and open it on board: (packet, what arrived)."""
        ground, onboard = self.ends(satellite)
        packet = ground.seal(command)
        return packet, onboard.open(packet)

    def receive(self, satellite: str, packet: bytes) -> Command:
        """A packet from anyone's transmitter, opened on board (TelecommandError if it
        is not authentic and fresh)."""
        return self.ends(satellite)[1].open(packet)

    def rotate(self, satellite: str) -> bytes:
        """Rekey the satellite over the air (both ends derive the next key); the packet."""
        ground, onboard = self.ends(satellite)
        packet = ground.rotate()
        onboard.open(packet)
        return packet

    def stats(self) -> dict[str, Any]:
        """Commands accepted on board, and rejected by reason, over all satellites."""
        rejected: Counter[str] = Counter()
        for keys in self.onboard.values():
            rejected.update(keys.rejected)
        return {
            "accepted": sum(k.accepted for k in self.onboard.values()),
            "rejected": dict(rejected),
        }
