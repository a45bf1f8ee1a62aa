"""Link budgets (links/budgets.py): each expected value is computed here independently of the
module, with its source named beside it."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from starcompute.errors import InputError, UnknownPresetError
from starcompute.links.budgets import (
    RfLinkConfig,
    atmospheric_attenuation_db,
    default_processing_delay_s,
    dish_gain_dbi,
    dvbs2_modcods,
    free_space_path_loss_db,
    optical_isl_rate_bps,
    propagation_delay_s,
    rf_link_budget,
    select_modcod,
    serialization_delay_s,
)
from starcompute.links.config import IslConfig

MIYUN = (40.45, 116.86)  # Miyun ground station near Beijing, deg N / deg E
C_M_S = 299_792_458.0  # exact (SI)


# ------------------------------------------------------------------ free-space path loss


def test_fspl_p525_worked_value() -> None:
    """ITU-R P.525 free-space loss in GHz and km: L = 92.45 + 20 log10 f[GHz] + 20 log10 d[km]."""
    expected = 92.45 + 20 * math.log10(8.2) + 20 * math.log10(2000.0)
    assert expected == pytest.approx(176.7469, abs=1e-4)
    assert free_space_path_loss_db(2000.0, 8.2) == pytest.approx(expected, abs=1e-9)
    assert free_space_path_loss_db(2000.0, 8.2) == pytest.approx(176.75, abs=0.005)


@pytest.mark.parametrize(("range_km", "frequency_ghz"), [(500.0, 8.2), (2000.0, 26.0), (1e4, 2.2)])
def test_fspl_matches_friis(range_km: float, frequency_ghz: float) -> None:
    """Friis: L = 20 log10(4 pi d / lambda); P.525's 92.45 is this constant rounded (0.003 dB)."""
    wavelength_m = C_M_S / (frequency_ghz * 1e9)
    friis = 20 * math.log10(4 * math.pi * range_km * 1e3 / wavelength_m)
    assert free_space_path_loss_db(range_km, frequency_ghz) == pytest.approx(friis, abs=0.005)


def test_fspl_is_vectorised_and_checks_input() -> None:
    """+6.02 dB per doubling of range (inverse-square law)."""
    loss = free_space_path_loss_db(np.array([[500.0, 1000.0], [2000.0, np.nan]]), 8.2)
    assert loss.shape == (2, 2)
    assert loss[0, 1] - loss[0, 0] == pytest.approx(20 * math.log10(2), abs=1e-9)
    assert np.isnan(loss[1, 1])
    with pytest.raises(InputError, match="range_km"):
        free_space_path_loss_db(np.array([1000.0, -1.0]), 8.2)
    with pytest.raises(InputError, match="frequency_ghz"):
        free_space_path_loss_db(1000.0, 0.0)


# ------------------------------------------------------------------------ DVB-S2 MODCODs

# ETSI EN 302 307-1 Table 5a: K_bch of the normal FECFRAME (n_ldpc = 64800) per code rate.
K_BCH = {
    "1/4": 16008, "1/3": 21408, "2/5": 25728, "1/2": 32208, "3/5": 38688, "2/3": 43040,
    "3/4": 48408, "4/5": 51648, "5/6": 53840, "8/9": 57472, "9/10": 58192,
}  # fmt: skip
BITS = {"QPSK": 2, "8PSK": 3, "16APSK": 4, "32APSK": 5}


def test_modcod_table_efficiencies_follow_from_the_frame_structure() -> None:
    """EN 302 307-1: a PLFRAME is 64800/log2(M) symbols + a 90-symbol PLHEADER (no pilots)
    and carries K_bch - 80 user bits (80-bit BBHEADER); Table 13 lists the ratio."""
    table = dvbs2_modcods()
    assert len(table) == 28
    assert len({m.name for m in table}) == 28
    assert table[0].name == "QPSK 1/4" and table[-1].name == "32APSK 9/10"
    for m in table:
        rate = m.name.split()[1]
        expected = (K_BCH[rate] - 80) / (64800 / BITS[m.modulation] + 90)
        assert m.spectral_efficiency_bit_per_symbol == pytest.approx(expected, abs=1e-6), m.name
        num, den = rate.split("/")
        assert m.code_rate == pytest.approx(int(num) / int(den))


def test_modcod_thresholds_spot_values() -> None:
    """EN 302 307-1 Table 13, ideal Es/N0 at PER 1e-7: corners and the 8PSK/16APSK entries."""
    thresholds = {m.name: m.ideal_es_n0_db for m in dvbs2_modcods()}
    assert thresholds["QPSK 1/4"] == -2.35
    assert thresholds["QPSK 1/2"] == 1.00
    assert thresholds["8PSK 3/5"] == 5.50
    assert thresholds["16APSK 2/3"] == 8.97
    assert thresholds["32APSK 9/10"] == 16.05


