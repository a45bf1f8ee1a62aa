"""Power, thermal and hardware profiles against closed forms and published figures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from starcompute import InputError, parse_utc
from starcompute.cli.main import main
from starcompute.orbits.constants import RADIUS_EARTH_KM, RADIUS_WGS72_KM
from starcompute.orbits.constellation import _from_shells, constellation_from_toml
from starcompute.orbits.walker import WalkerShell
from starcompute.spacecraft.hardware import (
    hardware_presets,
    load_hardware,
    profile_from_toml,
)
from starcompute.spacecraft.simulate import simulate_power
from starcompute.spacecraft.thermal import KELVIN, steady_state_k, thermal_step

PRESET_DIR = Path(__file__).resolve().parents[1] / "src/starcompute/data/hardware"


def _equatorial(alt_km: float, hardware: str = "three-body-sat"):  # type: ignore[no-untyped-def]
    epoch = parse_utc("2026-03-20T14:46:00Z")  # March equinox 2026: beta ~ 0 at i = 0
    shell = WalkerShell("EQ", alt_km, 0.0, 1, 1, phasing=0, hardware=hardware)
    return _from_shells("eq", [shell], epoch), epoch


def test_eclipse_fraction_at_zero_beta_within_1_percent_of_cylindrical() -> None:
    """500 km, beta = 0: 35.8 of 94.6 min in shadow (cylindrical, ../shared/facts.md);
    the power model's (1 - sunlit fraction) integral must agree within 1 %."""
    const, epoch = _equatorial(500.0)
    a = RADIUS_WGS72_KM + 500.0
    period_s = 2 * np.pi * np.sqrt(a**3 / 398600.8)
    orbits = 10
    run = simulate_power(const, epoch, orbits * period_s, step_s=5.0)
    per_orbit_min = run.eclipse_min[0] / orbits
    closed_min = period_s / np.pi * np.arcsin(RADIUS_EARTH_KM / a) / 60.0
    assert closed_min == pytest.approx(35.8, abs=0.1)
    assert per_orbit_min == pytest.approx(closed_min, rel=0.01)


def _dawn_dusk_800(epoch: str):  # type: ignore[no-untyped-def]
    toml = f"""
name = "dd800"
epoch = "{epoch}"
[[shell]]
name = "DD"
altitude_km = 800.0
sun_synchronous = true
ltan_h = 18.0
planes = 1
sats_per_plane = 1
phasing = 0
"""
    return constellation_from_toml(None, toml, "dd800")


def test_dawn_dusk_800_km_has_a_solstice_season_and_no_equinox_eclipse() -> None:
    """Dawn-dusk SSO at 800 km: at most ~16.9 min of shadow per orbit at the solstice and
    none at the equinox (../shared/facts.md, cylindrical shadow)."""
    solstice = _dawn_dusk_800("2026-06-21T08:24:00Z")
    run = simulate_power(solstice, parse_utc("2026-06-21T08:24:00Z"), 86400.0, step_s=10.0)
    orbits = 86400.0 / (solstice.period_min()[0] * 60.0)
    assert run.eclipse_min[0] / orbits == pytest.approx(16.9, abs=1.0)
    equinox = _dawn_dusk_800("2026-03-20T14:46:00Z")
    run = simulate_power(equinox, parse_utc("2026-03-20T14:46:00Z"), 86400.0, step_s=10.0)
    assert run.eclipse_min[0] == 0.0


def test_radiator_steady_state_equals_the_stefan_boltzmann_balance() -> None:
    """eps sigma A T^4 = Q in steady state (closed form), to 0.5 K."""
    th = load_hardware("three-body-sat").thermal
    heat = np.array([100.0, 400.0, 900.0])
    temp = np.full(3, 250.0)
    for _ in range(30000):  # 3e5 s: > 20 time constants C / (4 eps sigma A T^3) at 100 W
        temp = thermal_step(th, temp, heat, 10.0)
    closed = (heat / (0.9 * 5.670374419e-8 * 1.6)) ** 0.25
    np.testing.assert_allclose(steady_state_k(th, heat), closed, rtol=1e-12)
    assert np.abs(temp - closed).max() < 0.5
    # facts.md: one side at 20 degC rejects 376 W/m^2 at eps = 0.9
    one_m2 = dataclasses.replace(th, radiator_area_m2=1.0)
    # (the figure is rounded to 1 W/m^2, i.e. 0.19 K)
    assert steady_state_k(one_m2, np.array([376.0]))[0] - KELVIN == pytest.approx(20.0, abs=0.3)


def test_energy_is_conserved() -> None:
    """solar in = served load + stored change + charge/discharge losses + shunted, 1e-6 rel."""
    const, epoch = _equatorial(500.0)
    run = simulate_power(const, epoch, 6 * 3600.0, step_s=10.0, initial_soc=0.5)
    led = run.ledger
    accounted = (
        led.load_wh
        + (run.energy_end_wh - run.energy_start_wh)
        + led.charge_loss_wh
        + led.discharge_loss_wh
        + led.shunt_wh
    )
    np.testing.assert_allclose(accounted, led.solar_wh, rtol=1e-6)
    assert led.solar_wh[0] > 0 and led.charge_loss_wh[0] > 0 and led.discharge_loss_wh[0] > 0


def _custom_profile(tmp_path: Path, **changes: str) -> Path:
    """three-body-sat with some lines replaced (key = new value)."""
    text = (PRESET_DIR / "three-body-sat.toml").read_text()
    lines = []
    for line in text.splitlines():
        key = line.split("=")[0].strip()
        lines.append(f"{key} = {changes[key]}" if key in changes else line)
    path = tmp_path / "custom.toml"
    path.write_text("\n".join(lines).replace('name = "three-body-sat"', 'name = "custom"'))
    return path


