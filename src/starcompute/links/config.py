"""Nominal link parameters of the contact plan; defaults from ``data/links.toml``."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from typing import Any

from starcompute.data import data_dir
from starcompute.errors import InputError


def _defaults() -> dict[str, Any]:
    return tomllib.loads(data_dir(".").joinpath("links.toml").read_text(encoding="utf-8"))


@dataclass(frozen=True, slots=True)
class IslConfig:
    max_range_km: float
    acquisition_s: float
    atmosphere_margin_km: float
    rate_bps: float
    topology: str = "+grid"
    knee_km: float = math.inf  # full rate up to here, then ~ (knee / range)^2; inf: no fall-off
    terminals: int = 4  # laser terminals per satellite: 4 the +grid, 2-3 the in-plane ring

    def __post_init__(self) -> None:
        checks = {
            "max_range_km": self.max_range_km > 0,
            "acquisition_s": self.acquisition_s >= 0,
            "atmosphere_margin_km": self.atmosphere_margin_km >= 0,
            "rate_bps": self.rate_bps > 0,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or not math.isfinite(value):
                raise InputError(f"ISL {name} must be a positive finite number, got {value}")
        if math.isnan(self.knee_km) or self.knee_km <= 0:
            raise InputError(
                f"ISL knee_km must be a positive number (inf: no fall-off), got {self.knee_km}"
            )
        if isinstance(self.terminals, bool) or not isinstance(self.terminals, int):
            raise InputError(f"ISL terminals must be a whole number, got {self.terminals!r}")
        if self.terminals < 0:
            raise InputError(f"ISL terminals must be >= 0, got {self.terminals}")
        if self.topology != "+grid":
            raise InputError(f"unknown ISL topology {self.topology!r}: choose +grid")

    @classmethod
    def default(cls, **overrides: Any) -> IslConfig:
        isl = _defaults()["isl"]
        values: dict[str, Any] = {
            k: float(isl[k])
            for k in (
                "max_range_km",
                "acquisition_s",
                "atmosphere_margin_km",
                "rate_bps",
                "knee_km",
            )
        }
        values["terminals"] = int(isl.get("terminals", 4))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def default_ground_rate_bps() -> float:
    """Nominal downlink rate (satellite to station) without an RF budget."""
    return float(_defaults()["ground"]["rate_bps"])


def default_uplink_rate_bps() -> float:
    """Nominal uplink rate (station to satellite) without an RF budget."""
    return float(_defaults()["ground"]["uplink_rate_bps"])
