"""Hardware profiles of computing satellites, as data (``data/hardware/*.toml``).

Each profile groups what the power, thermal and compute models need: peak compute by
precision, memory, accelerator and bus power, solar array, battery and radiator. Every
number in the preset files carries its source or the word "assumed".
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from starcompute.data import preset_names, read_preset_or_file
from starcompute.errors import InputError

POINTINGS = ("sun-tracking", "fixed")


def _check(where: str, name: str, value: float, ok: bool, allowed: str) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and ok):
        raise InputError(f"{where}: {name} = {value!r} is out of range: {allowed}")


def _fraction(where: str, name: str, value: float) -> None:
    _check(where, name, value, 0.0 < value <= 1.0, "must be in (0, 1]")


def _non_negative(where: str, name: str, value: float) -> None:
    _check(where, name, value, value >= 0.0, "must be >= 0")


@dataclass(frozen=True, slots=True)
class Compute:
    peak_ops_per_s: dict[str, float]
    memory_gb: float
    memory_bandwidth_gb_s: float
    storage_tb: float
    prefill_efficiency: float = 0.5  # fraction of peak ops/s reached in prefill
    decode_efficiency: float = 0.6  # fraction of memory bandwidth reached in decode
    step_overhead_s: float = 0.0  # fixed cost per forward pass (launches, framework)

    def validate(self, where: str) -> None:
        for name in ("prefill_efficiency", "decode_efficiency"):
            _fraction(where, name, getattr(self, name))
        _non_negative(where, "step_overhead_s", self.step_overhead_s)
        if not self.peak_ops_per_s:
            raise InputError(f"{where}: peak_ops_per_s needs at least one precision")
        for precision, ops in self.peak_ops_per_s.items():
            _check(where, f"peak_ops_per_s.{precision}", ops, ops > 0, "must be > 0")
        for name in ("memory_gb", "memory_bandwidth_gb_s", "storage_tb"):
            _non_negative(where, name, getattr(self, name))


@dataclass(frozen=True, slots=True)
class Power:
    accelerator_idle_w: float
    accelerator_peak_w: float
    bus_w: float

    def validate(self, where: str) -> None:
        for f in fields(self):
            _non_negative(where, f.name, getattr(self, f.name))
        if self.accelerator_peak_w < self.accelerator_idle_w:
            raise InputError(f"{where}: accelerator_peak_w must be >= accelerator_idle_w")


@dataclass(frozen=True, slots=True)
class Solar:
    array_area_m2: float
    cell_efficiency: float
    degradation_per_year: float
    years_in_orbit: float
    losses: float
    pointing: str = "sun-tracking"

    def validate(self, where: str) -> None:
        _non_negative(where, "array_area_m2", self.array_area_m2)
        _fraction(where, "cell_efficiency", self.cell_efficiency)
        _check(
            where,
            "degradation_per_year",
            self.degradation_per_year,
            0.0 <= self.degradation_per_year < 1.0,
            "must be in [0, 1)",
        )
        _non_negative(where, "years_in_orbit", self.years_in_orbit)
        _check(where, "losses", self.losses, 0.0 <= self.losses < 1.0, "must be in [0, 1)")
        if self.pointing not in POINTINGS:
            raise InputError(f"{where}: pointing must be one of {POINTINGS}, got {self.pointing!r}")

    @property
    def efficiency(self) -> float:
        """Cell efficiency after degradation and array losses."""
        aged = float((1.0 - self.degradation_per_year) ** self.years_in_orbit)
        return self.cell_efficiency * aged * (1.0 - self.losses)


@dataclass(frozen=True, slots=True)
class Battery:
    capacity_wh: float
    depth_of_discharge: float
    charge_efficiency: float
    discharge_efficiency: float

    def validate(self, where: str) -> None:
        _check(where, "capacity_wh", self.capacity_wh, self.capacity_wh > 0, "must be > 0")
        for name in ("depth_of_discharge", "charge_efficiency", "discharge_efficiency"):
            _fraction(where, name, getattr(self, name))

    @property
    def floor_wh(self) -> float:
        return self.capacity_wh * (1.0 - self.depth_of_discharge)


@dataclass(frozen=True, slots=True)
class Thermal:
    radiator_area_m2: float
    emissivity: float
    absorptivity: float
    heat_capacity_j_k: float
    earth_view_factor: float
    sun_view_factor: float
    min_temp_c: float
    max_temp_c: float

    def validate(self, where: str) -> None:
        _check(
            where,
            "radiator_area_m2",
            self.radiator_area_m2,
            self.radiator_area_m2 > 0,
            "must be > 0",
        )
        for name in ("emissivity", "absorptivity"):
            _fraction(where, name, getattr(self, name))
        _check(
            where,
            "heat_capacity_j_k",
            self.heat_capacity_j_k,
            self.heat_capacity_j_k > 0,
            "must be > 0",
        )
        for name in ("earth_view_factor", "sun_view_factor"):
            value = getattr(self, name)
            _check(where, name, value, 0.0 <= value <= 1.0, "must be in [0, 1]")
        _check(
            where,
            "max_temp_c",
            self.max_temp_c,
            self.max_temp_c > self.min_temp_c,
            "must be above min_temp_c",
        )


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    name: str
    description: str
    compute: Compute
    power: Power
    solar: Solar
    battery: Battery
    thermal: Thermal

    def __post_init__(self) -> None:
        where = f"hardware profile {self.name!r}"
        for part in (self.compute, self.power, self.solar, self.battery, self.thermal):
            part.validate(where)


_SECTIONS: dict[str, type[Any]] = {
    "compute": Compute,
    "power": Power,
    "solar": Solar,
    "battery": Battery,
    "thermal": Thermal,
}


def _section(doc: dict[str, Any], key: str, where: str) -> Any:
    cls = _SECTIONS[key]
    table = doc.get(key)
    if not isinstance(table, dict):
        raise InputError(f"{where}: missing [{key}] table")
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown} in [{key}]; allowed: {allowed}")
    missing = [f.name for f in fields(cls) if f.name not in table and f.default is MISSING]
    if missing:
        raise InputError(f"{where}: [{key}] lacks {missing}")
    return cls(**table)


def profile_from_toml(text: str, where: str) -> HardwareProfile:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: invalid TOML ({exc})") from None
    return HardwareProfile(
        name=str(doc.get("name", where)),
        description=str(doc.get("description", "")),
        **{key: _section(doc, key, where) for key in _SECTIONS},
    )


def hardware_presets() -> list[str]:
    return preset_names("hardware", ".toml")


def load_hardware(spec: str | Path) -> HardwareProfile:
    """A preset name (see :func:`hardware_presets`) or a profile TOML file."""
    text = read_preset_or_file("hardware", ".toml", str(spec), "hardware profile")
    return profile_from_toml(text, str(spec))
