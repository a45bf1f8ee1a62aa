"""Ground stations: presets, comma-joined specs, custom CSV files and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from starcompute.errors import InputError, UnknownPresetError
from starcompute.ground.stations import (
    COLUMNS,
    DEFAULT_MIN_ELEVATION_DEG,
    GroundStation,
    load_stations,
    parse_stations_csv,
    station_presets,
)

HEADER = "name,lat_deg,lon_deg,alt_m,min_elevation_deg"
PRESET_SIZES = {"china": 5, "ksat": 2, "aws": 11, "top-100": 100}


def write_csv(tmp_path: Path, *rows: str, header: str = HEADER, name: str = "mine.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def one_line_error(spec: str, **kwargs: float) -> str:
    with pytest.raises(InputError) as info:
        load_stations(spec, **kwargs)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- presets -----------------------------------------------------------------------------------


def test_preset_names() -> None:
    assert set(PRESET_SIZES) <= set(station_presets())
    assert station_presets() == sorted(station_presets())


@pytest.mark.parametrize(("preset", "size"), PRESET_SIZES.items())
def test_preset_loads(preset: str, size: int) -> None:
    stations = load_stations(preset)
    assert len(stations) == size
    assert all(isinstance(s, GroundStation) for s in stations)
    assert len({s.name for s in stations}) == size
    for s in stations:
        assert -90 <= s.lat_deg <= 90
        assert -180 <= s.lon_deg <= 360
        assert -5 <= s.min_elevation_deg < 90


def test_ksat_is_polar() -> None:
    lats = sorted(s.lat_deg for s in load_stations("ksat"))
    assert lats[0] < -60  # TrollSat, Antarctica
    assert lats[1] > 75  # SvalSat, Svalbard


# --- comma-joining --------------------------------------------------------------------------------


def test_comma_joined_presets_keep_order() -> None:
    joined = load_stations("china,ksat,aws")
    expected = load_stations("china") + load_stations("ksat") + load_stations("aws")
    assert joined == expected
    assert len(joined) == 18


def test_comma_joining_ignores_blanks_and_empty_parts() -> None:
    assert load_stations(" china , ksat ,") == load_stations("china,ksat")


def test_preset_and_file_combine(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "Home,48.1,11.6,520,5")
    stations = load_stations(f"ksat,{path}")
    assert [s.name for s in stations][-1] == "Home"
    assert len(stations) == 3


# --- custom CSV ----------------------------------------------------------------------------------


def test_custom_csv(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "# a comment line",
        "Alpha,10.5,-20.25,100,5",
        "",
        "Beta,-33.9,151.2,0,12.5",
    )
    stations = load_stations(str(path))
    assert stations == [
        GroundStation("Alpha", 10.5, -20.25, 100.0, 5.0),
        GroundStation("Beta", -33.9, 151.2, 0.0, 12.5),
    ]


def test_custom_csv_optional_columns_and_extra_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "Gamma,1,2,note", header="name,lat_deg,lon_deg,source")
    (station,) = load_stations(str(path))
    assert station == GroundStation("Gamma", 1.0, 2.0, 0.0, DEFAULT_MIN_ELEVATION_DEG)


def test_custom_csv_header_with_spaces(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "Delta, 45 , 7 , 300 , 0", header=" , ".join(COLUMNS))
    (station,) = load_stations(str(path))
    assert station == GroundStation("Delta", 45.0, 7.0, 300.0, 0.0)


def test_parse_stations_csv_directly() -> None:
    (station,) = parse_stations_csv(f"{HEADER}\nEps,0,0,0,10\n", "inline")
    assert station.name == "Eps"


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lat", ["91", "-90.5"])
def test_latitude_out_of_range(tmp_path: Path, lat: str) -> None:
    path = write_csv(tmp_path, "Ok,0,0,0,10", f"Bad,{lat},0,0,10")
    message = one_line_error(str(path))
    assert "latitude" in message
    assert str(float(lat)) in message
    assert "-90..90" in message
    assert "'Bad'" in message
    assert str(path) in message


@pytest.mark.parametrize(
    ("field", "row", "allowed"),
    [
        ("longitude", "X,0,400,0,10", "-180..360"),
        ("altitude", "X,0,0,20000,10", "-500..9000"),
        ("min_elevation_deg", "X,0,0,0,90", "-5..90"),
    ],
)
def test_other_ranges(tmp_path: Path, field: str, row: str, allowed: str) -> None:
    message = one_line_error(str(write_csv(tmp_path, row)))
    assert field in message
    assert allowed in message


@pytest.mark.parametrize("column", ["name", "lat_deg", "lon_deg"])
def test_missing_column(tmp_path: Path, column: str) -> None:
    header = ",".join(c for c in COLUMNS if c != column)
    row = ",".join("X" if c == "name" else "1" for c in COLUMNS if c != column)
    message = one_line_error(str(write_csv(tmp_path, row, header=header)))
    assert f"lacks {column}" in message
    assert ",".join(COLUMNS) in message  # what is allowed


def test_non_number(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "Ok,1,2,0,10", "Bad,abc,2,0,10")
    message = one_line_error(str(path))
    assert "'abc'" in message
    assert "row 2" in message
    assert str(path) in message


def test_non_number_names_the_column(tmp_path: Path) -> None:
    message = one_line_error(str(write_csv(tmp_path, "Bad,abc,2,0,10")))
    assert "lat_deg" in message


def test_non_finite_number(tmp_path: Path) -> None:
    message = one_line_error(str(write_csv(tmp_path, "Bad,nan,2,0,10")))
    assert "finite" in message


def test_header_only(tmp_path: Path) -> None:
    assert "no stations" in one_line_error(str(write_csv(tmp_path)))


def test_duplicate_names_in_one_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "Twin,0,0,0,10", "Twin,1,1,0,10")
    message = one_line_error(str(path))
    assert "duplicate" in message
    assert "Twin" in message


def test_duplicate_names_across_presets() -> None:
    message = one_line_error("china,china")
    assert "duplicate station names" in message
    assert "Kashi" in message


def test_unknown_preset_lists_presets() -> None:
    with pytest.raises(UnknownPresetError) as info:
        load_stations("china,atlantis")
    error = info.value
    assert isinstance(error, InputError)
    assert isinstance(error, KeyError)
    message = str(error)
    assert "'atlantis'" in message
    assert "\n" not in message
    for preset in station_presets():
        assert preset in message


def test_missing_file() -> None:
    message = one_line_error("no/such/stations.csv")
    assert "no such file" in message


def test_empty_spec() -> None:
    assert "no stations" in one_line_error(" , ")


# --- elevation-mask override ---------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0.0, 5.0, 25.0, -2.0])
def test_min_elevation_override(mask: float) -> None:
    original = load_stations("china,ksat")
    overridden = load_stations("china,ksat", min_elevation_deg=mask)
    assert [s.min_elevation_deg for s in overridden] == [mask] * len(original)
    for a, b in zip(original, overridden, strict=True):
        assert (a.name, a.lat_deg, a.lon_deg, a.alt_m) == (b.name, b.lat_deg, b.lon_deg, b.alt_m)


def test_min_elevation_override_out_of_range() -> None:
    message = one_line_error("china", min_elevation_deg=95.0)
    assert "min_elevation_deg" in message
    assert "-5..90" in message
