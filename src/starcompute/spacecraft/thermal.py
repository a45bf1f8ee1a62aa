"""Lumped-capacity thermal node: the radiator and what it cools, one temperature each.

C dT/dt = P_dissipated + alpha S F_sun A + eps q_IR F_earth A + alpha a S F_earth A cos(z)
          - eps sigma A T^4

with S the solar flux, q_IR the Earth's mean outgoing long-wave flux, a its albedo and
z the Sun's zenith angle at the sub-satellite point. The step is linearised in T^4
(semi-implicit), stable for any step; the steady state is the exact balance
eps sigma A T^4 = inputs (tests/test_spacecraft.py checks it to 0.5 K).
"""

from __future__ import annotations

import numpy as np

from starcompute.spacecraft.hardware import Thermal
from starcompute.times import FloatArray

STEFAN_BOLTZMANN = 5.670374419e-8  # W m^-2 K^-4 (CODATA 2018, exact in SI 2019)
EARTH_IR_W_M2 = 237.0  # mean outgoing long-wave radiation (Trenberth et al. 2009)
EARTH_ALBEDO = 0.30  # Bond albedo (Stephens et al. 2015)
KELVIN = 273.15


def environment_w(
    th: Thermal, solar_flux_w_m2: FloatArray, sunlit: FloatArray, cos_sun_zenith: FloatArray
) -> FloatArray:
    """Absorbed environmental heat (W): direct Sun, Earth IR and albedo."""
    area = th.radiator_area_m2
    direct = th.absorptivity * solar_flux_w_m2 * sunlit * th.sun_view_factor * area
    ir = th.emissivity * EARTH_IR_W_M2 * th.earth_view_factor * area
    albedo = (
        th.absorptivity
        * EARTH_ALBEDO
        * solar_flux_w_m2
        * th.earth_view_factor
        * area
        * np.maximum(cos_sun_zenith, 0.0)
    )
    return np.asarray(direct + ir + albedo)


def radiated_w(th: Thermal, temp_k: FloatArray) -> FloatArray:
    return np.asarray(th.emissivity * STEFAN_BOLTZMANN * th.radiator_area_m2 * temp_k**4)


def thermal_step(th: Thermal, temp_k: FloatArray, heat_in_w: FloatArray, dt_s: float) -> FloatArray:
    """Temperature after ``dt_s`` with ``heat_in_w`` absorbed + dissipated (semi-implicit)."""
    conductance = 4.0 * th.emissivity * STEFAN_BOLTZMANN * th.radiator_area_m2 * temp_k**3
    rate = heat_in_w - radiated_w(th, temp_k)
    return np.asarray(temp_k + dt_s * rate / (th.heat_capacity_j_k + dt_s * conductance))


def max_heat_w(th: Thermal, temp_k: FloatArray, dt_s: float) -> FloatArray:
    """The heat input that brings the node exactly to its maximum temperature in one step."""
    t_max = th.max_temp_c + KELVIN
    conductance = 4.0 * th.emissivity * STEFAN_BOLTZMANN * th.radiator_area_m2 * temp_k**3
    return np.asarray(
        (t_max - temp_k) * (th.heat_capacity_j_k + dt_s * conductance) / dt_s
        + radiated_w(th, temp_k)
    )


def steady_state_k(th: Thermal, heat_in_w: FloatArray) -> FloatArray:
    """The closed-form balance eps sigma A T^4 = heat in."""
    return np.asarray(
        (heat_in_w / (th.emissivity * STEFAN_BOLTZMANN * th.radiator_area_m2)) ** 0.25
    )
