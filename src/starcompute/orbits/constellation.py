"""A constellation: SGP4 records plus who each satellite is (shell, plane, slot, role, hardware).

Every satellite, preset or imported, propagates through the same ``SatrecArray``.
Load one with :func:`load_constellation`, from a preset name, a constellation TOML,
a TLE file (2- or 3-line) or an OMM file (CelesTrak JSON or CSV).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sgp4.api import Satrec, SatrecArray

from starcompute.data import data_dir, preset_names
from starcompute.errors import InputError, UnknownPresetError
from starcompute.orbits.constants import MU_WGS72_KM3_S2, RADIUS_WGS72_KM
from starcompute.orbits.omm import parse_omm_csv, parse_omm_json
from starcompute.orbits.tle import format_tle, parse_tle
from starcompute.orbits.walker import (
    ROLES,
    WalkerShell,
    raan_for_ltan_deg,
    sun_synchronous_inclination_deg,
)
from starcompute.times import parse_utc

IntArray = npt.NDArray[np.int64]
DEFAULT_ROLE = "inference"
DEFAULT_HARDWARE = "three-body-sat"


@dataclass(slots=True)
class Constellation:
    """Satellites in a fixed order; index ``i`` is the same satellite in every array."""

    name: str
    satrecs: list[Satrec]
    names: list[str]
    shells: list[str]
    roles: list[str]
    hardware: list[str]
    plane: IntArray  # -1 where unknown (imported element sets)
    slot: IntArray
    walker: dict[str, WalkerShell] = field(default_factory=dict)
    _array: SatrecArray | None = None

    def __post_init__(self) -> None:
        n = len(self.satrecs)
        lengths = {len(self.names), len(self.shells), len(self.roles), len(self.hardware)}
        if lengths != {n} or self.plane.shape != (n,) or self.slot.shape != (n,):
            raise InputError(f"constellation {self.name!r}: per-satellite lists differ in length")
        if n == 0:
            raise InputError(f"constellation {self.name!r} has no satellites")
        if len(set(self.names)) != n:
            dup = sorted({x for x in self.names if self.names.count(x) > 1})[:5]
            raise InputError(f"constellation {self.name!r}: duplicate satellite names {dup}")

    def __len__(self) -> int:
        return len(self.satrecs)

    @property
    def array(self) -> SatrecArray:
        if self._array is None:
            self._array = SatrecArray(self.satrecs)
        return self._array

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise InputError(f"no satellite named {name!r} in {self.name}") from None

    def select(self, indices: Sequence[int] | IntArray, name: str | None = None) -> Constellation:
        """The satellites at ``indices``, in that order (Walker specs of their shells kept)."""
        idx = [int(i) for i in indices]
        shells = [self.shells[i] for i in idx]
        return Constellation(
            name=name or self.name,
            satrecs=[self.satrecs[i] for i in idx],
            names=[self.names[i] for i in idx],
            shells=shells,
            roles=[self.roles[i] for i in idx],
            hardware=[self.hardware[i] for i in idx],
            plane=self.plane[idx],
            slot=self.slot[idx],
            walker={k: v for k, v in self.walker.items() if k in set(shells)},
        )

    def mean_altitude_km(self) -> npt.NDArray[np.float64]:
        """SGP4 mean semi-major axis minus the equatorial radius, per satellite."""
        return np.array([s.a * RADIUS_WGS72_KM - RADIUS_WGS72_KM for s in self.satrecs])

    def inclination_deg(self) -> npt.NDArray[np.float64]:
        return np.degrees([s.inclo for s in self.satrecs])

    def period_min(self) -> npt.NDArray[np.float64]:
        """Keplerian period of the mean semi-major axis, minutes."""
        a_km = np.array([s.a * RADIUS_WGS72_KM for s in self.satrecs])
        return np.asarray(2.0 * math.pi * np.sqrt(a_km**3 / MU_WGS72_KM3_S2) / 60.0)

    def to_tle(self) -> str:
        return "".join(format_tle(n, s) for n, s in zip(self.names, self.satrecs, strict=True))

    def summary(self) -> dict[str, Any]:
        """Counts per shell and role, altitudes, inclinations, periods (for ``show``)."""
        alt, inc, per = self.mean_altitude_km(), self.inclination_deg(), self.period_min()
        shells = []
        for shell in dict.fromkeys(self.shells):
            idx = np.array([i for i, s in enumerate(self.shells) if s == shell])
            roles = {r: int(sum(self.roles[i] == r for i in idx)) for r in ROLES}
            spec = self.walker.get(shell)
            shells.append(
                {
                    "shell": shell,
                    "satellites": len(idx),
                    "roles": {k: v for k, v in roles.items() if v},
                    "hardware": sorted({self.hardware[i] for i in idx}),
                    "pattern": f"walker-{spec.pattern}" if spec else "imported",
                    "planes": spec.planes if spec else None,
                    "sats_per_plane": spec.sats_per_plane if spec else None,
                    "phasing": spec.phasing if spec else None,
                    "altitude_km": _span(alt[idx]),
                    "inclination_deg": _span(inc[idx]),
                    "period_min": _span(per[idx]),
                }
            )
        roles = {r: self.roles.count(r) for r in ROLES if self.roles.count(r)}
        return {"name": self.name, "satellites": len(self), "roles": roles, "shells": shells}


def _span(values: npt.NDArray[np.float64]) -> dict[str, float]:
    return {"min": round(float(values.min()), 3), "max": round(float(values.max()), 3)}


def _from_shells(name: str, shells: list[WalkerShell], epoch: np.datetime64) -> Constellation:
    rows = [(shell, *sat) for shell in shells for sat in shell.build(epoch)]
    return Constellation(
        name=name,
        satrecs=[r[4] for r in rows],
        names=[r[1] for r in rows],
        shells=[r[0].name for r in rows],
        roles=[r[0].role for r in rows],
        hardware=[r[0].hardware for r in rows],
        plane=np.array([r[2] for r in rows], dtype=np.int64),
        slot=np.array([r[3] for r in rows], dtype=np.int64),
        walker={s.name: s for s in shells},
    )


def from_element_sets(
    name: str,
    records: list[tuple[str, Satrec]],
    role: str = DEFAULT_ROLE,
    hardware: str = DEFAULT_HARDWARE,
    shell: str = "imported",
) -> Constellation:
    """A constellation from (name, Satrec) pairs; repeated names get a ``#2`` suffix."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for sat_name, _ in records:
        seen[sat_name] = seen.get(sat_name, 0) + 1
        names.append(sat_name if seen[sat_name] == 1 else f"{sat_name}#{seen[sat_name]}")
    n = len(records)
    return Constellation(
        name=name,
        satrecs=[s for _, s in records],
        names=names,
        shells=[shell] * n,
        roles=[role] * n,
        hardware=[hardware] * n,
        plane=np.full(n, -1, dtype=np.int64),
        slot=np.full(n, -1, dtype=np.int64),
    )