@pytest.mark.parametrize(
    ("es_n0_db", "margin_db", "expected"),
    [
        (-2.35, 0.0, "QPSK 1/4"),  # exactly the lowest threshold (Table 13)
        (-2.36, 0.0, ""),  # just below it: nothing closes
        (-1.35, 1.0, "QPSK 1/4"),  # the implementation margin adds to the threshold
        (-1.36, 1.0, ""),
        (5.50, 0.0, "8PSK 3/5"),  # 1.780 bit/sym beats QPSK 5/6 (1.655 at 5.18 dB)
        (5.49, 0.0, "QPSK 5/6"),
        (6.20, 0.0, "8PSK 3/5"),  # QPSK 8/9 (1.766) closes but 8PSK 3/5 (1.780) is better
        (6.42, 0.0, "QPSK 9/10"),  # 1.789 > 1.780
        (8.97, 0.0, "16APSK 2/3"),
        (10.69, 0.0, "16APSK 3/4"),  # 8PSK 8/9 (2.646) closes, 16APSK 3/4 (2.967) is better
        (16.05, 0.0, "32APSK 9/10"),
        (16.04, 0.0, "32APSK 8/9"),
        (40.0, 0.0, "32APSK 9/10"),
    ],
)
def test_select_modcod_at_and_below_thresholds(
    es_n0_db: float, margin_db: float, expected: str
) -> None:
    names, eff = select_modcod(np.array([es_n0_db]), margin_db)
    assert names[0] == expected
    table = {m.name: m.spectral_efficiency_bit_per_symbol for m in dvbs2_modcods()}
    assert eff[0] == (table[expected] if expected else 0.0)


def test_select_modcod_matches_brute_force() -> None:
    """The highest efficiency among the rows whose threshold (Table 13) + margin fits."""
    table = dvbs2_modcods()
    thresholds = np.array([m.ideal_es_n0_db for m in table])
    es = np.concatenate([np.arange(-4.0, 20.0, 0.01), thresholds, thresholds - 0.001])
    for margin in (0.0, 1.5):
        names, eff = select_modcod(es, margin)
        for e, name, value in zip(es, names, eff, strict=True):
            ok = [m for m in table if m.ideal_es_n0_db + margin <= e + 1e-12]
            best = max(ok, key=lambda m: m.spectral_efficiency_bit_per_symbol, default=None)
            assert name == (best.name if best else "")
            assert value == (best.spectral_efficiency_bit_per_symbol if best else 0.0)


# ---------------------------------------------------------------------------- budgets

HAND_CONFIG = RfLinkConfig(
    band="test",
    frequency_ghz=8.2,
    bandwidth_hz=240e6,
    rolloff=0.20,
    eirp_dbw=13.0,
    gt_db_k=28.0,
    availability_pct=99.9,
    antenna_diameter_m=5.0,
    implementation_margin_db=1.0,
    other_losses_db=2.0,
)


def test_hand_worked_budget() -> None:
    """X-band, 1,000 km, 1.5 dB atmosphere, worked by hand:
    FSPL  = 92.45 + 20 log10 8.2 (18.2763) + 20 log10 1000 (60)   = 170.7263 dB (P.525)
    C/N0  = 13 - 170.7263 - 1.5 - 2.0 + 28.0 - (-228.6)          =  95.3737 dBHz
    Rs    = 240 MHz / 1.20 = 200 Msym/s -> 10 log10 Rs            =  83.0103 dB
    Es/N0 = 95.3737 - 83.0103                                     =  12.3634 dB
    less the 1 dB margin = 11.3634 dB: 16APSK 4/5 (11.03 dB) closes, 16APSK 5/6 (11.61)
    does not, 32APSK 3/4 (12.73) does not (EN 302 307-1 Table 13)
    rate  = 200e6 x 3.165623                                      = 633.1246 Mbit/s
    """
    budget = rf_link_budget(1000.0, 30.0, *MIYUN, HAND_CONFIG, atmospheric_db=1.5)
    assert budget.fspl_db == pytest.approx(170.7263, abs=1e-4)
    assert budget.atmospheric_db == pytest.approx(1.5)
    assert budget.cn0_dbhz == pytest.approx(95.3737, abs=1e-4)
    assert budget.es_n0_db == pytest.approx(12.3634, abs=1e-4)
    assert budget.modcod[()] == "16APSK 4/5"
    assert budget.rate_bps == pytest.approx(633.1246e6, abs=100.0)


