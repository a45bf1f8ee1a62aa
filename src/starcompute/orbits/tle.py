"""Two-line element sets: strict parsing with errors that show the column template.

Accepts CelesTrak's 2-line and 3-line forms (the name line may carry Space-Track's
``0 `` prefix). Export writes 3-line TLEs through ``sgp4.exporter``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sgp4.api import Satrec
from sgp4.exporter import export_tle

from starcompute.errors import ElementSetError

LINE1_TEMPLATE = "1 NNNNNC NNNNNAAA NNNNN.NNNNNNNN +.NNNNNNNN +NNNNN-N +NNNNN-N N NNNNN"
LINE2_TEMPLATE = "2 NNNNN NNN.NNNN NNN.NNNN NNNNNNN NNN.NNNN NNN.NNNN NN.NNNNNNNNNNNNNN"
_SATNUM_COLUMNS = range(2, 7)  # alpha-5 catalogue numbers allow a letter in column 3


@dataclass(frozen=True, slots=True)
class TleRecord:
    """One element set: the name and its two lines (checksums verified)."""

    name: str
    line1: str
    line2: str

    def satrec(self) -> Satrec:
        return Satrec.twoline2rv(self.line1, self.line2)


def checksum(line: str) -> int:
    """TLE checksum of the first 68 columns: digits summed, '-' counts 1, modulo 10."""
    total = sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in line[:68])
    return total % 10


def _column_ok(template_char: str, char: str, column: int) -> bool:
    if template_char == "N":
        return char.isdigit() or char == " " or (column in _SATNUM_COLUMNS and char.isalnum())
    if template_char == "+":
        return char in "+- " or char.isdigit()
    if template_char == "-":
        return char in "+-" or char.isdigit()
    if template_char == "C":
        return char in "UCS "
    if template_char == "A":
        return char.isprintable()
    return char == template_char


def _template_error(line: str, template: str, where: str) -> ElementSetError | None:
    for column, (t, c) in enumerate(zip(template, line.ljust(len(template)), strict=True)):
        if not _column_ok(t, c, column):
            pointer = " " * column + "^"
            return ElementSetError(
                f"{where}: TLE line does not match the column template at column {column + 1}\n"
                f"  expected: {template}\n"
                f"  got:      {line}\n"
                f"            {pointer}"
            )
    return None


def validate_line(line: str, number: int, where: str) -> None:
    """Raise ``ElementSetError`` naming the first bad column of a TLE line."""
    template = LINE1_TEMPLATE if number == 1 else LINE2_TEMPLATE
    if len(line) != len(template):
        raise ElementSetError(
            f"{where}: TLE line {number} has {len(line)} characters, expected 69\n"
            f"  expected: {template}\n"
            f"  got:      {line}"
        )
    error = _template_error(line, template, where)
    if error is not None:
        raise error
    expected = checksum(line)
    if line[68] != str(expected):
        raise ElementSetError(
            f"{where}: TLE checksum mismatch on line {number}: last column says {line[68]}, "
            f"the line sums to {expected}\n  got:      {line}"
        )


def parse_tle(text: str, source: str = "<text>") -> list[TleRecord]:
    """Parse 2- or 3-line TLE text; every line is checked against the column template."""
    lines = [(i + 1, raw.rstrip()) for i, raw in enumerate(text.splitlines()) if raw.strip()]
    records: list[TleRecord] = []
    i = 0
    while i < len(lines):
        lineno, line = lines[i]
        name = ""
        if not line.startswith("1 "):
            if line.startswith("2 "):
                raise ElementSetError(f"{source}:{lineno}: TLE line 2 without a line 1 before it")
            name = line[2:].strip() if line.startswith("0 ") else line.strip()
            i += 1
        if i + 1 >= len(lines):
            raise ElementSetError(
                f"{source}:{lineno}: incomplete TLE: expected a line 1 and a line 2 "
                f"after {name or 'this line'!r}"
            )
        (n1, l1), (n2, l2) = lines[i], lines[i + 1]
        for number, (n, ln) in ((1, (n1, l1)), (2, (n2, l2))):
            if not ln.startswith(f"{number} "):
                raise ElementSetError(
                    f"{source}:{n}: expected TLE line {number} (starting '{number} '), got {ln!r}"
                )
            validate_line(ln, number, f"{source}:{n}")
        if l1[2:7] != l2[2:7]:
            raise ElementSetError(
                f"{source}:{n2}: catalogue numbers differ between line 1 ({l1[2:7]}) "
                f"and line 2 ({l2[2:7]})"
            )
        records.append(TleRecord(name or l1[2:7].strip(), l1, l2))
        i += 2
    if not records:
        raise ElementSetError(f"{source}: no TLE found (expected lines starting '1 ' and '2 ')")
    return records


def format_tle(name: str, satrec: Satrec) -> str:
    """One 3-line TLE (name line, line 1, line 2) for a satellite record."""
    line1, line2 = export_tle(satrec)
    return f"{name}\n{line1}\n{line2}\n"
