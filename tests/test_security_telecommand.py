"""Authenticated telecommands (issue 10): every tampered, replayed, stale, forged or
wrong-key packet is rejected; every valid one is accepted, also out of order within the
anti-replay window. Layout per CCSDS 133.0-B-2 (space packet) and 355.0-B-2 (SDLS:
SPI + sequence number header, AES-GCM, 16-byte MAC)."""

from __future__ import annotations

import json
import random

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from spacepackets.ccsds.spacepacket import PacketType, SpacePacketHeader

from starcompute.security.telecommand import (
    COMMAND_APID,
    Command,
    GroundKeys,
    Key,
    SatelliteKeys,
    TelecommandError,
    new_master,
)

N = 1000


def _pair(window: int = 64) -> tuple[GroundKeys, SatelliteKeys]:
    master = new_master()
    return GroundKeys.provision(master), SatelliteKeys.provision(master, window)


def _commands(n: int) -> list[Command]:
    kinds = [
        Command("upload-model", {"model": "smollm2-135m-instruct", "sha256": "ab" * 32}),
        Command("set-config", {"max_batch": 16}),
        Command("run-job", {"job": "query", "id": 7}),
    ]
    return [kinds[i % 3] for i in range(n)]


def _reject(sat: SatelliteKeys, packet: bytes) -> str:
    with pytest.raises(TelecommandError) as info:
        sat.open(packet)
    return info.value.reason


def test_packet_layout_is_a_space_packet_with_an_sdls_header() -> None:
    ground, _ = _pair()
    packet = ground.seal(Command("set-config", {"max_batch": 8}))
    header = SpacePacketHeader.unpack(packet[:6])
    assert header.packet_type == PacketType.TC and header.apid == COMMAND_APID
    assert header.packet_len == len(packet)
    assert packet[6:8] == (1).to_bytes(2, "big")  # SPI = key id
    assert packet[8:16] == (1).to_bytes(8, "big")  # first sequence number
    # independently: AES-GCM with nonce = salt || sequence, AAD = both headers
    plain = AESGCM(ground.key.secret).decrypt(
        ground.key.salt + packet[8:16], packet[16:], packet[:16]
    )
    assert plain == b'{"kind":"set-config","args":{"max_batch":8}}'


def test_every_valid_command_is_accepted_also_out_of_order_within_the_window() -> None:
    ground, sat = _pair(window=64)
    packets = [ground.seal(c) for c in _commands(N)]
    rng = random.Random(1)
    for start in range(0, N, 32):  # shuffled in blocks of 32 < window
        block = packets[start : start + 32]
        rng.shuffle(block)
        for p in block:
            sat.open(p)
    assert sat.accepted == N and not sat.rejected


