"""The small TOML files the testbed and the nodes keep: read with tomllib, written here
(strings, booleans, integers, finite floats, lists of those; one level of tables).
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

from starcompute.errors import InputError


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise InputError(f"TOML cannot hold {v}")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is a JSON string
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise InputError(f"cannot write {type(v).__name__} to TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else json.dumps(k)


def dumps(doc: dict[str, Any], comment: str = "") -> str:
    lines = [f"# {line}" for line in comment.splitlines()]
    tables = {k: v for k, v in doc.items() if isinstance(v, dict)}
    lines += [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if k not in tables]
    for name, table in tables.items():
        lines += ["", f"[{_key(name)}]"]
        lines += [f"{_key(k)} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def read(path: Path, missing: str) -> dict[str, Any]:
    """A TOML file's table (InputError ``missing`` if there is no file, or naming the
    file and what is wrong with it)."""
    if not path.is_file():
        raise InputError(missing)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: {exc}") from None
