"""Scenario files: one TOML file says everything a simulation needs, validated.

Every key, its default, its allowed range and its meaning is in ``SCHEMA`` below (also
printed by ``starcompute simulate --keys`` and listed in docs/scenario.md). A bad value
names the key, the value and what is allowed; an unknown key is an error (with the
closest known keys), never silently ignored.

Layout (all sections optional except what has no default)::

    name, description, start, duration_h, drain_h, step_s, seed
    [constellation]  preset | file | [[constellation.shell]], roles, hardware
    [ground]         stations, handoff, fiber_km_s, min_elevation_deg, antennas, handover_s
    [links]          isl_max_range_km, processing_delay_s, ground_rate_bps, uplink_rate_bps,
                     isl_rate_bps, isl_terminals
    [[models]]       name, quant, share, placement
    [workload]       queries_per_day, regions, diurnal, prompt_tokens, output_tokens,
                     trace, bytes_per_token, deadline_s
    [workload.earth_observation]  images_per_day, model, image_bytes, answer_bytes,
                     prompt_tokens, output_tokens
    [scheduler]      policy, max_batch, candidates, admission
    [compute]        infinite
    [power]          background_load, initial_soc
    [[failures]]     kind, target, at_h, minutes, cause
"""

from __future__ import annotations

import copy
import difflib
import json
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from starcompute.compute.cards import Quant
from starcompute.errors import InputError
from starcompute.links.antennas import DEFAULT_HANDOVER_S
from starcompute.mission.failures import KINDS, OutageKind
from starcompute.mission.policy import DEFAULT_POLICY, POLICIES
from starcompute.mission.traffic import TEXT_BYTES_PER_TOKEN
from starcompute.times import parse_utc


@dataclass(frozen=True, slots=True)
class Key:
    """One scenario key: default, meaning, and what is allowed."""

    default: Any
    doc: str
    kind: str = "float"  # float | int | str | bool | list | table | str-or-list
    lo: float | None = None
    hi: float | None = None
    choices: Collection[str] = ()  # a tuple, or a live registry (e.g. the policies)

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.lo is not None and self.hi is not None:
            return f"{self.kind} within {self.lo:g}..{self.hi:g}"
        if self.lo is not None:
            return f"{self.kind} >= {self.lo:g}"
        return self.kind


LOGNORMAL = {"median": 1.0, "sigma": 0.0, "max": 1.0}

