"""BPSec (RFC 9172) with the default security contexts (RFC 9173).

The canonical forms, the HMAC, AES-GCM and the security block encoding are checked
against the test vectors of RFC 9173 Appendix A (A.1 simple integrity, A.2 simple
confidentiality, A.4 security blocks from multiple sources, scope 0x07); the policy
(every bundle signed, queries and answers encrypted, tampering dropped) on our bundles.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import cbor2
import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from starcompute.dtn.bpsec import (
    CONFIDENTIAL,
    CONTEXT_BIB_HMAC_SHA2,
    PAYLOAD_HEADER,
    Asb,
    Bpsec,
    aad,
    hmac_sha2,
    ippt,
    new_secret,
)
from starcompute.dtn.bundle import BLOCK_BCB, BLOCK_BIB, Block, Bundle, decode, encode
from starcompute.dtn.eid import MISSION_CONTROL, Eid, Service
from starcompute.errors import BundleError

# RFC 9173 Appendix A: the primary block and payload shared by A.1, A.2 and A.4
PRIMARY = bytes.fromhex("88070000820282010282028202018202820201820018281a000f4240")
PAYLOAD = b"Ready to generate a 32-byte payload"
SOURCE = Eid(2, 1)  # ipn:2.1, the vectors' security source


def test_a1_simple_integrity_hmac512_scope0() -> None:
    key = bytes.fromhex("1a2b1a2b1a2b1a2b1a2b1a2b1a2b1a2b")
    bib = Block(BLOCK_BIB, 2, 0, b"")
    text = ippt(0, PRIMARY, PAYLOAD_HEADER, PAYLOAD, bib)
    assert text.hex() == "00" + "5823" + PAYLOAD.hex()
    mac = hmac_sha2(key, 7, text)
    assert mac.hex() == (
        "3bdc69b3a34a2b5d3a8554368bd1e808f606219d2a10a846eae3886ae4ecc83c"
        "4ee550fdfb1cc636b904e2f1a73e303dcd4b6ccece003e95e8164dcc89a156e1"
    )
    asb = Asb((1,), CONTEXT_BIB_HMAC_SHA2, SOURCE, {1: 7, 3: 0}, ({1: mac},))
    assert asb.to_bytes().hex() == "810101018202820201828201078203008181820158" + "40" + mac.hex()
    assert Asb.from_bytes(asb.to_bytes()) == asb


def test_a2_simple_confidentiality_a128gcm_scope0() -> None:
    key = bytes.fromhex("71776572747975696f70617364666768")  # the content key, unwrapped
    iv = bytes.fromhex("5477656c7665313231323132")
    extra = aad(0, PRIMARY, PAYLOAD_HEADER, Block(BLOCK_BCB, 2, 1, b""))
    assert extra.hex() == "00"
    sealed = AESGCM(key).encrypt(iv, PAYLOAD, extra)
    assert (
        sealed[:-16].hex()
        == "3a09c1e63fe23a7f66a59c7303837241e070b02619fc59c5214a22f08cd70795e73e9a"
    )
    assert sealed[-16:].hex() == "efa4b5ac0108e3816c5606479801bc04"


def test_a4_full_scope_bib_hmac384_and_bcb_a256gcm() -> None:
    bib = Block(BLOCK_BIB, 3, 0, b"")
    text = ippt(7, PRIMARY, PAYLOAD_HEADER, PAYLOAD, bib)
    assert text.hex() == ("07" + PRIMARY.hex() + "010100" + "0b0300" + "5823" + PAYLOAD.hex())
    mac = hmac_sha2(bytes.fromhex("1a2b1a2b1a2b1a2b1a2b1a2b1a2b1a2b"), 6, text)
    assert mac.hex() == (
        "f75fe4c37f76f046165855bd5ff72fbfd4e3a64b4695c40e2b787da0"
        "05ae819f0a2e30a2e8b325527de8aefb52e73d71"
    )
    key = bytes.fromhex("71776572747975696f70617364666768" * 2)
    iv = bytes.fromhex("5477656c7665313231323132")
    extra = aad(7, PRIMARY, PAYLOAD_HEADER, Block(BLOCK_BCB, 2, 1, b""))
    assert extra.hex() == "07" + PRIMARY.hex() + "010100" + "0c0201"
    sealed = AESGCM(key).encrypt(iv, PAYLOAD, extra)
    assert (
        sealed[:-16].hex()
        == "90eab6457593379298a8724e16e61f837488e127212b59ac91f8a86287b7d07630a122"
    )
    assert sealed[-16:].hex() == "d2c51cb2481792dae8b21d848cede99b"


# ---------------------------------------------------------------- our policy
SAT = 101


def _bundle(service: Service, up: bool = True, payload: bytes = b"what is 2+2?") -> Bundle:
    src, dst = (Eid(MISSION_CONTROL, service), Eid(SAT, service))
    if not up:
        src, dst = Eid(SAT, service), Eid(MISSION_CONTROL, service)
    return Bundle(src, dst, 800_000_000_000, 3, payload)


@pytest.fixture()
def ends() -> tuple[Bpsec, Bpsec]:
    secret = new_secret()
    return Bpsec({SAT: secret}), Bpsec({SAT: secret})  # the satellite, mission control


@pytest.mark.parametrize("service", list(Service))
@pytest.mark.parametrize("up", [True, False])
def test_round_trip_through_the_wire(ends: tuple[Bpsec, Bpsec], service: Service, up: bool) -> None:
    sat, ground = ends
    plain = _bundle(service, up)
    sent = (ground if up else sat).protect(plain)
    wire = decode(encode(sent.forwarded_by(Eid(150, 0))))  # a relay's copy
    got = (sat if up else ground).accept(wire)
    assert got.payload == plain.payload and got.blocks == ()
    encrypted = service in CONFIDENTIAL  # jobs, answers, model parts
    assert (plain.payload not in encode(sent)) == encrypted
    kinds = sorted(b.kind for b in sent.blocks)
    assert kinds == ([BLOCK_BIB, BLOCK_BCB] if encrypted else [BLOCK_BIB])


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize("service", [Service.JOB, Service.TELEMETRY])
def test_tampered_payload_is_refused(ends: tuple[Bpsec, Bpsec], service: Service) -> None:
    sat, ground = ends
    sent = ground.protect(_bundle(service))
    tampered = dataclasses.replace(sent, payload=_flip(sent.payload, 0))
    with pytest.raises(BundleError) as err:
        sat.accept(decode(encode(tampered)))
    want = "bpsec-confidentiality" if service == Service.JOB else "bpsec-integrity"
    assert err.value.reason == want


@pytest.mark.parametrize("kind", [BLOCK_BIB, BLOCK_BCB])
def test_tampered_security_block_is_refused(ends: tuple[Bpsec, Bpsec], kind: int) -> None:
    sat, ground = ends
    sent = ground.protect(_bundle(Service.JOB))
    blocks = tuple(
        dataclasses.replace(b, data=_flip(b.data, len(b.data) - 1)) if b.kind == kind else b
        for b in sent.blocks
    )  # the last byte: the HMAC's or the tag's
    with pytest.raises(BundleError) as err:
        sat.accept(decode(encode(dataclasses.replace(sent, blocks=blocks))))
    assert err.value.reason in ("bpsec-integrity", "bpsec-confidentiality")


def test_changed_primary_block_is_refused(ends: tuple[Bpsec, Bpsec]) -> None:
    sat, ground = ends
    sent = ground.protect(_bundle(Service.COMMAND))
    for change in ({"lifetime_ms": 10**9}, {"sequence": 4}, {"created_ms": 1}):
        with pytest.raises(BundleError, match="HMAC"):
            sat.accept(dataclasses.replace(sent, **change))


def test_unsigned_unencrypted_and_foreign_bundles_are_refused(ends: tuple[Bpsec, Bpsec]) -> None:
    sat, ground = ends
    with pytest.raises(BundleError) as err:
        sat.accept(_bundle(Service.TELEMETRY))
    assert err.value.reason == "bpsec-unsigned"
    signed = ground.protect(_bundle(Service.JOB))
    bib_only = dataclasses.replace(signed, blocks=signed.blocks[:1])
    with pytest.raises(BundleError) as err:
        sat.accept(bib_only)
    assert err.value.reason == "bpsec-unencrypted"
    other = Bpsec({SAT: new_secret()})  # someone with another key
    with pytest.raises(BundleError):
        sat.accept(other.protect(_bundle(Service.JOB)))
    with pytest.raises(BundleError) as err:
        Bpsec({}).accept(signed)
    assert err.value.reason == "bpsec-no-key"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x81", b"\xff\xff", cbor2.dumps([1]) * 6, bytes(40), b"\x81\x01" + b"\x01" * 9],
)
def test_malformed_security_blocks_are_bundle_errors(data: bytes) -> None:
    with pytest.raises(BundleError):
        Asb.from_bytes(data)


def test_agent_drops_and_counts_unsigned_and_tampered_bundles(tmp_path: Path) -> None:
    """A satellite's bundle agent (the security acceptor) refuses a query bundle whose
    BCB or BIB was tampered with, or that comes unsigned; each is counted by reason and
    never delivered; the genuine one is delivered in plaintext."""
    from starcompute.dtn.agent import BundleAgent
    from starcompute.dtn.eid import NodeNames
    from starcompute.dtn.store import BundleStore
    from starcompute.times import OrbitClock

    names = NodeNames.of(["S0", "S1"], ["gs"])
    secret = new_secret()
    ground, onboard = Bpsec({names.number("S0"): secret}), Bpsec({names.number("S0"): secret})
    clock = OrbitClock(np.datetime64("2026-01-01T00:00:00", "ns"), 1.0)
    delivered: list[bytes] = []

    async def deliver(stored: Any) -> None:
        delivered.append(stored.bundle.payload)

    nothing: Any = None  # no router or radio: bundles are handed in directly
    store = BundleStore(tmp_path / "s0.sqlite")
    agent = BundleAgent("S0", names, store, nothing, nothing, clock, deliver, security=onboard)
    from starcompute.dtn.bundle import dtn_ms

    def job(n: int) -> Bundle:
        return Bundle(
            Eid(MISSION_CONTROL, Service.JOB), names.eid("S0", Service.JOB),
            dtn_ms(clock.now()), n, b"secret prompt",
        )  # fmt: skip

    def tamper(b: Bundle, kind: int) -> Bundle:
        blocks = tuple(
            dataclasses.replace(x, data=_flip(x.data, len(x.data) - 1)) if x.kind == kind else x
            for x in b.blocks
        )
        return dataclasses.replace(b, blocks=blocks)

    async def go() -> list[int | None]:
        sent = [
            ground.protect(job(1)),
            tamper(ground.protect(job(2)), BLOCK_BCB),
            tamper(ground.protect(job(3)), BLOCK_BIB),
            job(4),  # unsigned
            dataclasses.replace(ground.protect(job(5)), payload=b"x" * 13),  # forged payload
        ]
        verdicts = [await agent._accept(encode(b), "peer") for b in sent]
        await asyncio.sleep(0.05)  # deliveries run as tasks
        return verdicts

    verdicts = asyncio.run(go())
    assert verdicts[0] is None and all(v is not None for v in verdicts[1:])
    assert delivered == [b"secret prompt"]
    counters = agent.store.counters()
    assert counters["rejected:bpsec-confidentiality"] == 2
    assert counters["rejected:bpsec-integrity"] == 1
    assert counters["rejected:bpsec-unsigned"] == 1
