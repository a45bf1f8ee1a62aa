"""BPSec (RFC 9172) with its default security contexts (RFC 9173), per node keys.

Every bundle carries a Block Integrity Block (BIB, type 11, context BIB-HMAC-SHA2) made
by its source; query and answer payloads (the job and answer services) and model
weights are also encrypted in place under a Block Confidentiality Block (BCB, type 12, context
BCB-AES-GCM), whose authentication tag covers the primary block and both block headers
as associated data. Security blocks travel unchanged through relays and are checked
where the bundle is delivered (the security acceptor); a bundle without them, or whose
HMAC or tag does not verify, is dropped and counted there (``BundleError`` with a
``bpsec-...`` reason), and its payload never reaches the application.

Layout, as the RFCs define it:

* an abstract security block's data is a CBOR *sequence*: targets, context id, context
  flags (bit 0: parameters present), security source, [parameters], results;
* the integrity-protected plaintext (RFC 9173 section 3.7) is the CBOR sequence: scope
  flags, [primary block], [target type, number, flags], [BIB type, number, flags], the
  target's data as a CBOR byte string (the primary block itself when it is the target);
* the AES-GCM additional data (section 4.7.2) is the same without the target's data;
  the plaintext is the target's data without its CBOR header, replaced by the
  ciphertext of the same length; the 16-byte tag is the result.

Keys (a choice of this project; RFC 9173 leaves key management out): each satellite has
one 32-byte BPSec secret, shared with mission control when provisioned, from which the
HMAC-SHA-384 key and the AES-256 key are derived (HKDF-SHA-256, one label each). A
bundle between a satellite and mission control is protected under that satellite's
keys, whichever way it goes; a bundle between two satellites under its source's.
Parameters are written only where they differ from RFC 9173's defaults (SHA-384, A256GCM,
scope 0x07); the IV is 12 random bytes per BCB.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from starcompute.dtn.bundle import (
    BLOCK_BCB,
    BLOCK_BIB,
    BLOCK_PAYLOAD,
    Block,
    Bundle,
    cbor_sequence,
    eid_from_cbor,
    primary_bytes,
)
from starcompute.dtn.eid import MISSION_CONTROL, Eid, Service
from starcompute.errors import BundleError

CONTEXT_BIB_HMAC_SHA2, CONTEXT_BCB_AES_GCM = 1, 2
SHA_VARIANTS = {5: hashlib.sha256, 6: hashlib.sha384, 7: hashlib.sha512}
AES_KEY_BYTES = {1: 16, 3: 32}  # A128GCM, A256GCM
DEFAULT_SHA, DEFAULT_AES, DEFAULT_SCOPE = 6, 3, 0x07
BIB_SHA, BIB_SCOPE, BCB_IV, BCB_AES, BCB_SCOPE = 1, 3, 1, 2, 4  # parameter ids
RESULT = 1  # the expected HMAC (BIB) or the authentication tag (BCB)
SCOPE_PRIMARY, SCOPE_TARGET, SCOPE_SECURITY = 0x1, 0x2, 0x4
PRIMARY = 0  # the primary block's number as a security target
PRIMARY_HEADER, PAYLOAD_HEADER = (0, PRIMARY, 0), (BLOCK_PAYLOAD, 1, 0)  # type, number, flags
BIB_NUMBER, BCB_NUMBER = 4, 5  # after hop count (2) and previous node (3)
IV_BYTES, TAG_BYTES, SECRET_BYTES = 12, 16, 32
CONFIDENTIAL = frozenset({Service.JOB, Service.ANSWER, Service.MODEL})  # queries, answers, weights


@dataclass(frozen=True, slots=True)
class Asb:
    """An abstract security block's data (RFC 9172 section 3.6)."""

    targets: tuple[int, ...]
    context: int
    source: Eid
    params: Mapping[int, Any]
    results: tuple[Mapping[int, Any], ...]  # one per target

    def to_bytes(self) -> bytes:
        items: list[Any] = [list(self.targets), self.context, 1 if self.params else 0]
        items.append([2, [self.source.node, self.source.service]])
        if self.params:
            items.append([[k, v] for k, v in sorted(self.params.items())])
        items.append([[[k, v] for k, v in sorted(r.items())] for r in self.results])
        return b"".join(cbor2.dumps(item) for item in items)

    @classmethod
    def from_bytes(cls, data: bytes) -> Asb:
        try:
            items = cbor_sequence(data, 6)
        except BundleError as exc:
            raise BundleError("bpsec-block", exc.detail) from None
        if len(items) not in (5, 6):
            raise BundleError("bpsec-block", "a security block holds 5 or 6 CBOR items")
        targets, context, flags, source = items[:4]
        if not (isinstance(targets, list) and targets and all(_uint(t) for t in targets)):
            raise BundleError("bpsec-block", "security targets must be block numbers")
        if len(set(targets)) != len(targets) or not _uint(context) or not _uint(flags):
            raise BundleError("bpsec-block", "repeated target, or a bad context id or flags")
        has_params = bool(flags & 1)
        if len(items) != 5 + has_params:
            raise BundleError("bpsec-block", "the parameters flag disagrees with the fields")
        params = _pairs(items[4]) if has_params else {}
        results = items[-1]
        if not isinstance(results, list) or len(results) != len(targets):
            raise BundleError("bpsec-block", "one result set per security target")
        return cls(tuple(targets), context, _source(source), params, tuple(map(_pairs, results)))