SCHEMA: dict[str, dict[str, Key]] = {
    "": {
        "name": Key("scenario", "name shown in reports", "str"),
        "description": Key("", "free text", "str"),
        "start": Key("2026-03-20T00:00:00Z", "UTC start of the simulated day (ISO-8601)", "str"),
        "duration_h": Key(24.0, "hours of arrivals", lo=0.01, hi=240.0),
        "drain_h": Key(1.0, "extra hours to deliver queries still in flight", lo=0.0, hi=48.0),
        "step_s": Key(60.0, "routing time step (store-and-forward resolution)", lo=1.0, hi=600.0),
        "seed": Key(1, "random seed (same seed, same results)", "int", lo=0),
    },
    "constellation": {
        "preset": Key("three-body-12", "constellation preset (starcompute constellation)", "str"),
        "file": Key("", "constellation TOML/TLE/OMM file instead of a preset", "str"),
        "shell": Key(
            [], "inline [[constellation.shell]] Walker shells instead of a preset", "list"
        ),
        "roles": Key({}, "role per shell name: inference | training", "table"),
        "hardware": Key({}, "hardware profile per shell name", "table"),
    },
    "ground": {
        "stations": Key("china", "station presets/files, comma-separated", "str"),
        "handoff": Key(
            "nearest",
            "nearest: a query enters at the station nearest its city, over fibre; "
            "any: at whichever station gets it to orbit first (instant backhaul)",
            "str",
            choices=("nearest", "any"),
        ),
        "fiber_km_s": Key(200_000.0, "speed in terrestrial fibre (2/3 c)", lo=1.0),
        "min_elevation_deg": Key(
            -1.0, "override stations' minimum elevation (-1: keep)", lo=-1.0, hi=90.0
        ),
        "antennas": Key(
            "stations",
            "stations: each station's antenna count (presets/CSV), one satellite per antenna; "
            "unlimited: every pass in view is a link",
            "str",
            choices=("stations", "unlimited"),
        ),
        "handover_s": Key(
            DEFAULT_HANDOVER_S,
            "an antenna's slew + re-acquisition between two passes (assumed)",
            lo=0.0,
        ),
    },
    "links": {
        "isl_max_range_km": Key(0.0, "laser link range (0: links.toml default)", lo=0.0),
        "processing_delay_s": Key(-1.0, "per-hop processing (-1: links.toml default)", lo=-1.0),
        "ground_rate_bps": Key(0.0, "downlink rate (0: links.toml default)", lo=0.0),
        "uplink_rate_bps": Key(0.0, "uplink rate (0: links.toml default)", lo=0.0),
        "isl_rate_bps": Key(0.0, "laser link rate (0: links.toml default)", lo=0.0),
        "isl_terminals": Key(
            -1,
            "laser terminals per satellite: 4 +grid, 2-3 in-plane ring (-1: links.toml)",
            "int",
            lo=-1,
        ),
    },
    "workload": {
        "queries_per_day": Key(
            10_000.0, "mean LLM queries per day over all regions", lo=0.0, hi=1e8
        ),
        "regions": Key(
            "top-100", "user regions: demand preset or CSV name,lat_deg,lon_deg,population", "str"
        ),
        "diurnal": Key("default", "rate by local hour: preset name or 24 numbers", "str-or-list"),
        "prompt_tokens": Key(
            {"median": 200.0, "sigma": 1.0, "max": 4096.0}, "log-normal prompt length", "table"
        ),
        "output_tokens": Key(
            {"median": 150.0, "sigma": 0.8, "max": 1024.0}, "log-normal answer length", "table"
        ),
        "trace": Key("", "CSV of prompt_tokens,output_tokens rows to sample instead", "str"),
        "bytes_per_token": Key(
            TEXT_BYTES_PER_TOKEN,
            "bytes of prompt text per token (a query is its sealed job's framing plus its "
            "text; answers are booked as every path books them: mission/traffic.py)",
            lo=0.0,
            hi=1e6,
        ),
        "deadline_s": Key(3600.0, "a query not deliverable within this is rejected", lo=1.0),
        "earth_observation": Key({}, "[workload.earth_observation] table", "table"),
    },
    "earth_observation": {
        "images_per_day": Key(0.0, "images captured and analysed in orbit per day", lo=0.0, hi=1e8),
        "model": Key("", "model that analyses them (default: the first of [[models]])", "str"),
        "image_bytes": Key(1.2e9, "raw image size, the downlink it would need", lo=0.0),
        "answer_bytes": Key(2000.0, "answer downlinked instead", lo=0.0),
        "prompt_tokens": Key(1280, "image + instruction tokens", "int", lo=1),
        "output_tokens": Key(64, "answer tokens", "int", lo=1),
    },
    "models": {
        "name": Key("qwen3-8b", "model card (starcompute hardware estimate --help)", "str"),
        "quant": Key(
            "int8",
            "weights precision",
            "str",
            choices=tuple(q.value for q in Quant),
        ),
        "share": Key(1.0, "fraction of queries asking for this model", lo=0.0, hi=1.0),
        "placement": Key(
            "all", "inference satellites holding it: all, or shell names", "str-or-list"
        ),
    },
    "scheduler": {
        "policy": Key(DEFAULT_POLICY, "serving policy", "str", choices=POLICIES),
        "max_batch": Key(8, "queries per batch slot", "int", lo=1, hi=1024),
        "candidates": Key(
            16, "satellites considered per query (best by up + down delay)", "int", lo=1, hi=256
        ),
        "admission": Key(True, "power and thermal admission control", "bool"),
    },
    "compute": {
        "infinite": Key(False, "zero inference time and no queues (tests light time)", "bool"),
    },
    "power": {
        "background_load": Key(
            0.1, "accelerator load outside queries (admission model)", lo=0.0, hi=1.0
        ),
        "initial_soc": Key(1.0, "battery state of charge at the start", lo=0.0, hi=1.0),
    },
    "failures": {
        "kind": Key(OutageKind.SATELLITE.value, "what fails", "str", choices=KINDS),
        "target": Key("", "a satellite or station name, or A~B for a link", "str"),
        "at_h": Key(0.0, "hours after the start when it fails", lo=0.0, hi=288.0),
        "minutes": Key(0.0, "how long it is out (0: for good)", lo=0.0, hi=1e6),
        "cause": Key("outage", "lost | battery | outage | ... (reports)", "str"),
    },
}
TOP_SECTIONS = ("constellation", "ground", "links", "workload", "scheduler", "compute", "power")


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario: ``values[section][key]`` and the ``models`` list."""

    values: dict[str, dict[str, Any]]
    models: tuple[dict[str, Any], ...]
    source: str = "<defaults>"
    base_dir: Path = field(default_factory=Path.cwd)
    failures: tuple[dict[str, Any], ...] = ()  # [[failures]]: outages to plan around

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.values[section]

    @property
    def start(self) -> np.datetime64:
        return parse_utc(str(self.values[""]["start"]))

    @property
    def duration_s(self) -> float:
        return float(self.values[""]["duration_h"]) * 3600.0

    @property
    def horizon_s(self) -> float:
        """Arrivals plus drain, rounded up to whole steps."""
        step = float(self.values[""]["step_s"])
        total = self.duration_s + float(self.values[""]["drain_h"]) * 3600.0
        return float(np.ceil(total / step) * step)

    def path(self, value: str) -> Path:
        """A file named in the scenario, relative to the scenario file."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def spec(self, value: str, presets: list[str]) -> str:
        """A comma-joined list of presets and files, files made relative to the scenario
        file (what ``load_stations`` and ``load_regions`` take)."""
        parts = [p.strip() for p in value.split(",")]
        return ",".join(p if p in presets or not p else str(self.path(p)) for p in parts)

    def with_overrides(self, overrides: dict[str, Any]) -> Scenario:
        """A copy with values replaced, validated. Keys are dotted paths: ``seed``,
        ``scheduler.policy``, ``workload.earth_observation.images_per_day``, or
        ``models[1].placement`` for one of the [[models]]."""
        doc = self.to_doc()
        for dotted, value in overrides.items():
            *sections, key = dotted.split(".")
            table = doc
            for part in sections:
                table = _child(table, part, dotted)
            table[key] = value
        return parse_scenario(doc, self.source, self.base_dir)

    def to_doc(self) -> dict[str, Any]:
        """The scenario as a fresh TOML-shaped document (a deep copy: edit it freely)."""
        doc: dict[str, Any] = copy.deepcopy(dict(self.values[""]))
        for section in TOP_SECTIONS:
            doc[section] = copy.deepcopy(self.values[section])
        doc["workload"]["earth_observation"] = copy.deepcopy(self.values["earth_observation"])
        doc["models"] = copy.deepcopy([dict(m) for m in self.models])
        if self.failures:
            doc["failures"] = copy.deepcopy([dict(f) for f in self.failures])
        return doc