def test_budget_uses_the_itu_model_and_is_vectorised() -> None:
    ranges = np.array([600.0, 1000.0, 1500.0, 2500.0, 40_000.0, np.nan])
    elevations = np.array([70.0, 30.0, 20.0, 8.0, 5.0, 10.0])
    budget = rf_link_budget(ranges, elevations, *MIYUN, HAND_CONFIG)
    expected_atm = atmospheric_attenuation_db(*MIYUN, elevations, 8.2, 99.9, 5.0)
    np.testing.assert_allclose(budget.atmospheric_db, expected_atm)
    assert budget.modcod.shape == (6,) and budget.rate_bps.shape == (6,)
    assert np.all(np.diff(budget.rate_bps[:4]) <= 0)  # farther and lower: never faster
    assert budget.modcod[4] == "" and budget.rate_bps[4] == 0.0  # GEO distance: no closure
    assert budget.modcod[5] == "" and budget.rate_bps[5] == 0.0  # NaN geometry
    closed = budget.rate_bps[:4] > 0
    np.testing.assert_allclose(
        budget.rate_bps[:4][closed],
        HAND_CONFIG.symbol_rate_baud * budget.spectral_efficiency_bit_per_symbol[:4][closed],
    )


# ------------------------------------------------------------ atmosphere (ITU-R via itur)


def test_attenuation_properties() -> None:
    """ITU-R P.618/P.676/P.840 via itur: loss falls with elevation (cosec law) and rises with
    frequency (X -> Ka) and with availability (99 -> 99.9 %)."""
    el = np.array([5.0, 10.0, 20.0, 30.0, 45.0, 60.0])
    x99 = atmospheric_attenuation_db(*MIYUN, el, 8.2, 99.0, 5.0)
    x999 = atmospheric_attenuation_db(*MIYUN, el, 8.2, 99.9, 5.0)
    ka99 = atmospheric_attenuation_db(*MIYUN, el, 26.0, 99.0, 5.0)
    ka999 = atmospheric_attenuation_db(*MIYUN, el, 26.0, 99.9, 5.0)
    for att in (x99, x999, ka99, ka999):
        assert isinstance(att, np.ndarray) and att.dtype == np.float64
        assert np.all(np.diff(att) < 0)
    assert np.all(ka99 > x99) and np.all(ka999 > x999)
    assert np.all(x999 > x99) and np.all(ka999 > ka99)


def test_attenuation_plausible_values() -> None:
    """X-band at zenith stays under 1 dB 99 % of the time (gases ~0.07 dB + clouds + rain
    at 1 % for a temperate site); Ka-band 30 deg at 99 % a few dB (ITU-R P.618 Annex 1)."""
    x_zenith = atmospheric_attenuation_db(*MIYUN, 90.0, 8.2, 99.0, 5.0)
    assert 0.05 < x_zenith < 1.0
    ka_30 = atmospheric_attenuation_db(*MIYUN, 30.0, 26.0, 99.0, 2.8)
    assert 2.0 < ka_30 < 15.0


def test_attenuation_interpolation_and_clipping() -> None:
    """The cached elevation table reproduces direct itur calls off its grid; below 5 deg the
    loss is the 5-deg value (P.676 approximation valid 5..90 deg)."""
    import itur

    el = np.array([5.5, 7.3, 12.2, 16.1, 28.7, 33.3, 52.0, 77.7])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        direct = itur.atmospheric_attenuation_slant_path(*MIYUN, 26.0, el, 1.0, 2.8).value
    ours = atmospheric_attenuation_db(*MIYUN, el, 26.0, 99.0, 2.8)
    np.testing.assert_allclose(ours, direct, rtol=2e-3, atol=0.01)
    low = atmospheric_attenuation_db(*MIYUN, np.array([-3.0, 0.0, 2.0, 5.0]), 26.0, 99.0, 2.8)
    assert np.all(low == low[-1])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lat_deg": 91.0}, "lat_deg"),
        ({"elevation_deg": 95.0}, "elevation_deg"),
        ({"frequency_ghz": 80.0}, "frequency_ghz"),
        ({"availability_pct": 100.0}, "availability_pct"),
        ({"antenna_diameter_m": 0.0}, "antenna_diameter_m"),
    ],
)
def test_attenuation_bad_input(kwargs: dict[str, float], field: str) -> None:
    args: dict[str, float] = {
        "lat_deg": MIYUN[0],
        "lon_deg": MIYUN[1],
        "elevation_deg": 30.0,
        "frequency_ghz": 8.2,
        "availability_pct": 99.0,
        "antenna_diameter_m": 5.0,
    }
    with pytest.raises(InputError, match=field):
        atmospheric_attenuation_db(**(args | kwargs))


