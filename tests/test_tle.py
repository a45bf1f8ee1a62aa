"""Two-line element sets: parsing, checksums, template errors and the export round trip."""

from __future__ import annotations

import numpy as np
import pytest

from starcompute.errors import ElementSetError, InputError
from starcompute.orbits.constellation import load_constellation
from starcompute.orbits.tle import (
    LINE1_TEMPLATE,
    LINE2_TEMPLATE,
    TleRecord,
    checksum,
    format_tle,
    parse_tle,
)

ISS_NAME = "ISS (ZARYA)"
ISS_L1 = "1 25544U 98067A   08264.51782528 -.00002182  00000-0 -11606-4 0  2927"
ISS_L2 = "2 25544  51.6416 247.4627 0006703 130.5360 325.0288 15.72125391563537"
ISS_3LE = f"{ISS_NAME}\n{ISS_L1}\n{ISS_L2}\n"


def _with_checksum(line: str) -> str:
    """Replace column 69 of ``line`` with its correct checksum."""
    return line[:68] + str(checksum(line))


def _replace(line: str, column: int, char: str) -> str:
    """``line`` with the character at 1-based ``column`` replaced."""
    return line[: column - 1] + char + line[column:]


# --- parsing -------------------------------------------------------------------------------


def test_parse_three_line() -> None:
    (rec,) = parse_tle(ISS_3LE)
    assert rec == TleRecord(ISS_NAME, ISS_L1, ISS_L2)


def test_parse_three_line_with_space_track_zero_prefix() -> None:
    (rec,) = parse_tle(f"0 {ISS_NAME}\n{ISS_L1}\n{ISS_L2}\n")
    assert rec.name == ISS_NAME
    assert (rec.line1, rec.line2) == (ISS_L1, ISS_L2)


def test_parse_two_line_names_by_catalogue_number() -> None:
    (rec,) = parse_tle(f"{ISS_L1}\n{ISS_L2}\n")
    assert rec.name == "25544"
    assert (rec.line1, rec.line2) == (ISS_L1, ISS_L2)


def test_parse_tolerates_blank_lines_crlf_and_trailing_spaces() -> None:
    text = f"\r\n{ISS_NAME}  \r\n\r\n{ISS_L1}   \r\n{ISS_L2}\r\n\r\n"
    (rec,) = parse_tle(text)
    assert rec == TleRecord(ISS_NAME, ISS_L1, ISS_L2)


def test_parse_several_records_mixed_forms() -> None:
    other_l1 = _with_checksum(_replace(ISS_L1, 7, "9"))
    other_l2 = _with_checksum(_replace(ISS_L2, 7, "9"))
    text = f"{ISS_3LE}{other_l1}\n{other_l2}\n0 THIRD\n{ISS_L1}\n{ISS_L2}\n"
    records = parse_tle(text)
    assert [r.name for r in records] == [ISS_NAME, "25549", "THIRD"]


def test_record_satrec_has_the_elements() -> None:
    sat = parse_tle(ISS_3LE)[0].satrec()
    assert sat.satnum == 25544
    assert sat.epochyr == 8
    assert sat.epochdays == pytest.approx(264.51782528)
    assert np.degrees(sat.inclo) == pytest.approx(51.6416)
    assert np.degrees(sat.nodeo) == pytest.approx(247.4627)
    assert sat.ecco == pytest.approx(0.0006703)
    assert sat.no_kozai * 1440 / (2 * np.pi) == pytest.approx(15.72125391)


def test_format_tle_reproduces_the_lines() -> None:
    sat = parse_tle(ISS_3LE)[0].satrec()
    assert format_tle(ISS_NAME, sat) == ISS_3LE


# --- checksum ------------------------------------------------------------------------------


@pytest.mark.parametrize("line", [ISS_L1, ISS_L2])
def test_checksum_of_known_lines(line: str) -> None:
    assert checksum(line) == int(line[68]) == 7


def test_checksum_rules() -> None:
    assert checksum("-" * 68) == 68 % 10  # a minus sign counts 1
    assert checksum("+" * 68) == 0  # a plus sign counts 0
    assert checksum("ABC .xyz" * 8 + "ABCD") == 0  # letters, blanks, periods count 0
    assert checksum("9" * 68 + "12345") == (9 * 68) % 10  # only the first 68 columns


# --- errors --------------------------------------------------------------------------------


def _error(text: str, source: str = "<text>") -> str:
    with pytest.raises(ElementSetError) as info:
        parse_tle(text, source)
    assert isinstance(info.value, InputError)
    assert isinstance(info.value, ValueError)
    return str(info.value)


