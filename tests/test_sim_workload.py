"""Demand generation: regions, diurnal curve, Poisson arrivals, lengths, models, EO jobs.

Every statistical check uses a fixed seed (so it is deterministic) and a tolerance of
several standard deviations of the quantity checked, so that a correct generator would
pass for practically any seed; each tolerance says what it rests on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import chi2

from starcompute.errors import InputError
from starcompute.mission.traffic import answer_bytes_for, query_bytes_for
from starcompute.sim.scenario import Scenario, parse_scenario
from starcompute.sim.workload import EO, QUERY, Demand, generate, load_diurnal, load_regions

NO_SATS = np.array([], dtype=np.int64)
FIELDS = Demand.__slots__


def _scenario(tmp_path: Path, doc: dict[str, Any] | None = None, **workload: Any) -> Scenario:
    doc = dict(doc or {})
    doc.setdefault("duration_h", 24.0)
    doc.setdefault("start", "2026-03-20T00:00:00Z")
    doc["workload"] = {**doc.get("workload", {}), **workload}
    return parse_scenario(doc, "test.toml", base_dir=tmp_path)


def _regions_csv(tmp_path: Path, rows: list[tuple[str, float, float, float]]) -> str:
    p = tmp_path / "cities.csv"
    lines = ["# test regions", "name,lat_deg,lon_deg,population"]
    lines += [f"{n},{lat},{lon},{pop}" for n, lat, lon, pop in rows]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(p)


# A curve with plateaus (hours 0-5 at 1, hours 6-10 at 3) and one clear peak at 12 h whose
# neighbours differ (11: 2, 13: 8), so the peak hour has the most arrivals whether the 24
# numbers are read as hourly steps or as nodes of a piecewise-linear curve.
PEAKED = [1.0] * 6 + [3.0] * 5 + [2.0, 10.0, 8.0] + [1.0] * 10
assert len(PEAKED) == 24


def _hourly(t_s: np.ndarray) -> np.ndarray:
    return np.bincount((t_s // 3600.0).astype(int), minlength=24)[:24]


# --- regions and diurnal curve --------------------------------------------------------------


def test_top_100_regions() -> None:
    r = load_regions("top-100")
    assert len(r.names) == 100 == len(set(r.names))
    assert r.lat_deg.shape == r.lon_deg.shape == r.population.shape == (100,)
    assert np.all(r.population > 0)
    assert np.all(np.abs(r.lat_deg) <= 90) and np.all(np.abs(r.lon_deg) <= 180)


def test_custom_regions_csv(tmp_path: Path) -> None:
    r = load_regions(_regions_csv(tmp_path, [("A", 10.0, 20.0, 5.0), ("B", -10.0, -170.0, 1)]))
    assert r.names == ["A", "B"]
    np.testing.assert_array_equal(r.lon_deg, [20.0, -170.0])
    np.testing.assert_array_equal(r.population, [5.0, 1.0])


@pytest.mark.parametrize(
    "text",
    [
        "name,lat,lon,population\nA,0,0,1\n",  # wrong column names
        "name,lat_deg,lon_deg\nA,0,0\n",  # missing column
        "name,lat_deg,lon_deg,population\nA,0,0,many\n",  # not a number
        "name,lat_deg,lon_deg,population\nA,0,0\n",  # short row
        "name,lat_deg,lon_deg,population\nA,95,0,1\n",  # latitude out of range
        "name,lat_deg,lon_deg,population\nA,0,200,1\n",  # longitude out of range
        "name,lat_deg,lon_deg,population\nA,0,0,0\n",  # no population
        "name,lat_deg,lon_deg,population\nA,0,0,-5\nB,0,0,10\n",  # negative population
        "name,lat_deg,lon_deg,population\n",  # no rows
    ],
)
def test_bad_regions_csv(tmp_path: Path, text: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match="regions"):
        load_regions(str(p))


@pytest.mark.parametrize(
    "row", ["A,nan,0,100", "A,0,nan,100", "A,0,0,inf"], ids=["nan-lat", "nan-lon", "inf-pop"]
)
def test_non_finite_regions_rejected(tmp_path: Path, row: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(f"name,lat_deg,lon_deg,population\n{row}\n", encoding="utf-8")
    with pytest.raises(InputError):
        load_regions(str(p))


def test_missing_or_unknown_regions(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        load_regions(str(tmp_path / "nope.csv"))
    with pytest.raises(InputError, match="top-100"):
        load_regions("top-99")  # unknown preset: the message lists the presets


def test_default_diurnal() -> None:
    curve = load_diurnal("default")
    assert curve.shape == (24,)
    assert curve.mean() == pytest.approx(1.0, abs=1e-12)
    assert np.all(curve > 0)
    assert int(np.argmax(curve)) == 21 and int(np.argmin(curve)) == 4  # per default.csv


def test_flat_diurnal() -> None:
    np.testing.assert_allclose(load_diurnal("flat"), np.ones(24))


def test_diurnal_list_normalised() -> None:
    curve = load_diurnal(PEAKED)
    assert curve.mean() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(curve / curve[0], np.array(PEAKED))
    np.testing.assert_allclose(load_diurnal([5] * 24), np.ones(24))  # integers too


@pytest.mark.parametrize(
    "spec",
    [
        [1.0] * 23,
        [1.0] * 25,
        [],
        [0.0] * 24,
        [1.0] * 23 + [-1.0],
        ["a"] * 24,
        [1.0] * 23 + [np.nan],
    ],
    ids=["23", "25", "empty", "zeros", "negative", "strings", "nan"],
)
def test_bad_diurnal_list(spec: list[Any]) -> None:
    with pytest.raises(InputError, match="diurnal"):
        load_diurnal(spec)


def test_unknown_diurnal_preset() -> None:
    with pytest.raises(InputError, match="default"):
        load_diurnal("weekday")


@pytest.mark.parametrize(
    "text", ["local_hour,rate\n0,1\n", "local_hour,relative_rate\n0,abc\n"], ids=["col", "num"]
)
def test_bad_diurnal_csv(tmp_path: Path, text: str) -> None:
    p = tmp_path / "d.csv"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(InputError):
        load_diurnal(str(p))


# --- arrivals -------------------------------------------------------------------------------


def test_poisson_total_and_order(tmp_path: Path) -> None:
    s = _scenario(tmp_path, queries_per_day=200_000)
    d = generate(s, NO_SATS, np.random.default_rng(11))
    # Sum of independent Poisson counts is Poisson(N), N = 200,000 (the curve has mean 1
    # over a full day): standard deviation sqrt(N) ~ 447, allow 4 sigma.
    n_expected = 200_000
    assert abs(len(d) - n_expected) < 4 * np.sqrt(n_expected)
    assert np.all(np.diff(d.t_s) >= 0)
    assert d.t_s.min() >= 0 and d.t_s.max() < s.duration_s
    assert np.all(d.kind == QUERY) and np.all(d.satellite == -1)
    assert np.all((d.region >= 0) & (d.region < 100))
    for f in FIELDS:
        assert len(getattr(d, f)) == len(d), f


def test_partial_day_and_short_last_bin(tmp_path: Path) -> None:
    # 1.01 h = 60 whole minutes + a 36 s bin; flat curve: expected N = 48,000 * 1.01 / 24.
    s = _scenario(tmp_path, {"duration_h": 1.01}, queries_per_day=48_000, diurnal="flat")
    d = generate(s, NO_SATS, np.random.default_rng(3))
    n_expected = 48_000 * 1.01 / 24  # 2020; Poisson sd ~ 45, allow 4 sigma
    assert abs(len(d) - n_expected) < 4 * np.sqrt(n_expected)
    assert d.t_s.max() < 1.01 * 3600.0


def test_counts_proportional_to_population(tmp_path: Path) -> None:
    s = _scenario(tmp_path, queries_per_day=1_000_000)
    d = generate(s, NO_SATS, np.random.default_rng(5))
    pop = load_regions("top-100").population
    counts = np.bincount(d.region, minlength=100)
    # Over a whole day every region sees the whole diurnal cycle, so given the total the
    # counts are multinomial with p = population share: Pearson's statistic ~ chi2(99);
    # fail only beyond its 1e-6 upper quantile (~181).
    expected = len(d) * pop / pop.sum()
    stat = float(np.sum((counts - expected) ** 2 / expected))
    assert stat < chi2.isf(1e-6, df=99)
    # The ten largest cities (expected 18,000..35,000 each): Poisson relative sd
    # 1/sqrt(E) <= 0.75 %, so 5 sigma is within 4 %.
    for i in np.argsort(pop)[::-1][:10]:
        assert abs(counts[i] / expected[i] - 1) < 5 / np.sqrt(expected[i]), i


def test_hourly_histogram_follows_diurnal_curve(tmp_path: Path) -> None:
    regions = _regions_csv(tmp_path, [("Null Island", 0.0, 0.0, 1_000_000)])
    s = _scenario(tmp_path, queries_per_day=240_000, regions=regions, diurnal=PEAKED)
    d = generate(s, NO_SATS, np.random.default_rng(21))
    hist = _hourly(d.t_s)
    assert int(np.argmax(hist)) == 12  # longitude 0: local solar hour = UTC hour
    # Hours 2 (plateau at 1) and 8 (plateau at 3), expected ~4,700 and ~14,100 arrivals:
    # the ratio's relative sd is sqrt(1/4700 + 1/14100) ~ 1.7 %, so 10 % is ~6 sigma.
    assert hist[8] / hist[2] == pytest.approx(3.0, rel=0.10)
    # The quiet hours (plateau at 1, from 15 h) all lie well below the peak.
    assert hist[15:].max() < hist[12] / 5


def test_local_solar_time_shift(tmp_path: Path) -> None:
    regions = _regions_csv(tmp_path, [("West", 0.0, 0.0, 1.0), ("East", 0.0, 90.0, 1.0)])
    s = _scenario(tmp_path, queries_per_day=200_000, regions=regions, diurnal=PEAKED)
    d = generate(s, NO_SATS, np.random.default_rng(8))
    west, east = _hourly(d.t_s[d.region == 0]), _hourly(d.t_s[d.region == 1])
    assert int(np.argmax(west)) == 12
    assert int(np.argmax(east)) == 6  # lon +90 deg: local = UTC + 6 h, peak 6 h earlier
    # The whole east histogram is the west one moved 6 h earlier: correlation near 1.
    assert np.corrcoef(np.roll(west, -6), east)[0, 1] > 0.99


def test_start_hour_shifts_curve(tmp_path: Path) -> None:
    regions = _regions_csv(tmp_path, [("Null Island", 0.0, 0.0, 1.0)])
    s = _scenario(
        tmp_path,
        {"start": "2026-03-20T06:00:00Z"},
        queries_per_day=100_000,
        regions=regions,
        diurnal=PEAKED,
    )
    d = generate(s, NO_SATS, np.random.default_rng(4))
    assert int(np.argmax(_hourly(d.t_s))) == 6  # local noon is 6 h after a 06:00 UTC start


def test_zero_queries(tmp_path: Path) -> None:
    d = generate(_scenario(tmp_path, queries_per_day=0), NO_SATS, np.random.default_rng(1))
    assert len(d) == 0


# --- lengths --------------------------------------------------------------------------------


def test_lognormal_median_and_spread(tmp_path: Path) -> None:
    s = _scenario(tmp_path, queries_per_day=100_000, diurnal="flat", bytes_per_token=4.0)
    d = generate(s, NO_SATS, np.random.default_rng(2))
    n = len(d)
    # The sample median of a log-normal has log-sd sqrt(pi/2) * sigma / sqrt(n) ~ 0.4 %
    # here (sigma 1, n 1e5), plus < 0.4 % from rounding to whole tokens: 3 % is > 7 sigma.
    assert np.median(d.prompt_tokens) == pytest.approx(200, rel=0.03)
    assert np.median(d.output_tokens) == pytest.approx(150, rel=0.03)
    # Interquartile range of the log = 1.349 sigma (clipping touches only the far tails).
    for tokens, sigma in ((d.prompt_tokens, 1.0), (d.output_tokens, 0.8)):
        q1, q3 = np.percentile(np.log(tokens), [25, 75])
        assert (q3 - q1) / 1.349 == pytest.approx(sigma, rel=0.05)
    assert d.prompt_tokens.max() <= 4096 and d.output_tokens.max() <= 1024
    assert n > 0 and d.prompt_tokens.min() >= 1 and d.output_tokens.min() >= 1
    # sized by the one traffic model every planner uses (tests/test_traffic.py)
    np.testing.assert_array_equal(d.query_bytes, query_bytes_for(d.prompt_tokens, 4.0))
    np.testing.assert_array_equal(d.answer_bytes, answer_bytes_for(d.output_tokens))


def test_lognormal_clipped(tmp_path: Path) -> None:
    s = _scenario(
        tmp_path,
        queries_per_day=20_000,
        diurnal="flat",
        prompt_tokens={"median": 100, "sigma": 2.0, "max": 300},
        output_tokens={"median": 1, "sigma": 2.0, "max": 50},
    )
    d = generate(s, NO_SATS, np.random.default_rng(6))
    # P(draw > 300) = P(z > ln 3 / 2) ~ 29 % and P(draw < 0.5) = P(z < -ln 2 / 2) ~ 36 %:
    # thousands of draws land on each clip.
    assert d.prompt_tokens.max() == 300 and d.prompt_tokens.min() >= 1
    assert d.output_tokens.min() == 1 and d.output_tokens.max() == 50
    assert np.mean(d.prompt_tokens == 300) > 0.2
    assert d.prompt_tokens.dtype == np.int64


def test_trace_lengths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    rows = [(10, 5), (200, 80), (3000, 700)]
    (sub / "trace.csv").write_text(
        "# measured\nprompt_tokens,output_tokens\n" + "".join(f"{p},{o}\n" for p, o in rows),
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)  # the trace is found relative to the scenario, not the cwd
    s = parse_scenario(
        {"workload": {"queries_per_day": 30_000, "diurnal": "flat", "trace": "trace.csv"}},
        "test.toml",
        base_dir=sub,
    )
    d = generate(s, NO_SATS, np.random.default_rng(9))
    pairs = set(zip(d.prompt_tokens.tolist(), d.output_tokens.tolist(), strict=True))
    assert pairs == set(rows)  # rows are sampled whole, and all of them appear
    # Uniform choice of rows: each ~1/3, binomial sd sqrt(2/9/n) ~ 0.3 % for n ~ 30,000.
    for p, _ in rows:
        assert np.mean(d.prompt_tokens == p) == pytest.approx(1 / 3, abs=0.02)


@pytest.mark.parametrize(
    "text",
    [
        "prompt_tokens,answer_tokens\n10,5\n",  # missing column
        "prompt_tokens,output_tokens\n10,five\n",  # not an integer
        "prompt_tokens,output_tokens\n0,5\n",  # not >= 1
        "prompt_tokens,output_tokens\n",  # no rows
    ],
    ids=["column", "integer", "zero", "empty"],
)
def test_bad_trace(tmp_path: Path, text: str) -> None:
    (tmp_path / "trace.csv").write_text(text, encoding="utf-8")
    s = _scenario(tmp_path, queries_per_day=1000, trace="trace.csv")
    with pytest.raises(InputError, match=r"workload\.trace"):
        generate(s, NO_SATS, np.random.default_rng(1))


def test_missing_trace(tmp_path: Path) -> None:
    s = _scenario(tmp_path, queries_per_day=1000, trace="nope.csv")
    with pytest.raises(InputError, match="not found"):
        generate(s, NO_SATS, np.random.default_rng(1))


def test_regions_file_relative_to_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    _regions_csv(sub, [("A", 0.0, 0.0, 1.0)])
    monkeypatch.chdir(tmp_path)
    s = parse_scenario({"workload": {"regions": "cities.csv"}}, "test.toml", base_dir=sub)
    assert len(generate(s, NO_SATS, np.random.default_rng(1))) > 0


# --- models ---------------------------------------------------------------------------------


def test_model_shares(tmp_path: Path) -> None:
    models = [{"name": "qwen3-8b", "share": 0.8}, {"name": "qwen3-32b", "share": 0.2}]
    s = _scenario(tmp_path, {"models": models}, queries_per_day=100_000, diurnal="flat")
    d = generate(s, NO_SATS, np.random.default_rng(12))
    # Binomial fraction: sd sqrt(0.8 * 0.2 / 1e5) ~ 0.13 %, so 1 % is ~8 sigma.
    assert set(np.unique(d.model).tolist()) == {0, 1}
    assert np.mean(d.model == 0) == pytest.approx(0.8, abs=0.01)


# --- Earth observation ----------------------------------------------------------------------


def _eo_scenario(tmp_path: Path, queries_per_day: float = 0.0) -> Scenario:
    return _scenario(
        tmp_path,
        {
            "duration_h": 12.0,
            "models": [{"name": "qwen3-8b", "share": 0.8}, {"name": "qwen3-32b", "share": 0.2}],
            "workload": {
                "earth_observation": {
                    "images_per_day": 4000,
                    "model": "qwen3-32b",
                    "answer_bytes": 1500,
                    "prompt_tokens": 1000,
                    "output_tokens": 50,
                }
            },
        },
        queries_per_day=queries_per_day,
    )


def test_eo_jobs(tmp_path: Path) -> None:
    sats = np.array([3, 7, 11], dtype=np.int64)
    d = generate(_eo_scenario(tmp_path), sats, np.random.default_rng(13))
    # Poisson(images_per_day x days) = Poisson(2000): sd ~ 45, allow 4 sigma.
    assert abs(len(d) - 2000) < 4 * np.sqrt(2000)
    assert np.all(d.kind == EO) and np.all(d.region == -1)
    assert set(np.unique(d.satellite).tolist()) == {3, 7, 11}
    assert np.all(d.model == 1)  # qwen3-32b is the second model
    assert np.all(d.query_bytes == 0) and np.all(d.answer_bytes == 1500)
    assert np.all(d.prompt_tokens == 1000) and np.all(d.output_tokens == 50)
    assert np.all(np.diff(d.t_s) >= 0)
    assert d.t_s.min() >= 0 and d.t_s.max() < 12 * 3600.0
    # Capture times uniform over the window: each half holds ~1/2 (binomial sd ~1.1 %).
    assert np.mean(d.t_s < 6 * 3600.0) == pytest.approx(0.5, abs=0.05)


def test_eo_and_queries_merged(tmp_path: Path) -> None:
    sats = np.array([0, 1], dtype=np.int64)
    d = generate(_eo_scenario(tmp_path, 20_000), sats, np.random.default_rng(14))
    eo, q = d.kind == EO, d.kind == QUERY
    assert eo.sum() > 0 and q.sum() > 0 and eo.sum() + q.sum() == len(d)
    assert np.all(np.diff(d.t_s) >= 0)  # merged in arrival order
    assert np.all(d.satellite[q] == -1) and np.all(d.region[q] >= 0)
    assert np.all(d.region[eo] == -1) and np.all(np.isin(d.satellite[eo], sats))
    assert np.all(d.query_bytes[q] > 0) and np.all(d.query_bytes[eo] == 0)


def test_eo_without_satellites(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="earth_observation"):
        generate(_eo_scenario(tmp_path), NO_SATS, np.random.default_rng(1))


def test_no_eo_needs_no_satellites(tmp_path: Path) -> None:
    d = generate(_scenario(tmp_path, queries_per_day=1000), NO_SATS, np.random.default_rng(1))
    assert np.all(d.kind == QUERY)


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_same_demand(tmp_path: Path) -> None:
    s = _eo_scenario(tmp_path, 20_000)
    sats = np.array([2, 5], dtype=np.int64)
    a = generate(s, sats, np.random.default_rng(42))
    b = generate(s, sats, np.random.default_rng(42))
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    c = generate(s, sats, np.random.default_rng(43))
    assert len(c) != len(a) or not np.array_equal(c.t_s, a.t_s)
    assert not np.array_equal(c.prompt_tokens[:100], a.prompt_tokens[:100])