def _uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


def _pairs(value: Any) -> dict[int, Any]:
    ok = isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and _uint(p[0]) for p in value
    )
    if not ok:
        raise BundleError("bpsec-block", "parameters and results are [id, value] pairs")
    return {int(p[0]): p[1] for p in value}


def _source(value: Any) -> Eid:
    try:
        return eid_from_cbor(value, "the security source")
    except BundleError as exc:
        raise BundleError("bpsec-block", exc.detail) from None


# ---------------------------------------------------------------- canonical forms
def _header(kind: int, number: int, flags: int) -> bytes:
    return cbor2.dumps(kind) + cbor2.dumps(number) + cbor2.dumps(flags)


def aad(scope: int, primary: bytes, target: tuple[int, int, int], security: Block) -> bytes:
    """Scope flags, then what they name: the primary block, the target's header, the
    security block's header (RFC 9173 sections 3.7 steps 1-4 and 4.7.2)."""
    out = cbor2.dumps(scope & 0x7)
    if scope & SCOPE_PRIMARY and target[1] != PRIMARY:
        out += primary
    if scope & SCOPE_TARGET and target[1] != PRIMARY:
        out += _header(*target)
    if scope & SCOPE_SECURITY:
        out += _header(security.kind, security.number, security.flags)
    return out


def ippt(
    scope: int, primary: bytes, target: tuple[int, int, int], data: bytes, bib: Block
) -> bytes:
    """The integrity-protected plaintext: the AAD, then the target's canonical form."""
    tail = primary if target[1] == PRIMARY else cbor2.dumps(bytes(data))
    return aad(scope, primary, target, bib) + tail


def hmac_sha2(key: bytes, variant: int, message: bytes) -> bytes:
    return hmac.new(key, message, SHA_VARIANTS[variant]).digest()


# ---------------------------------------------------------------- keys and policy
@dataclass(frozen=True, slots=True)
class NodeKeys:
    """One satellite's BPSec keys, derived from its secret."""

    hmac_key: bytes  # HMAC-SHA-384: as long as its output (RFC 9173 section 3.5)
    aes_key: bytes  # AES-256-GCM

    @classmethod
    def derive(cls, secret: bytes) -> NodeKeys:
        if len(secret) != SECRET_BYTES:
            raise BundleError("bpsec-key", f"a BPSec secret is {SECRET_BYTES} bytes")
        return cls(_hkdf(secret, b"starcompute bpsec bib", 48), _hkdf(secret, b"bpsec bcb", 32))


def _hkdf(secret: bytes, label: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt=None, info=label).derive(secret)


def new_secret() -> bytes:
    return os.urandom(SECRET_BYTES)


