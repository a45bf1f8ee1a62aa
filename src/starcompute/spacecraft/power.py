"""Electrical power: solar input and one battery step, vectorised over satellites.

Solar input = S (1 AU / d)^2 x array area x efficiency (cells after degradation and
losses) x cos(incidence) x sunlit fraction. A sun-tracking array has incidence 0; a
fixed array's normal points to zenith. The battery integrates (charge efficiency on the
way in, discharge efficiency on the way out) between empty and full; energy that
cannot be stored is shunted. Every joule is accounted for in :class:`EnergyLedger`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from starcompute.orbits.constants import AU_KM, SOLAR_CONSTANT_W_M2
from starcompute.spacecraft.hardware import Solar
from starcompute.times import FloatArray


def solar_input_w(
    solar: Solar, sun_teme_km: FloatArray, r_teme_km: FloatArray, sunlit: FloatArray
) -> FloatArray:
    """Array output (W) for satellites at ``r_teme_km`` (..., 3), Sun at ``sun_teme_km``."""
    d_km = np.linalg.norm(sun_teme_km, axis=-1)
    flux = SOLAR_CONSTANT_W_M2 * (AU_KM / d_km) ** 2
    if solar.pointing == "sun-tracking":
        cos_inc: FloatArray | float = 1.0
    else:
        to_sun = sun_teme_km / d_km[..., None]
        zenith = r_teme_km / np.linalg.norm(r_teme_km, axis=-1, keepdims=True)
        cos_inc = np.maximum(np.sum(zenith * to_sun, axis=-1), 0.0)
    return np.asarray(flux * solar.array_area_m2 * solar.efficiency * cos_inc * sunlit)


@dataclass(slots=True)
class EnergyLedger:
    """Where the energy went, Wh per satellite: solar in = load + stored + losses + shunt."""

    solar_wh: FloatArray
    load_wh: FloatArray
    charge_loss_wh: FloatArray
    discharge_loss_wh: FloatArray
    shunt_wh: FloatArray
    unserved_wh: FloatArray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def zeros(cls, n: int) -> EnergyLedger:
        return cls(*(np.zeros(n) for _ in range(6)))


def battery_step(
    energy_wh: FloatArray,
    capacity_wh: float,
    charge_eff: float,
    discharge_eff: float,
    solar_w: FloatArray,
    load_w: FloatArray,
    dt_h: float,
    ledger: EnergyLedger,
) -> FloatArray:
    """New stored energy after ``dt_h`` hours of ``solar_w`` in and ``load_w`` out."""
    net_wh = (solar_w - load_w) * dt_h
    surplus = np.maximum(net_wh, 0.0)
    deficit = np.maximum(-net_wh, 0.0)
    charge_in = np.minimum(surplus, (capacity_wh - energy_wh) / charge_eff)
    drawn = np.minimum(deficit / discharge_eff, energy_wh)  # cannot go below empty
    served_from_battery = drawn * discharge_eff
    ledger.solar_wh += solar_w * dt_h
    ledger.load_wh += load_w * dt_h - (deficit - served_from_battery)
    ledger.unserved_wh += deficit - served_from_battery
    ledger.charge_loss_wh += charge_in * (1.0 - charge_eff)
    ledger.discharge_loss_wh += drawn - served_from_battery
    ledger.shunt_wh += surplus - charge_in
    return np.asarray(energy_wh + charge_in * charge_eff - drawn)
