"""Satellite health as admission control sees it: battery energy, temperature and sunlight
of every satellite on a 60 s grid, from the power model at a background load, and the
planned load fed back into the battery.

The planned load (``draw``): every batch a planner books runs the accelerator at full
power where the background run assumed ``background_load``; the extra energy is taken
from the battery from the batch's end on, until the background run's battery is full
again (from then on the array's surplus, curtailed in the background run, has made it
good). An approximation, stated: the battery is not re-integrated step by step, the
radiator's temperature is not raised by the batches (admission reads the background
run's), and a batch in sunlight with the battery full costs nothing.

Admission (every policy): a satellite serves only if its battery can pay for the
inference above its depth-of-discharge floor (or the Sun pays) and its radiator is at
least ``THERMAL_MARGIN_K`` below its maximum temperature.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from starcompute.orbits.constellation import Constellation
from starcompute.spacecraft.hardware import load_hardware
from starcompute.spacecraft.simulate import simulate_power

HEALTH_STEP_S = 60.0
THERMAL_MARGIN_K = 5.0  # admit only below the maximum temperature minus this
SPARE_CHARGE = 0.2  # energy-aware: keep this fraction of capacity above the floor
profile = functools.lru_cache(maxsize=64)(load_hardware)  # one parse per profile


@dataclass(slots=True)
class Health:
    """State of charge (Wh), temperature (degC) and sunlit fraction of every satellite on
    a grid at background load, from the power model."""

    energy_wh: np.ndarray  # (N, T)
    temp_c: np.ndarray  # (N, T)
    sunlit: np.ndarray  # (N, T) fraction of the Sun's disc seen
    step_s: float
    hardware: list[str]
    background_load: float = 0.1  # the utilisation the power run assumed
    _need_w: list[float] = field(init=False)  # per satellite: accelerator peak + bus
    _extra_w: list[float] = field(init=False)  # a batch's power above the background run's
    _next_full: np.ndarray = field(init=False)  # (N, T): first step >= k at full charge
    _floor_wh: list[float] = field(init=False)
    _capacity_wh: list[float] = field(init=False)
    _max_temp_c: list[float] = field(init=False)
    _last: int = field(init=False)

    def __post_init__(self) -> None:
        hw = [profile(h) for h in self.hardware]
        self._need_w = [p.power.accelerator_peak_w + p.power.bus_w for p in hw]
        self._extra_w = [
            (1.0 - self.background_load) * (p.power.accelerator_peak_w - p.power.accelerator_idle_w)
            for p in hw
        ]
        self._floor_wh = [p.battery.floor_wh for p in hw]
        self._capacity_wh = [p.battery.capacity_wh for p in hw]
        self._max_temp_c = [p.thermal.max_temp_c - THERMAL_MARGIN_K for p in hw]
        self._last = int(self.energy_wh.shape[1]) - 1
        cap = np.array([p.battery.capacity_wh for p in hw])[:, None]
        full = self.energy_wh >= cap * (1.0 - 1e-6)
        n_t = full.shape[1]
        idx = np.where(full, np.arange(n_t)[None, :], n_t)
        self._next_full = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]

    @classmethod
    def simulate(
        cls,
        const: Constellation,
        start: np.datetime64,
        horizon_s: float,
        background_load: float = 0.1,
    ) -> Health:
        chunks: list[dict[str, np.ndarray]] = []
        simulate_power(
            const,
            start,
            horizon_s,
            step_s=HEALTH_STEP_S,
            utilisation=background_load,
            sink=lambda t, s, x: chunks.append(x),
            with_radiation=False,
        )

        def series(key: str) -> np.ndarray:
            return np.concatenate([c[key] for c in chunks], axis=1)

        capacity = np.array([profile(h).battery.capacity_wh for h in const.hardware])
        return cls(
            series("soc") * capacity[:, None],
            series("temperature_c"),
            series("sunlit_fraction"),
            HEALTH_STEP_S,
            list(const.hardware),
            background_load,
        )

    def draw(self, sat: int, start_s: float, duration_s: float) -> None:
        """Feed a planned batch into the battery (see the module's note)."""
        k_end = min(max(int((start_s + duration_s) // self.step_s) + 1, 0), self._last + 1)
        if k_end > self._last:
            return
        k = self._k(start_s)
        if self.sunlit[sat, k] > 0.5 and self._next_full[sat, k] == k:
            return  # the array pays: the background run was curtailing its surplus
        until = int(self._next_full[sat, k_end])
        self.energy_wh[sat, k_end:until] -= self._extra_w[sat] * duration_s / 3600.0

    def _k(self, t_s: float) -> int:
        return min(max(int(t_s // self.step_s), 0), self._last)

    def at(self, sat: int, t_s: float) -> tuple[float, float]:
        k = self._k(t_s)
        return float(self.energy_wh[sat, k]), float(self.temp_c[sat, k])

    def sunlit_at(self, sat: int, t_s: float) -> bool:
        return bool(self.sunlit[sat, self._k(t_s)] > 0.5)

    def can_run(self, sat: int, t_s: float, need_sun: bool) -> bool:
        """Below the thermal limit (minus the margin) and, when ``need_sun``, sunlit."""
        k = self._k(t_s)
        cool = self.temp_c[sat, k] <= self._max_temp_c[sat]
        return bool(cool and (not need_sun or self.sunlit[sat, k] > 0.5))

    def admits(
        self,
        sat: int,
        start_s: float,
        inference_s: float,
        spare: float = 0.0,
        sunlit: bool | None = None,
    ) -> bool:
        """The battery can pay for the inference above its floor (plus ``spare`` x
        capacity) unless the Sun pays, and the radiator is below its maximum temperature
        minus a margin. ``sunlit`` overrides the grid's sunlight (an exact ephemeris)."""
        k = min(max(int(start_s // self.step_s), 0), self._last)
        if self.temp_c[sat, k] > self._max_temp_c[sat]:
            return False
        lit = self.sunlit[sat, k] > 0.5 if sunlit is None else sunlit
        if lit:
            return True
        need_wh = self._need_w[sat] * inference_s / 3600.0
        floor = self._floor_wh[sat] + spare * self._capacity_wh[sat]
        return bool(self.energy_wh[sat, k] - need_wh >= floor)