class Bpsec:
    """The security policy of one node: ``keys`` maps ipn node numbers to their keys (a
    satellite holds its own; mission control's stations hold every satellite's)."""

    def __init__(self, keys: Mapping[int, bytes]) -> None:
        self.keys = {node: NodeKeys.derive(secret) for node, secret in keys.items()}

    def _keys(self, bundle: Bundle) -> NodeKeys:
        src, dst = bundle.source.node, bundle.destination.node
        node = dst if src == MISSION_CONTROL else src
        keys = self.keys.get(node)
        if keys is None:
            raise BundleError("bpsec-no-key", f"no BPSec key for ipn node {node}")
        return keys

    # ------------------------------------------------------------ security source
    def protect(self, bundle: Bundle) -> Bundle:
        """The bundle as its source sends it: BCB on the payload of a query or answer,
        BIB on the primary block and (when not encrypted) the payload."""
        keys, primary = self._keys(bundle), primary_bytes(bundle)
        source = Eid(bundle.source.node, 0)
        confidential = bundle.destination.service in CONFIDENTIAL
        bib = Block(BLOCK_BIB, BIB_NUMBER, 0, b"")
        targets = [PRIMARY_HEADER] + ([] if confidential else [PAYLOAD_HEADER])
        macs = tuple(
            {RESULT: hmac_sha2(keys.hmac_key, DEFAULT_SHA, ippt(DEFAULT_SCOPE, primary, t,
                                                                 bundle.payload, bib))}
            for t in targets
        )  # fmt: skip
        asb = Asb(tuple(t[1] for t in targets), CONTEXT_BIB_HMAC_SHA2, source, {}, macs)
        blocks = [dataclasses.replace(bib, data=asb.to_bytes())]
        payload = bundle.payload
        if confidential:
            bcb = Block(BLOCK_BCB, BCB_NUMBER, 0, b"")
            iv = os.urandom(IV_BYTES)
            sealed = AESGCM(keys.aes_key).encrypt(
                iv, bytes(payload), aad(DEFAULT_SCOPE, primary, PAYLOAD_HEADER, bcb)
            )
            payload, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
            asb = Asb((1,), CONTEXT_BCB_AES_GCM, source, {BCB_IV: iv}, ({RESULT: tag},))
            blocks.append(dataclasses.replace(bcb, data=asb.to_bytes()))
        return dataclasses.replace(bundle, payload=payload, blocks=tuple(blocks))

    # ------------------------------------------------------------ security acceptor
    def accept(self, bundle: Bundle) -> Bundle:
        """Verify and decrypt a bundle delivered here: the plaintext bundle, or a
        ``BundleError`` (``bpsec-unsigned``, ``bpsec-unencrypted``, ``bpsec-integrity``,
        ``bpsec-confidentiality``, ...) when it must be dropped."""
        keys, primary = self._keys(bundle), primary_bytes(bundle)
        bibs = [b for b in bundle.blocks if b.kind == BLOCK_BIB]
        bcbs = [b for b in bundle.blocks if b.kind == BLOCK_BCB]
        if len(bibs) != 1 or len(bcbs) > 1:
            raise BundleError("bpsec-unsigned", "a bundle carries exactly one BIB")
        confidential = bundle.destination.service in CONFIDENTIAL
        if confidential and not bcbs:
            raise BundleError("bpsec-unencrypted", "queries and answers travel encrypted")
        payload = bundle.payload
        if bcbs:
            payload = self._decrypt(keys, primary, bcbs[0], bundle)
        self._verify(keys, primary, bibs[0], bundle, covers_payload=not bcbs)
        return dataclasses.replace(bundle, payload=payload, blocks=())

    def _asb(self, block: Block, context: int, bundle: Bundle) -> Asb:
        asb = Asb.from_bytes(block.data)
        if asb.context != context:
            raise BundleError("bpsec-context", f"security context {asb.context} is not {context}")
        if asb.source.node != bundle.source.node:
            raise BundleError("bpsec-source", f"security source {asb.source} is not the bundle's")
        return asb

    def _verify(
        self, keys: NodeKeys, primary: bytes, bib: Block, bundle: Bundle, covers_payload: bool
    ) -> None:
        asb = self._asb(bib, CONTEXT_BIB_HMAC_SHA2, bundle)
        variant, scope = asb.params.get(BIB_SHA, DEFAULT_SHA), asb.params.get(BIB_SCOPE, 7)
        if variant not in SHA_VARIANTS or not _uint(scope):
            raise BundleError("bpsec-block", f"SHA variant {variant!r} or scope {scope!r}")
        wanted = {PRIMARY, 1} if covers_payload else {PRIMARY}
        if set(asb.targets) != wanted:
            raise BundleError("bpsec-unsigned", f"the BIB must cover blocks {sorted(wanted)}")
        for number, result in zip(asb.targets, asb.results, strict=True):
            target = PRIMARY_HEADER if number == PRIMARY else PAYLOAD_HEADER
            mac = hmac_sha2(keys.hmac_key, variant, ippt(scope, primary, target,
                                                          bundle.payload, bib))  # fmt: skip
            if not isinstance(result.get(RESULT), bytes) or not hmac.compare_digest(
                mac, result[RESULT]
            ):
                raise BundleError("bpsec-integrity", f"the HMAC over block {number} fails")

    def _decrypt(self, keys: NodeKeys, primary: bytes, bcb: Block, bundle: Bundle) -> bytes:
        asb = self._asb(bcb, CONTEXT_BCB_AES_GCM, bundle)
        iv, variant = asb.params.get(BCB_IV), asb.params.get(BCB_AES, DEFAULT_AES)
        scope, tag = asb.params.get(BCB_SCOPE, DEFAULT_SCOPE), asb.results[0].get(RESULT)
        if asb.targets != (1,) or variant != DEFAULT_AES or not _uint(scope):
            raise BundleError("bpsec-block", "the BCB must target the payload with A256GCM")
        if not (isinstance(iv, bytes) and 8 <= len(iv) <= 16 and isinstance(tag, bytes)):
            raise BundleError("bpsec-block", "the BCB needs an 8..16-byte IV and a tag")
        try:
            return AESGCM(keys.aes_key).decrypt(
                iv, bytes(bundle.payload) + tag, aad(scope, primary, PAYLOAD_HEADER, bcb)
            )
        except (InvalidTag, ValueError):
            raise BundleError("bpsec-confidentiality", "the payload's tag fails") from None