def read_element_file(path: Path) -> list[tuple[str, Satrec]]:
    """TLE (any extension but .json/.csv) or OMM JSON/CSV, decided by the content."""
    text = path.read_text(encoding="utf-8", errors="replace")
    head = text.lstrip()[:1]
    if head in ("[", "{") or path.suffix.lower() == ".json":
        return parse_omm_json(text, str(path))
    if text.lstrip().upper().startswith(("OBJECT_NAME", "OBJECT_ID", "CCSDS_OMM_VERS")) or (
        path.suffix.lower() == ".csv"
    ):
        return parse_omm_csv(text, str(path))
    return [(r.name, r.satrec()) for r in parse_tle(text, str(path))]


def _shell_from_table(table: dict[str, Any], epoch: np.datetime64, where: str) -> WalkerShell:
    spec = {k: v for k, v in table.items() if k not in ("sun_synchronous", "ltan_h")}
    altitude = spec.get("altitude_km")
    if not isinstance(altitude, int | float):
        raise InputError(f"{where}: altitude_km (a number) is required")
    if table.get("sun_synchronous"):
        if "inclination_deg" in spec:
            raise InputError(f"{where}: give either inclination_deg or sun_synchronous, not both")
        spec["inclination_deg"] = sun_synchronous_inclination_deg(float(altitude))
    if "ltan_h" in table:
        spec["raan0_deg"] = raan_for_ltan_deg(float(table["ltan_h"]), epoch)
    try:
        return WalkerShell(**spec)
    except TypeError as exc:
        allowed = ", ".join(WalkerShell.__dataclass_fields__)
        raise InputError(
            f"{where}: {exc}; allowed keys: {allowed}, sun_synchronous, ltan_h"
        ) from None