def _child(table: dict[str, Any], part: str, dotted: str) -> dict[str, Any]:
    """The sub-table ``part`` (``name`` or ``name[i]`` for an array of tables)."""
    name, _, index = part.partition("[")
    if index:
        items = table.get(name)
        try:
            child = items[int(index.rstrip("]"))] if isinstance(items, list) else None
        except (ValueError, IndexError):
            child = None
        if not isinstance(child, dict):
            raise InputError(f"cannot set {dotted!r}: no table {part}")
        return child
    child = table.setdefault(name, {})
    if not isinstance(child, dict):
        raise InputError(f"cannot set {dotted!r}: {name!r} is not a table")
    return child


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario TOML file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"scenario file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{p}: not a UTF-8 text file") from None
    return scenario_from_text(text, str(p), p.resolve().parent)


def scenario_from_text(
    text: str, source: str = "<scenario>", base_dir: Path | None = None
) -> Scenario:
    """Parse and validate scenario TOML text."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source}: invalid TOML ({exc})") from None
    return parse_scenario(doc, source, base_dir)


def parse_scenario(
    doc: dict[str, Any], source: str = "<scenario>", base_dir: Path | None = None
) -> Scenario:
    """Validate a parsed scenario; defaults fill what is missing."""
    top_keys = set(SCHEMA[""]) | set(TOP_SECTIONS) | {"models", "failures"}
    _unknown(doc, top_keys, source, "")
    values = {"": _section(doc, "", source)}
    for section in TOP_SECTIONS:
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise InputError(f"{source}: [{section}] must be a table, got {table!r}")
        values[section] = _section(table, section, source)
    eo = values["workload"]["earth_observation"]
    values["earth_observation"] = _section(
        eo, "earth_observation", source, "workload.earth_observation"
    )
    models = doc.get("models", [{}])
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
        raise InputError(f"{source}: models must be one or more [[models]] tables")
    parsed = tuple(_section(m, "models", source, f"models[{i}]") for i, m in enumerate(models))
    _check_models(parsed, source)
    eo_model = values["earth_observation"]["model"]
    if eo_model and eo_model not in [m["name"] for m in parsed]:
        raise InputError(
            f"{source}: workload.earth_observation.model = {eo_model!r} is not one of the "
            f"[[models]] ({', '.join(m['name'] for m in parsed)})"
        )
    _check_lognormal(values["workload"], source)
    _check_diurnal(values["workload"]["diurnal"], source)
    failures = _failures(doc.get("failures", []), source)
    scenario = Scenario(values, parsed, source, base_dir or Path.cwd(), failures)
    try:
        scenario.start  # noqa: B018 - parse the start time now, so a bad one fails here
    except InputError as exc:
        raise InputError(f"{source}: start = {values['']['start']!r}: {exc}") from None
    return scenario


def _unknown(table: dict[str, Any], known: set[str], source: str, where: str) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=2, cutoff=0.5)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            place = f"{where}.{key}" if where else key
            raise InputError(
                f"{source}: unknown key {place!r}{hint} (allowed: {', '.join(sorted(known))})"
            )


def _section(
    table: dict[str, Any], section: str, source: str, where: str | None = None
) -> dict[str, Any]:
    where = section if where is None else where
    schema = SCHEMA[section]
    if section == "":
        table = {k: v for k, v in table.items() if k in schema}
    else:
        _unknown(table, set(schema), source, where)
    return {
        key: _value(table.get(key, spec.default), spec, source, where, key)
        for key, spec in schema.items()
    }


def _value(value: Any, spec: Key, source: str, where: str, key: str) -> Any:
    name = f"{where}.{key}" if where else key

    def bad(why: str = "") -> InputError:
        return InputError(
            f"{source}: {name} = {value!r} is not allowed{why}: expected {spec.allowed()}"
        )

    kind = spec.kind
    if kind in ("float", "int"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        if kind == "int" and not float(value).is_integer():
            raise bad()
        number = int(value) if kind == "int" else float(value)
        if not np.isfinite(number):
            raise bad()
        if (spec.lo is not None and number < spec.lo) or (spec.hi is not None and number > spec.hi):
            raise bad()
        return number
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind == "str":
        if not isinstance(value, str) or (spec.choices and value not in spec.choices):
            raise bad()
        return value
    if kind == "str-or-list":
        if isinstance(value, str) or (isinstance(value, list) and value):
            return value
        raise bad()
    if kind == "table":
        if not isinstance(value, dict):
            raise bad()
        return dict(value)
    if kind == "list":
        if not isinstance(value, list):
            raise bad()
        return list(value)
    raise AssertionError(kind)


def _failures(items: Any, source: str) -> tuple[dict[str, Any], ...]:
    """[[failures]] tables; each names its target (checked against the constellation
    and stations when the world is built)."""
    if not isinstance(items, list) or not all(isinstance(f, dict) for f in items):
        raise InputError(f"{source}: failures must be [[failures]] tables")
    out = []
    for i, table in enumerate(items):
        f = _section(table, "failures", source, f"failures[{i}]")
        if not f["target"]:
            raise InputError(f"{source}: failures[{i}].target is missing (a name, or A~B)")
        if ("~" in f["target"]) != (f["kind"] == "link"):
            raise InputError(
                f"{source}: failures[{i}]: a link is named A~B, a {f['kind']} by its name; "
                f"got {f['kind']} {f['target']!r}"
            )
        out.append(f)
    return tuple(out)


def _check_models(models: tuple[dict[str, Any], ...], source: str) -> None:
    from starcompute.compute.cards import load_card

    names = [m["name"] for m in models]
    if len(set(names)) != len(names):
        raise InputError(f"{source}: models lists a model twice: {names}")
    for i, m in enumerate(models):
        try:
            load_card(m["name"])
        except InputError as exc:
            raise InputError(f"{source}: models[{i}].name: {exc}") from None
    total = sum(m["share"] for m in models)
    if not abs(total - 1.0) <= 1e-6:
        raise InputError(f"{source}: models' shares must add up to 1, got {total:g}")


def _check_lognormal(workload: dict[str, Any], source: str) -> None:
    for key in ("prompt_tokens", "output_tokens"):
        table = {**SCHEMA["workload"][key].default, **workload[key]}
        _unknown(workload[key], set(LOGNORMAL), source, f"workload.{key}")
        for sub, lo in (("median", 1.0), ("sigma", 0.0), ("max", 1.0)):
            v = table[sub]
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float)
                or not (np.isfinite(v) and v >= lo)
            ):
                raise InputError(
                    f"{source}: workload.{key}.{sub} = {v!r} is not allowed: "
                    f"expected a number >= {lo:g}"
                )
        if table["median"] > table["max"]:
            raise InputError(
                f"{source}: workload.{key}: median {table['median']:g} exceeds max {table['max']:g}"
            )
        workload[key] = table


def _check_diurnal(curve: Any, source: str) -> None:
    """A list must be 24 non-negative numbers with a positive sum (files: when read)."""
    if isinstance(curve, str):
        return
    ok = (
        len(curve) == 24
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in curve)
        and all(np.isfinite(v) and v >= 0 for v in curve)
        and sum(curve) > 0
    )
    if not ok:
        raise InputError(
            f"{source}: workload.diurnal = {curve!r} is not allowed: expected a preset name "
            "or 24 non-negative numbers (one per local hour) with a positive sum"
        )


def describe_keys() -> list[dict[str, str]]:
    """Every key with its default, allowed values and meaning (for --keys and the docs)."""
    rows = []
    for section, keys in SCHEMA.items():
        prefix = {
            "": "",
            "earth_observation": "workload.earth_observation.",
            "models": "models[].",
            "failures": "failures[].",
        }.get(section, f"{section}.")
        for key, spec in keys.items():
            if section == "workload" and key == "earth_observation":
                continue
            rows.append(
                {
                    "key": prefix + key,
                    "default": json.dumps(spec.default),
                    "allowed": spec.allowed(),
                    "doc": spec.doc,
                }
            )
    return rows
