"""Presets as data: constellations/*.toml, stations/*.csv (each number with its source)."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable


def data_dir(kind: str) -> Traversable:
    """The packaged folder of presets of one kind (``constellations``, ``stations``)."""
    return resources.files("starcompute.data").joinpath(kind)


def read_preset_or_file(kind: str, suffix: str, spec: str, label: str) -> str:
    """The text of preset ``spec`` of ``kind`` or of the file at path ``spec``."""
    from pathlib import Path

    from starcompute.errors import InputError, UnknownPresetError

    if spec in preset_names(kind, suffix):
        return data_dir(kind).joinpath(f"{spec}{suffix}").read_text(encoding="utf-8")
    path = Path(spec)
    if path.is_file():
        return path.read_text(encoding="utf-8")
    if path.suffix or "/" in spec:
        raise InputError(f"no such file: {spec}")
    raise UnknownPresetError(label, spec, preset_names(kind, suffix))


def preset_names(kind: str, suffix: str) -> list[str]:
    return sorted(
        entry.name[: -len(suffix)]
        for entry in data_dir(kind).iterdir()
        if entry.name.endswith(suffix) and not entry.name.startswith("_")
    )