def constellation_from_toml(path: Path | None, text: str, default_name: str) -> Constellation:
    """A constellation file: ``epoch``, ``[[shell]]`` Walker shells and ``[[elements]]`` files."""
    where = str(path) if path else default_name
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: invalid TOML ({exc})") from None
    return constellation_from_doc(doc, path, default_name, where)


def constellation_from_doc(
    doc: dict[str, Any], path: Path | None, default_name: str, where: str
) -> Constellation:
    """A constellation from parsed TOML (element files resolve next to ``path``)."""
    name = str(doc.get("name", default_name))
    epoch = parse_utc(str(doc.get("epoch", "2026-01-01T00:00:00Z")))
    shells = [
        _shell_from_table(t, epoch, f"{where} shell {i + 1}")
        for i, t in enumerate(doc.get("shell", []))
    ]
    parts = [_from_shells(name, shells, epoch)] if shells else []
    for i, table in enumerate(doc.get("elements", [])):
        if "file" not in table:
            raise InputError(f"{where} elements {i + 1}: 'file' is required")
        file = (path.parent if path else Path.cwd()) / str(table["file"])
        parts.append(
            from_element_sets(
                name,
                read_element_file(_existing(file)),
                role=str(table.get("role", DEFAULT_ROLE)),
                hardware=str(table.get("hardware", DEFAULT_HARDWARE)),
                shell=str(table.get("shell", file.stem)),
            )
        )
    if not parts:
        raise InputError(f"{where}: no [[shell]] or [[elements]] tables")
    return merge(name, parts)


def merge(name: str, parts: list[Constellation]) -> Constellation:
    """Concatenate constellations (satellite names must stay unique)."""
    walker: dict[str, WalkerShell] = {}
    for p in parts:
        walker.update(p.walker)
    return Constellation(
        name=name,
        satrecs=[s for p in parts for s in p.satrecs],
        names=[s for p in parts for s in p.names],
        shells=[s for p in parts for s in p.shells],
        roles=[s for p in parts for s in p.roles],
        hardware=[s for p in parts for s in p.hardware],
        plane=np.concatenate([p.plane for p in parts]),
        slot=np.concatenate([p.slot for p in parts]),
        walker=walker,
    )


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    return path


def constellation_presets() -> list[str]:
    return preset_names("constellations", ".toml")


def load_constellation(spec: str | Path) -> Constellation:
    """A preset name (see :func:`constellation_presets`) or a TOML / TLE / OMM file."""
    text_spec = str(spec)
    if text_spec in constellation_presets():
        entry = data_dir("constellations").joinpath(f"{text_spec}.toml")
        return constellation_from_toml(None, entry.read_text(encoding="utf-8"), text_spec)
    path = Path(text_spec)
    if not path.exists():
        if path.suffix or "/" in text_spec:
            raise InputError(f"no such file: {text_spec}")
        raise UnknownPresetError("constellation preset", text_spec, constellation_presets())
    if path.suffix.lower() == ".toml":
        return constellation_from_toml(path, path.read_text(encoding="utf-8"), path.stem)
    return from_element_sets(path.stem, read_element_file(_existing(path)))
