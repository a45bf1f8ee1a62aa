"""A satellite's own state at orbit time: battery, radiator and radiation upsets.

The node propagates its own orbit (SGP4, as its GNSS receiver would know it) and steps
the same models as the planner's power run (``spacecraft``): solar input in sunlight,
a bus that always draws, the accelerator at idle plus the load of the jobs it *actually*
ran (the busy fraction of each 10 s step), the battery between its floor and full, the
lumped radiator node. Upsets are drawn (Poisson) at the radiation model's rate for its
own position over the bits of the weights it holds; they are counted, and with SEU
protection on (``security.seu``) they strike the loaded weights for real.
"""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from starcompute.orbits.constellation import Constellation
from starcompute.orbits.frames import ecef_to_geodetic
from starcompute.orbits.propagate import Ephemeris, propagate
from starcompute.spacecraft.hardware import HardwareProfile
from starcompute.spacecraft.power import solar_input_w
from starcompute.spacecraft.radiation import seu_rate_per_bit_per_day
from starcompute.spacecraft.simulate import SatState, environment, new_state, step_group
from starcompute.spacecraft.thermal import KELVIN, environment_w
from starcompute.times import time_grid

STEP_S = 10.0
SECONDS_PER_DAY = 86400.0


@dataclass(slots=True)
class Onboard:
    """One satellite's battery, temperature and upsets, advanced on its own clock."""

    hardware: HardwareProfile
    eph: Ephemeris  # its own orbit, 60 s grid, over the plan
    weight_bits: int = 0
    seed: int = 0
    t_s: float = 0.0  # plan seconds integrated to
    upsets: int = 0
    state: SatState = field(init=False)
    _busy: deque[tuple[float, float]] = field(default_factory=deque)  # (start, end) plan s
    _rng: np.random.Generator = field(init=False)
    sunlit: float = 1.0
    seu_rate: float = 0.0  # per bit per day, at the last step

    def __post_init__(self) -> None:
        self.state = new_state(self.hardware, 1, 1.0, 20.0)
        self._rng = np.random.default_rng(self.seed)

    @classmethod
    def of(
        cls,
        satellite: Constellation,
        hardware: HardwareProfile,
        start: np.datetime64,
        horizon_s: float,
        weight_bits: int = 0,
    ) -> Onboard:
        """``satellite``: a one-satellite constellation (its elements)."""
        eph = propagate(satellite, time_grid(start, np.ceil(horizon_s / 60.0) * 60.0, 60.0))
        return cls(hardware, eph, weight_bits, seed=zlib.crc32(satellite.names[0].encode()))

    def busy(self, start_s: float, end_s: float) -> None:
        """The accelerator ran jobs over [start_s, end_s] (plan seconds)."""
        if end_s > start_s:
            self._busy.append((start_s, end_s))

    def advance(self, to_s: float) -> int:
        """Integrate up to ``to_s``; returns the upsets drawn meanwhile."""
        to_s = min(to_s, float(self.eph.t_s[-1]))
        new_upsets = 0
        while self.t_s + STEP_S <= to_s:
            new_upsets += self._step(self.t_s, STEP_S)
            self.t_s += STEP_S
        return new_upsets

    def _utilisation(self, a: float, b: float) -> float:
        while self._busy and self._busy[0][1] <= a:
            self._busy.popleft()
        covered = sum(max(0.0, min(b, e) - max(a, s)) for s, e in self._busy)
        return min(covered / (b - a), 1.0)

    def _step(self, t_s: float, dt_s: float) -> int:
        env = environment(self.eph, np.array([t_s]))
        hw = self.hardware
        solar = solar_input_w(hw.solar, env.sun_teme_km[None], env.r_teme_km, env.sunlit)
        heat = environment_w(hw.thermal, env.solar_flux_w_m2[None], env.sunlit, env.cos_sun_zenith)
        use = np.array([self._utilisation(t_s, t_s + dt_s)])
        step_group(hw, self.state, solar[:, 0], heat[:, 0], use, dt_s)
        self.sunlit = float(env.sunlit[0, 0])
        lat, lon, alt = ecef_to_geodetic(self.eph.r_ecef_at(np.array([0]), np.array([t_s])))
        self.seu_rate = float(seu_rate_per_bit_per_day(lat, lon, alt)[0])
        mean = self.seu_rate * self.weight_bits * dt_s / SECONDS_PER_DAY
        n = int(self._rng.poisson(mean)) if mean > 0 else 0
        self.upsets += n
        return n

    def to_dict(self) -> dict[str, float]:
        """What a restart must not lose (kept in the node's journal)."""
        st = self.state
        return {
            "t_s": self.t_s,
            "energy_wh": float(st.energy_wh[0]),
            "temp_k": float(st.temp_k[0]),
            "accelerator_wh": float(st.accelerator_wh[0]),
            "upsets": self.upsets,
        }

    def restore(self, doc: dict[str, float]) -> None:
        st = self.state
        self.t_s = float(doc["t_s"])
        st.energy_wh[0], st.temp_k[0] = float(doc["energy_wh"]), float(doc["temp_k"])
        st.accelerator_wh[0] = float(doc["accelerator_wh"])
        self.upsets = int(doc["upsets"])

    def report(self) -> dict[str, float]:
        b = self.hardware.battery
        energy = float(self.state.energy_wh[0])
        return {
            "battery_wh": round(energy, 3),
            "battery_soc": round(energy / b.capacity_wh, 4),
            "battery_floor_wh": round(b.floor_wh, 3),
            "temperature_c": round(float(self.state.temp_k[0]) - KELVIN, 2),
            "max_temperature_c": self.hardware.thermal.max_temp_c,
            "sunlit": round(self.sunlit, 3),
            "accelerator_wh": round(float(self.state.accelerator_wh[0]), 4),
            "upsets": self.upsets,
            "seu_rate_per_bit_per_day": self.seu_rate,
        }
