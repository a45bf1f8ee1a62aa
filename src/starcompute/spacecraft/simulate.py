"""Power, heat and radiation of every satellite over a time span, vectorised.

Satellites are propagated on a 60 s grid and interpolated (cubic Hermite) to the
simulation step; the Sun, shadow (conical, partial in the penumbra), solar input,
environmental heat and radiation are evaluated per chunk of steps for all satellites,
then the battery and the thermal node are integrated step by step.

Each step the accelerator draws what the requested utilisation asks for, unless

* the battery would fall below its depth-of-discharge floor (power throttle), or
* the thermal node would exceed its maximum temperature (thermal throttle);

then it draws the largest power that keeps both limits, and is paused (powered off)
when even its idle power would break one. The bus always draws its power; if the battery
is at its floor in eclipse the bus alone takes it below (counted as floor minutes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from starcompute.errors import InputError
from starcompute.orbits.constants import AU_KM, SOLAR_CONSTANT_W_M2
from starcompute.orbits.constellation import Constellation
from starcompute.orbits.eclipse import sunlit_fraction_fast
from starcompute.orbits.frames import ecef_to_geodetic
from starcompute.orbits.propagate import Ephemeris, propagate
from starcompute.orbits.sun import sun_position_teme_km
from starcompute.spacecraft.hardware import HardwareProfile, load_hardware
from starcompute.spacecraft.power import EnergyLedger, battery_step, solar_input_w
from starcompute.spacecraft.radiation import RadiationConfig, rates
from starcompute.spacecraft.thermal import KELVIN, environment_w, max_heat_w, thermal_step
from starcompute.times import DatetimeArray, FloatArray, from_offsets, time_grid

IntArray = npt.NDArray[np.int64]
COARSE_STEP_S = 60.0
BITS_PER_GB = 8e9
ChunkSink = Callable[[DatetimeArray, IntArray, dict[str, FloatArray]], None]


@dataclass(slots=True)
class Environment:
    """Per-satellite inputs of one chunk of steps, shape (N, n)."""

    sunlit: FloatArray
    solar_flux_w_m2: FloatArray  # (n,)
    sun_teme_km: FloatArray  # (n, 3)
    r_teme_km: FloatArray  # (N, n, 3)
    cos_sun_zenith: FloatArray


def environment(eph: Ephemeris, t_s: FloatArray) -> Environment:
    times = from_offsets(eph.start, t_s)
    r = eph.positions_at(t_s)
    sun = sun_position_teme_km(times)
    sun_km = np.linalg.norm(sun, axis=-1)
    r_km = np.sqrt(np.einsum("ntk,ntk->nt", r, r))
    r_dot_s = np.einsum("ntk,tk->nt", r, sun / sun_km[:, None])
    sunlit = sunlit_fraction_fast(r_km, r_dot_s, sun_km[None, :])
    cos_zenith = r_dot_s / r_km
    return Environment(
        sunlit=np.nan_to_num(sunlit),
        solar_flux_w_m2=SOLAR_CONSTANT_W_M2 * (AU_KM / sun_km) ** 2,
        sun_teme_km=sun,
        r_teme_km=r,
        cos_sun_zenith=np.nan_to_num(cos_zenith),
    )


def radiation_rates(eph: Ephemeris, rad: RadiationConfig) -> tuple[FloatArray, FloatArray]:
    """(SEU /bit/day, dose rad(Si)/day) on the coarse grid, (N, T): the belts vary over
    minutes, so the 60 s grid resolves them (and costs a sixth of the 10 s one)."""
    seu, dose = rates(*ecef_to_geodetic(eph.r_ecef_km()), rad)
    return np.nan_to_num(seu), np.nan_to_num(dose)


@dataclass(slots=True)
class SatState:
    """Integration state and running statistics of one group of satellites."""

    energy_wh: FloatArray
    temp_k: FloatArray
    soc_min: FloatArray
    soc_max: FloatArray
    temp_max_k: FloatArray
    accelerator_wh: FloatArray
    throttled_s: FloatArray
    power_throttled_s: FloatArray
    thermal_throttled_s: FloatArray
    below_floor_s: FloatArray
    ledger: EnergyLedger


def new_state(hw: HardwareProfile, n: int, soc0: float, temp0_c: float) -> SatState:
    e0 = np.full(n, hw.battery.capacity_wh * soc0)
    t0 = np.full(n, temp0_c + KELVIN)
    return SatState(
        energy_wh=e0,
        temp_k=t0,
        soc_min=np.full(n, soc0),
        soc_max=np.full(n, soc0),
        temp_max_k=t0.copy(),
        accelerator_wh=np.zeros(n),
        throttled_s=np.zeros(n),
        power_throttled_s=np.zeros(n),
        thermal_throttled_s=np.zeros(n),
        below_floor_s=np.zeros(n),
        ledger=EnergyLedger.zeros(n),
    )


def step_group(
    hw: HardwareProfile,
    st: SatState,
    solar_w: FloatArray,
    env_w: FloatArray,
    utilisation: FloatArray,
    dt_s: float,
) -> dict[str, FloatArray]:
    """Advance one group one step; returns what was drawn (for series output)."""
    p, b = hw.power, hw.battery
    dt_h = dt_s / 3600.0
    request = p.accelerator_idle_w + utilisation * (p.accelerator_peak_w - p.accelerator_idle_w)
    from_battery = np.maximum(st.energy_wh - b.floor_wh, 0.0) * b.discharge_efficiency / dt_h
    power_limit = solar_w + from_battery - p.bus_w
    thermal_limit = max_heat_w(hw.thermal, st.temp_k, dt_s) - env_w - p.bus_w
    limit = np.minimum(power_limit, thermal_limit)
    accelerator = np.where(limit >= p.accelerator_idle_w, np.minimum(request, limit), 0.0)
    throttled = accelerator < request - 1e-9
    load = p.bus_w + accelerator
    st.energy_wh = battery_step(
        st.energy_wh,
        b.capacity_wh,
        b.charge_efficiency,
        b.discharge_efficiency,
        solar_w,
        load,
        dt_h,
        st.ledger,
    )
    st.temp_k = thermal_step(hw.thermal, st.temp_k, env_w + load, dt_s)
    soc = st.energy_wh / b.capacity_wh
    np.minimum(st.soc_min, soc, out=st.soc_min)
    np.maximum(st.soc_max, soc, out=st.soc_max)
    np.maximum(st.temp_max_k, st.temp_k, out=st.temp_max_k)
    st.accelerator_wh += accelerator * dt_h
    st.throttled_s += throttled * dt_s
    st.power_throttled_s += (throttled & (power_limit <= thermal_limit)) * dt_s
    st.thermal_throttled_s += (throttled & (thermal_limit < power_limit)) * dt_s
    st.below_floor_s += (st.energy_wh < b.floor_wh - 1e-9) * dt_s
    return {
        "soc": soc,
        "solar_w": solar_w,
        "load_w": load,
        "accelerator_w": accelerator,
        "temperature_c": st.temp_k - KELVIN,
        "throttled": throttled.astype(np.float64),
    }


@dataclass(slots=True)
class PowerRun:
    """Per-satellite results over the span (arrays of length N, constellation order)."""

    satellites: list[str]
    hardware: list[str]
    duration_s: float
    step_s: float
    soc_min: FloatArray
    soc_max: FloatArray
    eclipse_min: FloatArray
    accelerator_wh: FloatArray
    throttled_min: FloatArray
    power_throttled_min: FloatArray
    thermal_throttled_min: FloatArray
    below_floor_min: FloatArray
    peak_temp_c: FloatArray
    seu_per_gb: FloatArray
    dose_rad_si: FloatArray
    ledger: EnergyLedger
    energy_start_wh: FloatArray
    energy_end_wh: FloatArray

    def records(self) -> list[dict[str, object]]:
        cols = {
            "soc_min": self.soc_min,
            "soc_max": self.soc_max,
            "eclipse_min": self.eclipse_min,
            "compute_energy_wh": self.accelerator_wh,
            "throttled_min": self.throttled_min,
            "power_throttled_min": self.power_throttled_min,
            "thermal_throttled_min": self.thermal_throttled_min,
            "below_floor_min": self.below_floor_min,
            "peak_temp_c": self.peak_temp_c,
            "seu_per_gb": self.seu_per_gb,
            "dose_rad_si": self.dose_rad_si,
        }
        return [
            {
                "satellite": name,
                "hardware": hw,
                **{k: round(float(v[i]), 6 if k == "seu_per_gb" else 4) for k, v in cols.items()},
            }
            for i, (name, hw) in enumerate(zip(self.satellites, self.hardware, strict=True))
        ]


def _utilisation(value: float | FloatArray, n: int, n_steps: int) -> FloatArray:
    """(N, T) accelerator utilisation from a scalar, one value per satellite or a series."""
    u = np.asarray(value, dtype=np.float64)
    if u.ndim == 2 and u.shape != (n, n_steps):
        raise InputError(f"utilisation series must be (satellites, steps) = ({n}, {n_steps})")
    u = np.broadcast_to(u if u.ndim == 2 else u.reshape(-1, 1), (n, n_steps))
    if not np.all(np.isfinite(u) & (u >= 0.0) & (u <= 1.0)):
        raise InputError("accelerator utilisation (--load) must be within 0..1")
    return u


def simulate_power(
    const: Constellation,
    start: np.datetime64,
    duration_s: float,
    step_s: float = 10.0,
    utilisation: float | FloatArray = 1.0,
    initial_soc: float = 1.0,
    initial_temp_c: float = 20.0,
    radiation: RadiationConfig | None = None,
    sink: ChunkSink | None = None,
    progress: bool = False,
    chunk_steps: int = 360,
    with_radiation: bool = True,
) -> PowerRun:
    """Integrate power and heat of every satellite; ``sink`` receives each chunk's series.
    ``with_radiation`` False skips the radiation environment (SEU and dose come back 0)."""
    if not (np.isfinite(duration_s) and duration_s > 0):
        raise InputError(f"duration must be > 0 s, got {duration_s}")
    if not (np.isfinite(step_s) and 0.1 <= step_s <= 600.0):
        raise InputError(f"power step must be within 0.1..600 s, got {step_s}")
    if not 0.0 <= initial_soc <= 1.0:
        raise InputError(f"initial state of charge must be within 0..1, got {initial_soc}")
    rad = radiation or RadiationConfig.default()
    n = len(const)
    profiles = {name: load_hardware(name) for name in dict.fromkeys(const.hardware)}
    groups = {name: np.flatnonzero(np.array(const.hardware) == name) for name in profiles}
    states = {
        k: new_state(profiles[k], len(g), initial_soc, initial_temp_c) for k, g in groups.items()
    }
    coarse_n = int(np.ceil(duration_s / COARSE_STEP_S))
    eph = propagate(const, time_grid(start, coarse_n * COARSE_STEP_S, COARSE_STEP_S))
    t_fine = np.arange(int(np.floor(duration_s / step_s + 1e-9)), dtype=np.float64) * step_s
    u = _utilisation(utilisation, n, len(t_fine))
    if with_radiation:
        seu_rate, dose_rate = radiation_rates(eph, rad)
    else:
        seu_rate = dose_rate = np.zeros((n, len(eph.times)))
    nearest = np.minimum(np.rint(t_fine / COARSE_STEP_S).astype(np.int64), coarse_n)
    seu = seu_rate[:, nearest].sum(axis=1) * step_s / 86400.0 * BITS_PER_GB
    dose = dose_rate[:, nearest].sum(axis=1) * step_s / 86400.0
    eclipse_s = np.zeros(n)
    chunks = range(0, len(t_fine), chunk_steps)
    for c0 in tqdm(chunks, desc="power", unit="chunk", disable=not progress, leave=False):
        t_chunk = t_fine[c0 : c0 + chunk_steps]
        env = environment(eph, t_chunk)
        eclipse_s += (1.0 - env.sunlit).sum(axis=1) * step_s
        u_chunk = u[:, c0 : c0 + chunk_steps]
        series = _integrate_chunk(
            profiles, groups, states, env, u_chunk, step_s, n, sink is not None
        )
        if sink is not None:
            series["seu_per_bit_per_day"] = seu_rate[:, nearest[c0 : c0 + chunk_steps]]
            sink(from_offsets(start, t_chunk), np.arange(n), series)
    return _collect(
        const, profiles, groups, states, duration_s, step_s, eclipse_s, seu, dose, initial_soc
    )


def _integrate_chunk(
    profiles: dict[str, HardwareProfile],
    groups: dict[str, IntArray],
    states: dict[str, SatState],
    env: Environment,
    u: FloatArray,
    step_s: float,
    n: int,
    keep: bool,
) -> dict[str, FloatArray]:
    n_t = env.sunlit.shape[1]
    series = {
        k: np.zeros((n, n_t) if keep else (0, 0))
        for k in ("soc", "solar_w", "load_w", "accelerator_w", "temperature_c", "throttled")
    }
    for name, idx in groups.items():
        hw = profiles[name]
        solar = solar_input_w(hw.solar, env.sun_teme_km[None], env.r_teme_km[idx], env.sunlit[idx])
        heat = environment_w(
            hw.thermal, env.solar_flux_w_m2[None], env.sunlit[idx], env.cos_sun_zenith[idx]
        )
        for j in range(n_t):
            out = step_group(hw, states[name], solar[:, j], heat[:, j], u[idx, j], step_s)
            if keep:
                for key, value in out.items():
                    series[key][idx, j] = value
    series["sunlit_fraction"] = env.sunlit
    return series


def _collect(
    const: Constellation,
    profiles: dict[str, HardwareProfile],
    groups: dict[str, IntArray],
    states: dict[str, SatState],
    duration_s: float,
    step_s: float,
    eclipse_s: FloatArray,
    seu: FloatArray,
    dose: FloatArray,
    initial_soc: float,
) -> PowerRun:
    n = len(const)
    out = {
        k: np.zeros(n)
        for k in (
            "soc_min",
            "soc_max",
            "temp_max_k",
            "accelerator_wh",
            "throttled_s",
            "power_throttled_s",
            "thermal_throttled_s",
            "below_floor_s",
        )
    }
    ledger = EnergyLedger.zeros(n)
    e0, e1 = np.zeros(n), np.zeros(n)
    for name, idx in groups.items():
        e0[idx] = profiles[name].battery.capacity_wh * initial_soc
        e1[idx] = states[name].energy_wh
        st = states[name]
        for key in out:
            out[key][idx] = getattr(st, key)
        for f in (
            "solar_wh",
            "load_wh",
            "charge_loss_wh",
            "discharge_loss_wh",
            "shunt_wh",
            "unserved_wh",
        ):
            getattr(ledger, f)[idx] = getattr(st.ledger, f)
    return PowerRun(
        satellites=list(const.names),
        hardware=list(const.hardware),
        duration_s=duration_s,
        step_s=step_s,
        soc_min=out["soc_min"],
        soc_max=out["soc_max"],
        eclipse_min=eclipse_s / 60.0,
        accelerator_wh=out["accelerator_wh"],
        throttled_min=out["throttled_s"] / 60.0,
        power_throttled_min=out["power_throttled_s"] / 60.0,
        thermal_throttled_min=out["thermal_throttled_s"] / 60.0,
        below_floor_min=out["below_floor_s"] / 60.0,
        peak_temp_c=out["temp_max_k"] - KELVIN,
        seu_per_gb=seu,
        dose_rad_si=dose,
        ledger=ledger,
        energy_start_wh=e0,
        energy_end_wh=e1,
    )
