"""Model uploads: weights go up in parts, and are installed only when the ``upload-model``
telecommand that names them has been verified on board.

A model is a checkpoint directory (``config.json``, tokenizer, weights). On the ground,
:func:`manifest` lists its files with their SHA-256 and size, and the upload's ``digest``
is the SHA-256 of that manifest (canonical JSON); :func:`parts` cuts the files into
payloads of at most ``PART_BYTES`` (CBOR: digest, file, offset, data), each carried by a
bundle to the node's model service. The telecommand ``upload-model`` carries ``name``,
``digest`` and the manifest, sealed under the satellite's key: parts alone install
nothing, and parts whose files do not hash to the manifest are never installed.

On board, :class:`Uploads` writes each part at its offset under
``DATA/uploads/DIGEST/`` (parts may come in any order, twice, or after the command), and
:meth:`Uploads.install` swaps the completed directory in as ``DATA/model`` (the old one
kept as ``DATA/model.previous``), so a restarted node serves it too. Every refusal is an
``UploadError`` with a reason (counted by the node).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2

from starcompute.errors import InputError, UploadError

PART_BYTES = 1 << 20  # 1 MiB of file per bundle
MAX_FILE_BYTES = 8 << 30
MAX_FILES = 64
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")  # a plain file name, no path
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest(checkpoint: Path) -> dict[str, dict[str, Any]]:
    """``{file: {"sha256", "bytes"}}`` of a checkpoint directory's files (InputError)."""
    if not (checkpoint / "config.json").is_file():
        raise InputError(f"{checkpoint} is not a model checkpoint: config.json is missing")
    files = sorted(p for p in checkpoint.iterdir() if p.is_file() and _NAME.match(p.name))
    if len(files) > MAX_FILES:
        raise InputError(f"{checkpoint}: more than {MAX_FILES} files")
    return {p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in files}


def digest_of(files: dict[str, dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def parts(checkpoint: Path, files: dict[str, dict[str, Any]]) -> Iterator[bytes]:
    """The payloads that carry ``checkpoint``'s files up, in order."""
    digest = digest_of(files)
    for name in files:
        with (checkpoint / name).open("rb") as f:
            offset = 0
            while data := f.read(PART_BYTES):
                yield cbor2.dumps({"digest": digest, "file": name, "offset": offset, "data": data})
                offset += len(data)
            if offset == 0:  # an empty file still needs to exist on board
                yield cbor2.dumps({"digest": digest, "file": name, "offset": 0, "data": b""})


def check_command(args: dict[str, Any]) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """(name, digest, files) of an ``upload-model`` command's arguments (UploadError)."""
    name, digest, files = args.get("name"), args.get("digest"), args.get("files")
    if not isinstance(name, str) or not _NAME.match(name):
        raise UploadError("bad-command", "upload-model needs a plain model name")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise UploadError("bad-command", "upload-model needs a SHA-256 digest (hex)")
    ok = (
        isinstance(files, dict)
        and 0 < len(files) <= MAX_FILES
        and all(
            isinstance(k, str) and _NAME.match(k) and isinstance(v, dict)
            and isinstance(v.get("sha256"), str) and _DIGEST.match(v["sha256"])
            and isinstance(v.get("bytes"), int) and 0 <= v["bytes"] <= MAX_FILE_BYTES
            for k, v in files.items()
        )
    )  # fmt: skip
    if not ok or not isinstance(files, dict) or "config.json" not in files:
        raise UploadError("bad-command", "upload-model's files: {name: {sha256, bytes}}")
    if digest_of(files) != digest:
        raise UploadError("bad-command", "the digest is not the manifest's")
    return name, digest, files


class Uploads:
    """The uploads a node holds, under ``DATA/uploads``."""

    def __init__(self, data: Path) -> None:
        self.data, self.folder = data, data / "uploads"

    def receive(self, payload: bytes) -> str:
        """Write one part; returns its upload's digest (UploadError if malformed)."""
        try:
            doc = cbor2.loads(payload)
            digest, name, offset, data = doc["digest"], doc["file"], doc["offset"], doc["data"]
        except Exception as exc:  # cbor2 raises several kinds on hostile input
            raise UploadError("bad-part", f"not a model part: {type(exc).__name__}") from None
        ok = (
            isinstance(digest, str) and _DIGEST.match(digest) and isinstance(name, str)
            and _NAME.match(name) and isinstance(data, bytes) and isinstance(offset, int)
            and offset >= 0 and offset + len(data) <= MAX_FILE_BYTES
        )  # fmt: skip
        if not ok:
            raise UploadError("bad-part", "a part needs digest, file, offset and data")
        folder = self.folder / digest
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        with path.open("r+b" if path.exists() else "wb") as f:
            f.seek(offset)
            f.write(data)
        return str(digest)

    def complete(self, digest: str, files: dict[str, dict[str, Any]]) -> bool:
        """Whether every file of the manifest is here with its size and SHA-256."""
        folder = self.folder / digest
        for name, meta in files.items():
            path = folder / name
            if not path.is_file() or path.stat().st_size != meta["bytes"]:
                return False
        return all(_sha256(folder / n) == m["sha256"] for n, m in files.items())

    def install(self, digest: str, model: Path) -> None:
        """Make the completed upload the node's ``model`` directory (the old one kept
        beside it as ``model.previous``)."""
        previous = model.with_name(model.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        if model.exists():
            model.rename(previous)
        (self.folder / digest).rename(model)
