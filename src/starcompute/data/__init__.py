"""Presets as data: constellations/*.toml, stations/*.csv (each number with its source)."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable


def data_dir(kind: str) -> Traversable:
    """The packaged folder of presets of one kind (``constellations``, ``stations``)."""
    return resources.files("starcompute.data").joinpath(kind)


def preset_names(kind: str, suffix: str) -> list[str]:
    return sorted(
        entry.name[: -len(suffix)]
        for entry in data_dir(kind).iterdir()
        if entry.name.endswith(suffix) and not entry.name.startswith("_")
    )
