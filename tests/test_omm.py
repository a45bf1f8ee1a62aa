"""CCSDS OMM (CelesTrak JSON and CSV) against the same orbit as a TLE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sgp4.api import Satrec

from starcompute.errors import ElementSetError, InputError
from starcompute.orbits.constellation import load_constellation
from starcompute.orbits.omm import REQUIRED_FIELDS, parse_omm_csv, parse_omm_json
from starcompute.orbits.tle import format_tle

ISS_NAME = "ISS (ZARYA)"
ISS_L1 = "1 25544U 98067A   08264.51782528 -.00002182  00000-0 -11606-4 0  2927"
ISS_L2 = "2 25544  51.6416 247.4627 0006703 130.5360 325.0288 15.72125391563537"

OMM: dict[str, Any] = {
    "OBJECT_NAME": ISS_NAME,
    "OBJECT_ID": "1998-067A",
    "EPOCH": "2008-09-20T12:25:40.104192",
    "MEAN_MOTION": 15.72125391,
    "ECCENTRICITY": 0.0006703,
    "INCLINATION": 51.6416,
    "RA_OF_ASC_NODE": 247.4627,
    "ARG_OF_PERICENTER": 130.536,
    "MEAN_ANOMALY": 325.0288,
    "EPHEMERIS_TYPE": 0,
    "CLASSIFICATION_TYPE": "U",
    "NORAD_CAT_ID": 25544,
    "ELEMENT_SET_NO": 292,
    "REV_AT_EPOCH": 56353,
    "BSTAR": -1.1606e-5,
    "MEAN_MOTION_DOT": -2.182e-5,
    "MEAN_MOTION_DDOT": 0,
}
# CelesTrak writes CSV numbers without a leading zero, e.g. ".0006703"
CSV_TEXT = {**{k: str(v) for k, v in OMM.items()}, "ECCENTRICITY": ".0006703"}
HOURS = (0.0, 1.5, 6.0, 12.0, 24.0)


def omm_json(*records: dict[str, Any]) -> str:
    return json.dumps(list(records) or [OMM])


def omm_csv(*rows: dict[str, str]) -> str:
    rows = rows or (CSV_TEXT,)
    header = list(rows[0])
    body = [",".join(f'"{row[k]}"' if "," in row[k] else row[k] for k in header) for row in rows]
    return "\n".join([",".join(header), *body]) + "\n"


@pytest.fixture(scope="module")
def reference() -> Satrec:
    return Satrec.twoline2rv(ISS_L1, ISS_L2)


def assert_same_orbit(sat: Satrec, reference: Satrec, tol_km: float = 1.0) -> None:
    epoch = reference.jdsatepoch + reference.jdsatepochF
    assert sat.jdsatepoch + sat.jdsatepochF == pytest.approx(epoch, abs=1e-8)
    for hours in HOURS:
        jd, fr = reference.jdsatepoch, reference.jdsatepochF + hours / 24.0
        e1, r1, _ = sat.sgp4(jd, fr)
        e2, r2, _ = reference.sgp4(jd, fr)
        assert e1 == e2 == 0
        assert np.linalg.norm(np.subtract(r1, r2)) < tol_km, f"{hours} h after epoch"


# --- agreement with the TLE ------------------------------------------------------------------


def test_json_matches_tle(reference: Satrec) -> None:
    ((name, sat),) = parse_omm_json(omm_json())
    assert name == ISS_NAME
    assert sat.satnum == 25544
    assert_same_orbit(sat, reference)


def test_csv_matches_tle(reference: Satrec) -> None:
    ((name, sat),) = parse_omm_csv(omm_csv())
    assert name == ISS_NAME
    assert sat.satnum == 25544
    assert_same_orbit(sat, reference)


def test_json_single_object_is_accepted(reference: Satrec) -> None:
    ((name, sat),) = parse_omm_json(json.dumps(OMM))
    assert name == ISS_NAME
    assert_same_orbit(sat, reference)


def test_metadata_carried_into_the_record() -> None:
    ((_, sat),) = parse_omm_json(omm_json())
    assert sat.classification == "U"
    assert sat.intldesg == "98067A"
    assert sat.elnum == 292
    assert sat.revnum == 56353


def test_export_reproduces_the_tle() -> None:
    ((name, sat),) = parse_omm_json(omm_json())
    assert format_tle(name, sat) == f"{ISS_NAME}\n{ISS_L1}\n{ISS_L2}\n"


def test_optional_fields_default() -> None:
    minimal = {k: OMM[k] for k in REQUIRED_FIELDS}
    ((name, sat),) = parse_omm_json(omm_json(minimal))
    assert name == "25544"  # no OBJECT_NAME: the catalogue number
    assert sat.bstar == 0.0
    assert sat.classification == "U"


def test_several_records() -> None:
    other = {**OMM, "OBJECT_NAME": "OTHER", "NORAD_CAT_ID": 25545}
    records = parse_omm_json(omm_json(OMM, other))
    assert [n for n, _ in records] == [ISS_NAME, "OTHER"]
    assert [s.satnum for _, s in records] == [25544, 25545]
    csv_records = parse_omm_csv(omm_csv(CSV_TEXT, {k: str(v) for k, v in other.items()}))
    assert [n for n, _ in csv_records] == [ISS_NAME, "OTHER"]


# --- errors ----------------------------------------------------------------------------------


def _error(fn: Any, text: str) -> str:
    with pytest.raises(ElementSetError) as info:
        fn(text)
    assert isinstance(info.value, InputError)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_json_missing_field(field: str) -> None:
    record = {k: v for k, v in OMM.items() if k != field}
    message = _error(parse_omm_json, omm_json(record))
    assert field in message
    assert "record 1" in message


@pytest.mark.parametrize("field", ["MEAN_MOTION", "NORAD_CAT_ID"])
def test_csv_missing_field(field: str) -> None:
    row = {k: v for k, v in CSV_TEXT.items() if k != field}
    message = _error(parse_omm_csv, omm_csv(row))
    assert field in message
    assert "header lacks" in message


def test_csv_empty_value_is_missing() -> None:
    message = _error(parse_omm_csv, omm_csv({**CSV_TEXT, "INCLINATION": ""}))
    assert "INCLINATION" in message
    assert "row 2" in message


@pytest.mark.parametrize("field", ["MEAN_MOTION", "ECCENTRICITY", "NORAD_CAT_ID", "BSTAR"])
def test_json_non_number(field: str) -> None:
    message = _error(parse_omm_json, omm_json({**OMM, field: "fast"}))
    assert field in message
    assert "not a number" in message
    assert "'fast'" in message


def test_csv_non_number() -> None:
    message = _error(parse_omm_csv, omm_csv({**CSV_TEXT, "ECCENTRICITY": "0.0006.7"}))
    assert "ECCENTRICITY" in message
    assert "not a number" in message


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_number_is_rejected(value: str) -> None:
    with pytest.raises(InputError, match="MEAN_MOTION"):
        parse_omm_json(omm_json({**OMM, "MEAN_MOTION": value}))


def test_json_empty_list() -> None:
    assert "empty" in _error(parse_omm_json, "[]")


def test_csv_header_only() -> None:
    assert "no rows" in _error(parse_omm_csv, omm_csv().splitlines()[0] + "\n")


@pytest.mark.parametrize("text", ["", "[{", '{"EPOCH": }', "not json"])
def test_invalid_json(text: str) -> None:
    assert "not valid JSON" in _error(parse_omm_json, text)


@pytest.mark.parametrize("text", ["[1, 2]", '"text"', '[{"a": 1}, 3]'])
def test_json_not_a_list_of_objects(text: str) -> None:
    assert "list of OMM records" in _error(parse_omm_json, text)


def test_bad_epoch_is_input_error() -> None:
    with pytest.raises(InputError, match="yesterday"):
        parse_omm_json(omm_json({**OMM, "EPOCH": "yesterday"}))


# --- load_constellation picks the parser -------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("iss.json", omm_json()),
        ("iss.csv", omm_csv()),
        ("iss.tle", f"{ISS_NAME}\n{ISS_L1}\n{ISS_L2}\n"),
        ("iss.txt", f"0 {ISS_NAME}\n{ISS_L1}\n{ISS_L2}\n"),
        ("iss_omm.txt", omm_json()),  # JSON recognised by its content
        ("iss_csv.dat", omm_csv()),  # CSV recognised by its OBJECT_NAME header
    ],
)
def test_load_constellation_from_file(
    tmp_path: Path, reference: Satrec, filename: str, content: str
) -> None:
    path = tmp_path / filename
    path.write_text(content, encoding="utf-8")
    const = load_constellation(path)
    assert len(const) == 1
    assert const.name == path.stem
    assert const.names == [ISS_NAME]
    assert const.shells == ["imported"]
    assert const.plane.tolist() == [-1]
    assert_same_orbit(const.satrecs[0], reference)
    assert load_constellation(str(path)).names == [ISS_NAME]


def test_csv_suffix_uses_the_omm_csv_parser(tmp_path: Path) -> None:
    path = tmp_path / "elements.csv"
    path.write_text(f"{ISS_L1}\n{ISS_L2}\n", encoding="utf-8")
    with pytest.raises(ElementSetError, match="OMM CSV header lacks"):
        load_constellation(path)


def test_json_suffix_with_broken_json(tmp_path: Path) -> None:
    path = tmp_path / "elements.json"
    path.write_text('[{"OBJECT_NAME": ', encoding="utf-8")
    with pytest.raises(ElementSetError, match="not valid JSON"):
        load_constellation(path)


def test_json_suffix_with_non_json_content_reports_json(tmp_path: Path) -> None:
    path = tmp_path / "elements.json"
    path.write_text("<html>rate limited</html>\n", encoding="utf-8")
    with pytest.raises(ElementSetError, match="JSON"):
        load_constellation(path)


def test_duplicate_names_get_a_suffix(tmp_path: Path) -> None:
    path = tmp_path / "two.json"
    path.write_text(omm_json(OMM, {**OMM, "NORAD_CAT_ID": 25545}), encoding="utf-8")
    assert load_constellation(path).names == [ISS_NAME, f"{ISS_NAME}#2"]