def test_throttling_engages_exactly_at_the_battery_floor(tmp_path: Path) -> None:
    """A battery too small for the eclipse: the accelerator runs at full load while the
    state of charge is above the floor and is throttled in exactly the steps that end on
    the floor; paused (off) when even its idle power would cross it."""
    path = _custom_profile(tmp_path, capacity_wh="400.0")
    const, epoch = _equatorial(500.0, hardware=str(path))
    floor = load_hardware(path).battery.floor_wh / 400.0
    seen: list[dict[str, np.ndarray]] = []
    run = simulate_power(
        const, epoch, 4 * 3600.0, step_s=10.0, sink=lambda t, s, series: seen.append(series)
    )
    soc = np.concatenate([s["soc"][0] for s in seen])
    throttled = np.concatenate([s["throttled"][0] for s in seen]) > 0
    acc = np.concatenate([s["accelerator_w"][0] for s in seen])
    assert throttled.any() and run.power_throttled_min[0] > 0
    at_floor = np.abs(soc - floor) < 1e-9
    running = acc > 0
    # while the accelerator runs, throttled <=> the step ends exactly on the floor
    np.testing.assert_array_equal(throttled[running], at_floor[running])
    # below the floor only while the bus alone drains it (paused) or the Sun recharges it
    below = soc < floor - 1e-9
    charging = np.diff(soc, prepend=soc[0]) > 0
    assert np.all(~below | ~running | charging)
    assert np.all(acc[~throttled] == 400.0)


def test_thermal_throttle_caps_the_temperature(tmp_path: Path) -> None:
    path = _custom_profile(tmp_path, radiator_area_m2="0.6")
    const, epoch = _equatorial(500.0, hardware=str(path))
    run = simulate_power(const, epoch, 6 * 3600.0, step_s=10.0)
    assert run.thermal_throttled_min[0] > 0
    assert run.peak_temp_c[0] <= 60.0 + 1e-6


def test_fixed_panels_collect_less_than_sun_tracking(tmp_path: Path) -> None:
    fixed = _custom_profile(tmp_path, pointing='"fixed"')
    const, epoch = _equatorial(500.0)
    tracking = simulate_power(const, epoch, 3 * 3600.0, utilisation=0.0).ledger.solar_wh[0]
    const.hardware = [str(fixed)]
    body = simulate_power(const, epoch, 3 * 3600.0, utilisation=0.0).ledger.solar_wh[0]
    # a zenith-facing panel sees cos(angle to the Sun) over the lit half orbit: ~1/pi x 2
    assert 0.2 * tracking < body < 0.8 * tracking


def test_presets_load_with_published_figures() -> None:
    assert set(hardware_presets()) >= {"three-body-sat", "h100-sat", "orin-sat", "tpu-v6e-sat"}
    assert load_hardware("three-body-sat").compute.peak_ops_per_s["int8"] == 744e12
    assert load_hardware("three-body-sat").compute.storage_tb == 2.5
    assert load_hardware("h100-sat").compute.memory_gb == 80.0
    assert load_hardware("tpu-v6e-sat").compute.peak_ops_per_s["bf16"] == 918e12


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("array_area_m2", "-1.0", "array_area_m2"),
        ("cell_efficiency", "0.0", "cell_efficiency"),
        ("cell_efficiency", "1.2", "cell_efficiency"),
        ("depth_of_discharge", "0.0", "depth_of_discharge"),
        ("depth_of_discharge", "1.5", "depth_of_discharge"),
        ("radiator_area_m2", "-0.5", "radiator_area_m2"),
        ("emissivity", "1.1", "emissivity"),
    ],
)
def test_bad_profiles_name_the_field(
    tmp_path: Path, key: str, value: str, field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _custom_profile(tmp_path, **{key: value})
    with pytest.raises(InputError, match=field):
        load_hardware(path)
    code = main(
        [
            "power",
            "--constellation",
            "three-body-12",
            "--start",
            "2025-11-20T00:00:00Z",
            "--hours",
            "1",
            "--hardware",
            str(path),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and field in err and len(err.strip().splitlines()) == 1


def test_unknown_keys_and_missing_tables_are_reported() -> None:
    with pytest.raises(InputError, match="unknown key"):
        profile_from_toml(
            (PRESET_DIR / "orin-sat.toml").read_text().replace("bus_w", "bus_watts"), "x"
        )
    with pytest.raises(InputError, match=r"missing \[battery\]"):
        text = (PRESET_DIR / "orin-sat.toml").read_text()
        profile_from_toml(text.split("[battery]")[0], "x")


def test_power_cli_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import json

    import pyarrow.parquet as pq

    out = tmp_path / "series.parquet"
    code = main(
        [
            "power",
            "--constellation",
            "three-body-12",
            "--start",
            "2025-11-20T00:00:00Z",
            "--hours",
            "2",
            "--load",
            "0.5",
            "--json",
            "--out",
            str(out),
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and len(doc["satellites"]) == 12
    first = doc["satellites"][0]
    for key in (
        "soc_min",
        "soc_max",
        "eclipse_min",
        "compute_energy_wh",
        "throttled_min",
        "peak_temp_c",
        "seu_per_gb",
    ):
        assert key in first
    assert pq.read_table(out).num_rows == 12 * 720


@pytest.mark.parametrize(
    "args", [["--load", "1.5"], ["--step", "0"], ["--hours", "-2"], ["--initial-soc", "2"]]
)
def test_power_cli_bad_input(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "power",
            "--constellation",
            "three-body-12",
            "--start",
            "2025-11-20T00:00:00Z",
            "--hours",
            "1",
            *args,
        ]
    )
    assert code == 2 and "error" in capsys.readouterr().err
