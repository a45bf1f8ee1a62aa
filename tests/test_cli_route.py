"""``starcompute route`` / ``routes`` from the command line: outputs and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from starcompute.cli.main import main

NET = ["--constellation", "three-body-12", "--stations", "china,ksat"]
UP_AT = "2025-11-20T03:45:00Z"  # Kashi and SvalSat both see the ring
DOWN_AT = "2025-11-20T00:00:00Z"  # Kashi sees no satellite


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_route_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, "route", *NET, "--from", "Kashi", "--to", "KSAT-SvalSat", "--at", UP_AT, "--json"
    )
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"path", "hops", "one_way_delay_ms", "arrival"}
    assert doc["path"][0] == "Kashi" and doc["path"][-1] == "KSAT-SvalSat"
    assert len(doc["hops"]) == len(doc["path"]) - 1
    for hop in doc["hops"]:
        assert set(hop) == {"from", "to", "depart", "arrive", "range_km"}
        assert hop["depart"].endswith("Z") and hop["arrive"] >= hop["depart"]
    assert 5.0 < doc["one_way_delay_ms"] < 100.0


def test_no_path_exits_1_with_next_time(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        capsys, "route", *NET, "--from", "Kashi", "--to", "KSAT-SvalSat", "--at", DOWN_AT
    )
    assert code == 1 and out == ""
    assert "no path from Kashi to KSAT-SvalSat at 2025-11-20T00:00:00.000Z" in err
    assert "the next path exists at 2025-11-20T" in err
    assert len(err.strip().splitlines()) == 1


def test_store_and_forward_waits(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        "route",
        *NET,
        "--from",
        "Kashi",
        "--to",
        "KSAT-SvalSat",
        "--at",
        DOWN_AT,
        "--store-and-forward",
        "--bytes",
        "1e8",
        "--json",
        "--horizon-hours",
        "6",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["hops"][0]["depart"] > "2025-11-20T01"  # waited for Kashi's first pass
    # 100 MB at 220 Mbps takes 3.6 s on the uplink
    assert doc["one_way_delay_ms"] > 3.6e3


def test_store_and_forward_over_a_saved_plan(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plan = tmp_path / "plan.json"
    assert (
        main(["contacts", *NET, "--start", DOWN_AT, "--hours", "6", "--isl", "--out", str(plan)])
        == 0
    )
    capsys.readouterr()
    code, out, _ = _run(
        capsys,
        "route",
        "--plan",
        str(plan),
        "--from",
        "Kashi",
        "--to",
        "KSAT-SvalSat",
        "--at",
        DOWN_AT,
        "--store-and-forward",
        "--json",
    )
    assert code == 0 and json.loads(out)["path"][0] == "Kashi"
    code, _, err = _run(
        capsys,
        "route",
        "--plan",
        str(plan),
        "--from",
        "Kashi",
        "--to",
        "KSAT-SvalSat",
        "--at",
        "2025-11-21T00:00:00Z",
        "--store-and-forward",
    )
    assert code == 2 and "outside the contact plan" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--from", "Kashgar", "--to", "Sanya", "--at", UP_AT], "did you mean Kashi"),
        (["--from", "Kashi", "--to", "Sanya", "--at", "noon"], "unparseable time"),
        (["--from", "Kashi", "--to", "Sanya", "--at", UP_AT, "--bytes", "-5"], "--bytes"),
        (["--from", "Kashi", "--to", "Sanya", "--at", UP_AT, "--bytes", "0"], "> 0"),
        (["--from", "Kashi", "--to", "Kashi", "--at", UP_AT], "same node"),
    ],
)
def test_route_bad_input_exits_2(
    capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code, _, err = _run(capsys, "route", *NET, *extra)
    assert code == 2
    assert message in err and err.startswith("starcompute: error:")
    assert len(err.strip().splitlines()) == 1


def test_routes_writes_parquet_and_summarises(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_file = tmp_path / "routes.parquet"
    code, out, _ = _run(
        capsys,
        "routes",
        *NET,
        "--start",
        UP_AT,
        "--seconds",
        "20",
        "--step",
        "10",
        "--out",
        str(out_file),
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["steps"] == 3 and doc["pairs"] == 7 * 6 // 2
    assert len(doc["per_step_wall_s"]) == 3 and len(doc["unreachable_pairs"]) == 3
    table = pq.read_table(out_file)
    assert table.num_rows == 3 * 21
    assert set(table.column_names) == {"time", "src", "dst", "one_way_delay_ms", "hops", "path"}


def test_routes_bad_out_suffix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(
        capsys,
        "routes",
        *NET,
        "--start",
        UP_AT,
        "--seconds",
        "10",
        "--step",
        "10",
        "--out",
        str(tmp_path / "x.txt"),
    )
    assert code == 2 and ".parquet or .csv" in err