# --------------------------------------------------------------------------- presets


def test_presets_give_documented_rates() -> None:
    """data/links.toml: X-band ~0.2-1 Gbps (Planet Dove 220 Mbps peak, AWS Ground Station
    channels up to 400 MHz) and Ka-band ~0.3-2 Gbps (a 6U CubeSat did 320 Mbps) at 1,000 km /
    30 deg from Miyun; X-band stays in its range from 500 km overhead to 2,000 km at 10 deg."""
    x = RfLinkConfig.preset("x-band")
    ka = RfLinkConfig.preset("ka-band")
    assert x.band == "x-band" and ka.band == "ka-band"
    assert 0.2e9 <= rf_link_budget(1000.0, 30.0, *MIYUN, x).rate_bps <= 1e9
    assert 0.3e9 <= rf_link_budget(1000.0, 30.0, *MIYUN, ka).rate_bps <= 2e9
    x_range = rf_link_budget(np.array([500.0, 2000.0]), np.array([90.0, 10.0]), *MIYUN, x)
    assert np.all((x_range.rate_bps >= 0.2e9) & (x_range.rate_bps <= 1e9))
    assert 0.3e9 <= rf_link_budget(500.0, 90.0, *MIYUN, ka).rate_bps <= 2e9


def test_preset_overrides_and_unknown_name() -> None:
    assert RfLinkConfig.preset("x-band", eirp_dbw=10.0).eirp_dbw == 10.0
    assert RfLinkConfig.preset("x-band").symbol_rate_baud == pytest.approx(200e6)
    with pytest.raises(UnknownPresetError, match="ka-band, ka-band-up, s-band-up, x-band"):
        RfLinkConfig.preset("s-band")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("band", ""),
        ("frequency_ghz", 0.5),
        ("frequency_ghz", math.nan),
        ("bandwidth_hz", 0.0),
        ("rolloff", 0.5),
        ("rolloff", 0.01),
        ("eirp_dbw", math.inf),
        ("gt_db_k", math.nan),
        ("availability_pct", 99.9999),
        ("availability_pct", 90.0),
        ("antenna_diameter_m", -1.0),
        ("implementation_margin_db", -0.5),
        ("other_losses_db", -1.0),
        ("eirp_dbw", "13"),
    ],
)
def test_bad_rf_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(InputError, match=field):
        RfLinkConfig.preset("x-band", **{field: value})


# ------------------------------------------------------------------------ optical ISL


def test_optical_isl_knee_and_cutoff() -> None:
    """Received power ~ 1/range^2 (free-space spreading); at constant photons per bit the
    rate follows it beyond the knee; nothing beyond the maximum range."""
    ranges = np.array([0.0, 1000.0, 2000.0, 3000.0, 4000.0, 4000.001, np.nan])
    rate = optical_isl_rate_bps(ranges, 100e9, 4000.0, 2000.0)
    np.testing.assert_allclose(
        rate, [100e9, 100e9, 100e9, 100e9 * (2000 / 3000) ** 2, 25e9, 0.0, 0.0]
    )
    flat = optical_isl_rate_bps(ranges, 100e9, 4000.0, math.inf)
    np.testing.assert_allclose(flat, [100e9] * 5 + [0.0, 0.0])
    with pytest.raises(InputError, match="knee_km"):
        optical_isl_rate_bps(ranges, 100e9, 4000.0, 0.0)
    with pytest.raises(InputError, match="rate_bps"):
        optical_isl_rate_bps(ranges, -1.0, 4000.0, 2000.0)


def test_isl_config_knee() -> None:
    """data/links.toml [isl] knee_km = 5,000 km = max range: no fall-off by default."""
    cfg = IslConfig.default()
    assert cfg.knee_km == 5000.0 == cfg.max_range_km
    rate = optical_isl_rate_bps(np.array([4999.0]), cfg.rate_bps, cfg.max_range_km, cfg.knee_km)
    assert rate[0] == cfg.rate_bps
    assert IslConfig(5000.0, 15.0, 80.0, 1e9).knee_km == math.inf
    with pytest.raises(InputError, match="knee_km"):
        IslConfig.default(knee_km=-1.0)
    with pytest.raises(InputError, match="knee_km"):
        IslConfig.default(knee_km=math.nan)


# ---------------------------------------------------------------------------- delays


