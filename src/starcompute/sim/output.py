"""Writing a simulation's results: summary.json, Parquet tables and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from starcompute.errors import InputError
from starcompute.sim.metrics import Columns, SimResult

TABLES = ("requests", "satellites", "series", "stations", "allocations")


def summary_json(summary: dict[str, Any]) -> str:
    """The summary as stable JSON text (sorted keys: same run, same bytes)."""
    return json.dumps(summary, indent=2, sort_keys=True, allow_nan=True) + "\n"


def write_outputs(result: SimResult, out_dir: Path, report: bool = True) -> dict[str, Path]:
    """summary.json, <table>.parquet for each table, and report.html; returns the paths."""
    out_dir = prepare_dir(out_dir)
    paths = {"summary": out_dir / "summary.json"}
    paths["summary"].write_text(summary_json(result.summary), encoding="utf-8")
    for name in TABLES:
        paths[name] = out_dir / f"{name}.parquet"
        pq.write_table(to_arrow(getattr(result, name)), paths[name])
    if report:
        from starcompute.sim.report import write_report

        paths["report"] = write_report(result, out_dir / "report.html")
    return paths


def prepare_dir(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create --out folder {out_dir}: {exc.strerror}") from None
    return out_dir


def to_arrow(columns: Columns) -> pa.Table:
    return pa.table(
        {
            k: pa.array(v.tolist() if v.dtype == object else v)
            for k, v in columns.items()
            if np.ndim(v) == 1
        }
    )