def test_every_tampered_packet_is_rejected() -> None:
    ground, sat = _pair()
    rng = random.Random(2)
    for command in _commands(N):
        packet = bytearray(ground.seal(command))
        bit = rng.randrange(8 * len(packet))
        packet[bit // 8] ^= 1 << (bit % 8)
        _reject(sat, bytes(packet))
    truncated = ground.seal(Command("run-job", {"id": 1}))[:-1]
    _reject(sat, truncated)
    assert sat.accepted == 0 and sum(sat.rejected.values()) == N + 1


def test_every_replayed_or_stale_packet_is_rejected() -> None:
    ground, sat = _pair(window=64)
    packets = [ground.seal(c) for c in _commands(N)]
    held_back = packets[:100]
    for p in packets[100:]:
        sat.open(p)
    reasons = [_reject(sat, p) for p in packets[100:]]  # every accepted packet, again
    assert set(reasons[-64:]) == {"replay"}  # inside the window: seen before
    assert set(reasons[:-64]) == {"stale"}  # older than the window
    assert {_reject(sat, p) for p in held_back} == {"stale"}  # never seen, far too old
    assert sat.accepted == N - 100 and sum(sat.rejected.values()) == N


def test_forged_and_wrong_satellite_packets_are_rejected() -> None:
    ground_a, _ = _pair()
    _, sat_b = _pair()  # another satellite: its own key under the same key id
    assert {_reject(sat_b, ground_a.seal(c)) for c in _commands(50)} == {"auth"}
    forger = GroundKeys(Key(1, bytes(32), sat_b.active.salt))  # right id and salt, no secret
    assert _reject(sat_b, forger.seal(Command("run-job", {}))) == "auth"
    other_id = GroundKeys(Key.generate(9))
    assert _reject(sat_b, other_id.seal(Command("run-job", {}))) == "unknown-key"


def test_key_rotation_retires_the_old_key() -> None:
    ground, sat = _pair()
    old = GroundKeys(ground.key, 500)  # a copy of the old key, as an eavesdropper might hold
    sat.open(ground.seal(Command("set-config", {"a": 1})))
    sat.open(ground.rotate())
    assert sat.active.key_id == 2 and sat.active == ground.key
    sat.open(ground.seal(Command("set-config", {"a": 2})))  # new key, counter restarted
    assert _reject(sat, old.seal(Command("set-config", {"a": 3}))) == "retired-key"
    assert sat.accepted == 3


def test_over_the_air_rekeying_sends_no_key_material() -> None:
    """SDLS-style OTAR: the rotate-key packet, read by someone holding the old session
    key, names only the next key id and a nonce; the new key needs the master key."""
    ground, sat = _pair()
    old = ground.key
    packet = ground.rotate()
    plain = AESGCM(old.secret).decrypt(old.salt + packet[8:16], packet[16:], packet[:16])
    args = json.loads(plain)["args"]
    assert set(args) == {"key_id", "nonce"} and len(bytes.fromhex(args["nonce"])) == 16
    assert ground.key.secret.hex() not in plain.decode() and ground.key.secret != old.secret
    guessed = Key.derive(new_master(), 2, bytes.fromhex(args["nonce"]))  # a wrong master
    assert guessed.secret != ground.key.secret
    sat.open(packet)
    assert sat.active == ground.key  # both ends derived the same key
    for _ in range(3):  # again and again: every key differs
        sat.open(ground.rotate())
    assert len({*sat.retired, sat.active.key_id}) == 5 and sat.active == ground.key
    bare = SatelliteKeys(sat.active)  # no master on board: it cannot rekey
    assert _reject(bare, GroundKeys(sat.active, 999, ground.master).rotate()) == "no-master"


def test_keys_survive_a_restart_with_their_master() -> None:
    ground, sat = _pair()
    sat.open(ground.rotate())
    ground2 = GroundKeys.from_dict(json.loads(json.dumps(ground.to_dict())))
    sat2 = SatelliteKeys.from_dict(json.loads(json.dumps(sat.to_dict())))
    sat2.open(ground2.rotate())
    assert sat2.active == ground2.key and ground2.master == ground.master


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    _, sat = _pair()
    with pytest.raises(TelecommandError):
        sat.open(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_change_to_a_valid_packet_is_rejected(data: st.DataObject) -> None:
    ground, sat = _pair()
    packet = ground.seal(Command("upload-model", {"model": "x"}))
    mutated = data.draw(
        st.one_of(
            st.binary(min_size=1, max_size=len(packet) + 8),
            st.builds(
                lambda i, b: packet[:i] + bytes([b]) + packet[i + 1 :],
                st.integers(0, len(packet) - 1),
                st.integers(0, 255),
            ),
        )
    )
    if mutated == packet:
        return
    with pytest.raises(TelecommandError):
        sat.open(mutated)


def test_bad_keys_and_commands_are_input_errors() -> None:
    from starcompute.errors import InputError

    with pytest.raises(InputError, match=r"key id must be within 1\.\.65535"):
        Key(0, bytes(32), bytes(4))
    with pytest.raises(InputError, match="32 bytes"):
        Key(1, bytes(16), bytes(4))
    with pytest.raises(InputError, match="command 'reboot' is unknown"):
        Command("reboot")