def test_delays() -> None:
    """Light time: 1,000 km / 299,792.458 km/s = 3.33564 ms (c exact, SI)."""
    assert propagation_delay_s(1000.0) == pytest.approx(3.3356e-3, abs=1e-7)
    np.testing.assert_allclose(propagation_delay_s(np.array([0.0, 299_792.458])), [0.0, 1.0])
    # 1 MB at 100 Mbit/s: 8e6 bit / 1e8 bit/s = 80 ms
    assert serialization_delay_s(1e6, 100e6) == pytest.approx(0.08)
    np.testing.assert_allclose(serialization_delay_s(np.array([0, 1500]), 1e9), [0.0, 1.2e-5])
    assert default_processing_delay_s() == 1e-4
    with pytest.raises(InputError, match="size_bytes"):
        serialization_delay_s(-1, 1e6)
    with pytest.raises(InputError, match="rate_bps"):
        serialization_delay_s(1500, 0.0)
    with pytest.raises(InputError, match="range_km"):
        propagation_delay_s(-5.0)


# ---------------------------------------------------------------------------- uplinks


def test_worked_uplink_example() -> None:
    """A C-band uplink worked in a textbook exercise ("Question #12.1", as quoted at
    https://1library.co/article/aplicaciones-espacio-teleco-revista-de-la-etsit-upct.zlg8j512):
    a 9 m earth-station dish (68 % aperture efficiency) at 6.285 GHz over 38,500 km into a
    satellite receive gain of 31 dB less 2 dB off axis with a 500 K system (27.0 dBK),
    0.5 dB atmospheric and other losses, 27 MHz noise bandwidth. Worked there:
    Gt = 53.8 dB, Lp = 200.1 dB, received power Pt - 117.7 dBW, noise -127.3 dBW, so a
    clear-air C/N of 26 dB takes Pt = -101.3 + 117.7 = 16.4 dBW. The same numbers through
    dish_gain_dbi, the ITU-R P.525 loss and the budget (station EIRP into satellite G/T)."""
    gain = dish_gain_dbi(9.0, 6.285, 0.68)
    assert gain == pytest.approx(53.8, abs=0.1)
    assert float(free_space_path_loss_db(38_500.0, 6.285)) == pytest.approx(200.1, abs=0.05)
    config = RfLinkConfig(
        band="c-band-up",
        frequency_ghz=6.285,
        bandwidth_hz=27e6,
        rolloff=0.35,
        eirp_dbw=16.4 + gain,
        gt_db_k=29.0 - 10.0 * math.log10(500.0),
        availability_pct=99.9,
        antenna_diameter_m=9.0,
        implementation_margin_db=0.0,
        other_losses_db=0.0,
        direction="up",
    )
    budget = rf_link_budget(38_500.0, 30.0, *MIYUN, config, atmospheric_db=0.5)
    c_over_n = float(budget.cn0_dbhz) - 10.0 * math.log10(27e6)
    assert c_over_n == pytest.approx(26.0, abs=0.15)
    received_dbw = config.eirp_dbw + 29.0 - float(budget.fspl_db) - 0.5
    assert received_dbw - 16.4 == pytest.approx(-117.7, abs=0.15)


def test_uplink_presets_by_hand() -> None:
    """s-band-up at 1,000 km with 0.2 dB atmosphere, worked by hand:
    FSPL  = 92.45 + 20 log10 2.067 (6.3068) + 60                 = 158.7568 dB (P.525)
    C/N0  = 56 - 158.7568 - 0.2 - 2.0 + (-21.0) - (-228.6)       = 102.6432 dBHz
    Rs    = 5 MHz / 1.35 = 3.7037 Msym/s -> 65.6864 dB; Es/N0   =  36.9568 dB
    every MODCOD closes: 32APSK 9/10 (4.453027 bit/symbol)
    rate  = 3.7037e6 x 4.453027                                   = 16.4927 Mbit/s"""
    up = RfLinkConfig.preset("s-band-up")
    assert up.direction == "up"
    budget = rf_link_budget(1000.0, 30.0, *MIYUN, up, atmospheric_db=0.2)
    assert budget.fspl_db == pytest.approx(158.7568, abs=1e-4)
    assert budget.cn0_dbhz == pytest.approx(102.6432, abs=1e-4)
    assert budget.modcod[()] == "32APSK 9/10"
    assert budget.rate_bps == pytest.approx(16.4927e6, rel=1e-4)
    assert RfLinkConfig.presets("up") == ["ka-band-up", "s-band-up"]
    assert RfLinkConfig.presets("down") == ["ka-band", "x-band"]
    with pytest.raises(InputError, match="direction must be down or up"):
        RfLinkConfig.preset("x-band", direction="sideways")
