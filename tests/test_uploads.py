"""Model uploads on board (node/uploads.py): parts in any order or twice, a manifest
whose digest the telecommand carries, nothing installed until every file hashes right,
hostile parts and commands refused with a reason."""

from __future__ import annotations

import random
from pathlib import Path

import cbor2
import pytest

from starcompute.errors import InputError, UploadError
from starcompute.node.uploads import (
    PART_BYTES,
    Uploads,
    check_command,
    digest_of,
    manifest,
    parts,
)


def _checkpoint(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(random.Random(1).randbytes(2 * PART_BYTES + 77))
    (folder / "empty.txt").write_bytes(b"")
    return folder


def test_parts_in_any_order_and_twice_install_the_same_files(tmp_path: Path) -> None:
    src = _checkpoint(tmp_path / "ckpt")
    files = manifest(src)
    digest = digest_of(files)
    name, d, f = check_command({"name": "tiny", "digest": digest, "files": files})
    assert (name, d, f) == ("tiny", digest, files)
    payloads = list(parts(src, files))
    assert len(payloads) == 1 + 3 + 1  # config, 3 parts of the weights, the empty file
    node = tmp_path / "node"
    (node / "model").mkdir(parents=True)
    (node / "model" / "config.json").write_text("old")
    up = Uploads(node)
    shuffled = payloads + payloads[:2]
    random.Random(0).shuffle(shuffled)
    seen: set[bytes] = set()
    for p in shuffled:
        assert up.receive(p) == digest
        seen.add(p)
        assert up.complete(digest, files) == (seen == set(payloads))  # only once all came
    up.install(digest, node / "model")
    for fname in files:
        assert (node / "model" / fname).read_bytes() == (src / fname).read_bytes()
    assert (node / "model.previous" / "config.json").read_text() == "old"


def test_a_corrupted_part_never_completes(tmp_path: Path) -> None:
    src = _checkpoint(tmp_path / "ckpt")
    files = manifest(src)
    digest = digest_of(files)
    up = Uploads(tmp_path / "node")
    for p in parts(src, files):
        doc = cbor2.loads(p)
        if doc["file"] == "model.safetensors" and doc["offset"] == PART_BYTES:
            doc["data"] = bytes(len(doc["data"]))  # zeroed on the way
        up.receive(cbor2.dumps(doc))
    assert not up.complete(digest, files)


@pytest.mark.parametrize(
    "part",
    [
        b"\xff",
        cbor2.dumps({"digest": "ab" * 32, "file": "../escape", "offset": 0, "data": b"x"}),
        cbor2.dumps({"digest": "ab" * 32, "file": ".hidden", "offset": 0, "data": b"x"}),
        cbor2.dumps({"digest": "../" * 3, "file": "a", "offset": 0, "data": b"x"}),
        cbor2.dumps({"digest": "ab" * 32, "file": "a", "offset": -1, "data": b"x"}),
        cbor2.dumps({"digest": "ab" * 32, "file": "a", "offset": 0, "data": "text"}),
        cbor2.dumps([1, 2, 3]),
    ],
)
def test_hostile_parts_are_refused(tmp_path: Path, part: bytes) -> None:
    with pytest.raises(UploadError) as err:
        Uploads(tmp_path).receive(part)
    assert err.value.reason == "bad-part"
    assert not any(tmp_path.rglob("escape"))


def test_commands_must_name_their_manifest(tmp_path: Path) -> None:
    files = manifest(_checkpoint(tmp_path / "ckpt"))
    good = {"name": "tiny", "digest": digest_of(files), "files": files}
    for bad in (
        {**good, "digest": "00" * 32},  # not the manifest's
        {**good, "name": "../up"},
        {**good, "files": {"../x": files["config.json"]}},
        {**good, "files": {}},
        {k: v for k, v in good.items() if k != "files"},
    ):
        with pytest.raises(UploadError):
            check_command(bad)
    with pytest.raises(InputError, match=r"config\.json is missing"):
        manifest(tmp_path)