@pytest.mark.parametrize(
    ("line1", "line2", "number", "length"),
    [
        (ISS_L1[:-1], ISS_L2, 1, 68),
        (ISS_L1, ISS_L2 + "0", 2, 70),
        (ISS_L1[:40], ISS_L2, 1, 40),
    ],
)
def test_wrong_length(line1: str, line2: str, number: int, length: int) -> None:
    message = _error(f"{ISS_NAME}\n{line1}\n{line2}\n")
    assert f"line {number} has {length} characters, expected 69" in message
    assert (LINE1_TEMPLATE if number == 1 else LINE2_TEMPLATE) in message


@pytest.mark.parametrize(
    ("number", "column", "char"),
    [
        (1, 8, "X"),  # classification must be U, C, S or blank
        (1, 24, "5"),  # the epoch's decimal point
        (1, 34, "X"),  # sign of the first derivative
        (1, 63, "A"),  # ephemeris type
        (2, 12, ","),  # inclination's decimal point
        (2, 30, "Z"),  # eccentricity digits
    ],
)
def test_wrong_column_shows_template_line_and_caret(number: int, column: int, char: str) -> None:
    lines = [ISS_L1, ISS_L2]
    bad = _replace(lines[number - 1], column, char)
    lines[number - 1] = bad
    message = _error(f"{ISS_NAME}\n{lines[0]}\n{lines[1]}\n", "iss.tle")
    template = LINE1_TEMPLATE if number == 1 else LINE2_TEMPLATE
    assert template in message
    assert f"column {column}" in message
    assert f"iss.tle:{number + 1}" in message
    rows = message.splitlines()
    got = next(i for i, row in enumerate(rows) if bad in row)
    caret_row = rows[got + 1]
    assert caret_row.strip() == "^"
    caret = caret_row.index("^") - rows[got].index(bad)
    assert caret == column - 1
    assert bad[caret] == char


def test_column_template_text() -> None:
    assert LINE1_TEMPLATE.startswith("1 NNNNNC NNNNNAAA ")
    assert len(LINE1_TEMPLATE) == len(LINE2_TEMPLATE) == 69


@pytest.mark.parametrize("number", [1, 2])
def test_checksum_mismatch(number: int) -> None:
    lines = [ISS_L1, ISS_L2]
    lines[number - 1] = _replace(lines[number - 1], 69, "3")
    message = _error("\n".join(lines))
    assert "checksum" in message
    assert f"line {number}" in message
    assert "says 3" in message
    assert "sums to 7" in message


def test_changed_digit_is_caught_by_the_checksum() -> None:
    message = _error(f"{_replace(ISS_L1, 20, '5')}\n{ISS_L2}\n")  # epoch day 264 -> 265
    assert "checksum" in message


def test_catalogue_numbers_differ() -> None:
    line2 = _with_checksum(_replace(ISS_L2, 7, "5"))  # 25544 -> 25545, valid checksum
    message = _error(f"{ISS_NAME}\n{ISS_L1}\n{line2}\n", "x.tle")
    assert "catalogue numbers differ" in message
    assert "25544" in message
    assert "25545" in message
    assert "x.tle:3" in message


def test_line2_without_line1() -> None:
    message = _error(f"{ISS_L2}\n")
    assert "line 2 without a line 1" in message


def test_name_then_line2_expects_line1() -> None:
    message = _error(f"{ISS_NAME}\n{ISS_L2}\n{ISS_L1}\n")
    assert "expected TLE line 1" in message


def test_incomplete_record() -> None:
    message = _error(f"{ISS_NAME}\n{ISS_L1}\n")
    assert "incomplete TLE" in message


@pytest.mark.parametrize("text", ["", "\n\n", "   \n \t\n"])
def test_empty_text(text: str) -> None:
    message = _error(text, "empty.tle")
    assert "no TLE found" in message
    assert "empty.tle" in message


# --- export round trip -----------------------------------------------------------------------


def test_constellation_tle_round_trip() -> None:
    const = load_constellation("three-body-12")
    text = const.to_tle()
    assert len(text.splitlines()) == 3 * len(const) == 36
    records = parse_tle(text)
    assert [r.name for r in records] == const.names
    for original, record in zip(const.satrecs, records, strict=True):
        again = record.satrec()
        assert again.satnum == original.satnum
        jd, fr = original.jdsatepoch, original.jdsatepochF + 1.0 / 24.0
        e1, r1, _ = original.sgp4(jd, fr)
        e2, r2, _ = again.sgp4(jd, fr)
        assert e1 == e2 == 0
        assert np.linalg.norm(np.subtract(r1, r2)) < 1.0
