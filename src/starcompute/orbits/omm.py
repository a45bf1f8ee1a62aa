"""CCSDS Orbit Mean-elements Messages as CelesTrak serves them (JSON and CSV).

Each record becomes an SGP4 record through ``sgp4init`` (WGS-72, improved mode), the
same path the Walker shells take.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from math import pi
from typing import Any

import numpy as np
from sgp4.api import WGS72, Satrec

from starcompute.errors import ElementSetError
from starcompute.times import parse_utc

REQUIRED_FIELDS = (
    "EPOCH",
    "MEAN_MOTION",
    "ECCENTRICITY",
    "INCLINATION",
    "RA_OF_ASC_NODE",
    "ARG_OF_PERICENTER",
    "MEAN_ANOMALY",
    "NORAD_CAT_ID",
)
_DEG = pi / 180.0
_SGP4_EPOCH = np.datetime64("1949-12-31T00:00:00", "ns")  # sgp4init counts days from here


def epoch_days_since_1949(epoch: np.datetime64) -> float:
    """Days from 1949-12-31 00:00 UTC, the epoch argument of ``sgp4init``."""
    delta_ns = (np.asarray(epoch, dtype="datetime64[ns]") - _SGP4_EPOCH).astype(np.int64)
    return float(delta_ns) / 86_400e9


MAX_CATALOG_NUMBER = 339_999  # the largest Alpha-5 catalogue number a TLE can hold


def _number(fields: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = fields.get(key, default)
    if value is None or value == "":
        if default is not None:
            return default
        raise ElementSetError(f"{where}: OMM field {key} is missing (required: {REQUIRED_FIELDS})")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ElementSetError(f"{where}: OMM field {key} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise ElementSetError(f"{where}: OMM field {key} must be a finite number, got {value!r}")
    return number


def satrec_from_omm(fields: Mapping[str, Any], where: str) -> tuple[str, Satrec]:
    """One OMM record (a dict of CCSDS keywords) -> (name, Satrec)."""
    missing = [k for k in REQUIRED_FIELDS if fields.get(k) in (None, "")]
    if missing:
        raise ElementSetError(f"{where}: OMM record lacks {', '.join(missing)}")
    epoch = parse_utc(str(fields["EPOCH"]))
    catalog = _number(fields, "NORAD_CAT_ID", where)
    if not 0 <= catalog <= MAX_CATALOG_NUMBER:  # found by fuzz/fuzz.py omm-json
        raise ElementSetError(f"{where}: NORAD_CAT_ID must be within 0..{MAX_CATALOG_NUMBER}")
    sat = Satrec()
    sat.sgp4init(
        WGS72,
        "i",
        int(catalog),
        epoch_days_since_1949(epoch),
        _number(fields, "BSTAR", where, 0.0),
        _number(fields, "MEAN_MOTION_DOT", where, 0.0) / (1036800.0 / pi),
        _number(fields, "MEAN_MOTION_DDOT", where, 0.0) / (2985984000.0 / 2.0 / pi),
        _number(fields, "ECCENTRICITY", where),
        _number(fields, "ARG_OF_PERICENTER", where) * _DEG,
        _number(fields, "INCLINATION", where) * _DEG,
        _number(fields, "MEAN_ANOMALY", where) * _DEG,
        _number(fields, "MEAN_MOTION", where) / 720.0 * pi,  # rev/day -> rad/min
        _number(fields, "RA_OF_ASC_NODE", where) * _DEG,
    )
    classification = str(fields.get("CLASSIFICATION_TYPE") or "U")
    if classification not in ("U", "C", "S"):  # found by fuzz/fuzz.py omm-json
        raise ElementSetError(
            f"{where}: CLASSIFICATION_TYPE must be U, C or S, got {classification!r}"
        )
    sat.classification = classification
    object_id = str(fields.get("OBJECT_ID") or "")
    if not object_id.isascii():
        raise ElementSetError(f"{where}: OBJECT_ID must be ASCII, got {object_id!r}")
    sat.intldesg = object_id[2:].replace("-", "")[:8]
    sat.elnum = int(_number(fields, "ELEMENT_SET_NO", where, 999.0)) % 10000
    sat.revnum = int(_number(fields, "REV_AT_EPOCH", where, 0.0)) % 100000
    name = str(fields.get("OBJECT_NAME") or fields["NORAD_CAT_ID"]).strip()
    return name, sat


def parse_omm_json(text: str, source: str = "<json>") -> list[tuple[str, Satrec]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ElementSetError(f"{source}: not valid JSON ({exc})") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ElementSetError(f"{source}: expected a JSON list of OMM records (objects)")
    if not data:
        raise ElementSetError(f"{source}: the OMM list is empty")
    return [satrec_from_omm(r, f"{source} record {i + 1}") for i, r in enumerate(data)]


def parse_omm_csv(text: str, source: str = "<csv>") -> list[tuple[str, Satrec]]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        missing = [k for k in REQUIRED_FIELDS if k not in header]
        if missing:
            raise ElementSetError(
                f"{source}: OMM CSV header lacks {', '.join(missing)} (got {', '.join(header)})"
            )
        rows = list(reader)
    except csv.Error as exc:  # found by fuzz/fuzz.py omm-csv: a stray carriage return
        raise ElementSetError(f"{source}: not a CSV file ({exc})") from None
    records = [satrec_from_omm(r, f"{source} row {i + 2}") for i, r in enumerate(rows)]
    if not records:
        raise ElementSetError(f"{source}: the OMM CSV has no rows")
    return records
