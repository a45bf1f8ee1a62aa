"""The ``starcompute`` command line through ``main(argv)`` and as a console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from starcompute.cli.main import main

START = "2025-11-20T00:00:00Z"
SPAN = ["--start", START, "--hours", "3"]
CONTACTS = ["contacts", "--constellation", "three-body-12", "--stations", "china", *SPAN]
ECLIPSES = ["eclipses", "--constellation", "three-body-12", *SPAN]
ISS_L1 = "1 25544U 98067A   08264.51782528 -.00002182  00000-0 -11606-4 0  2927"
ISS_L2 = "2 25544  51.6416 247.4627 0006703 130.5360 325.0288 15.72125391563537"


def run_ok(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.out


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    return json.loads(run_ok(capsys, [*argv, "--json"]))


def is_utc_iso(text: str) -> bool:
    return text.endswith("Z") and text[4] == "-" and text[10] == "T"


# --- constellation / stations -----------------------------------------------------------------


def test_constellation_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, ["constellation", "show", "three-body-12"])
    assert doc["name"] == "three-body-12"
    assert doc["satellites"] == 12
    assert sum(s["satellites"] for s in doc["shells"]) == 12


def test_constellation_show_text(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_ok(capsys, ["constellation", "show", "three-body-12"])
    assert out.startswith("three-body-12: 12 satellites")
    assert "TB500" in out


def test_constellation_presets(capsys: pytest.CaptureFixture[str]) -> None:
    names = run_ok(capsys, ["constellation", "presets"]).split()
    assert "three-body-12" in names
    assert run_json(capsys, ["constellation", "presets"])["presets"] == names


def test_constellation_export_tle(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_ok(capsys, ["constellation", "export", "three-body-12", "--format", "tle"])
    lines = out.splitlines()
    assert len(lines) == 36
    assert all(ln.startswith("1 ") for ln in lines[1::3])
    assert all(ln.startswith("2 ") and len(ln) == 69 for ln in lines[2::3])


def test_constellation_export_to_file_and_show_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "tb.tle"
    assert run_ok(capsys, ["constellation", "export", "three-body-12", "--out", str(path)]) == ""
    assert len(path.read_text(encoding="utf-8").splitlines()) == 36
    doc = run_json(capsys, ["constellation", "show", str(path)])
    assert doc["satellites"] == 12
    assert doc["name"] == "tb"


def test_stations_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, ["stations", "show", "china"])
    stations = doc["stations"]
    assert len(stations) == 5
    assert set(stations[0]) == {
        "name", "lat_deg", "lon_deg", "alt_m", "min_elevation_deg", "antennas", "antennas_source"
    }  # fmt: skip


def test_stations_show_text_and_presets(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_ok(capsys, ["stations", "show", "ksat,china"])
    assert len(out.splitlines()) == 1 + 7
    presets = run_json(capsys, ["stations", "presets"])["presets"]
    assert {"china", "ksat", "aws", "top-100"} <= set(presets)


# --- contacts ---------------------------------------------------------------------------------


def test_contacts_json(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, [*CONTACTS, "--isl"])
    assert set(doc) == {"start", "end", "ground_contacts", "isl_contacts"}
    assert doc["start"] == "2025-11-20T00:00:00.000Z"
    assert doc["end"] == "2025-11-20T03:00:00.000Z"
    assert doc["ground_contacts"]
    assert doc["isl_contacts"]
    for g in doc["ground_contacts"]:
        assert {"station", "satellite", "aos", "los", "max_elevation_deg"} <= set(g)
        assert is_utc_iso(g["aos"]) and is_utc_iso(g["los"])
        assert g["aos"] < g["los"]
        assert isinstance(g["max_elevation_deg"], float)
    for c in doc["isl_contacts"]:
        assert {"a", "b", "start", "end"} <= set(c)
        assert is_utc_iso(c["start"]) and is_utc_iso(c["end"])
        assert c["start"] < c["end"]


def test_contacts_without_isl_has_no_isl_windows(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, CONTACTS)
    assert doc["isl_contacts"] == []


def test_contacts_min_elevation_changes_the_passes(capsys: pytest.CaptureFixture[str]) -> None:
    low = run_json(capsys, [*CONTACTS, "--min-elevation", "0"])["ground_contacts"]
    high = run_json(capsys, [*CONTACTS, "--min-elevation", "30"])["ground_contacts"]
    assert len(high) < len(low)
    assert all(g["max_elevation_deg"] >= 30 for g in high)


def test_contacts_summary_text(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_ok(capsys, CONTACTS)
    assert "ground passes" in out
    assert "Kashi" in out


def test_contacts_out_ion(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "plan.ion"
    assert main([*CONTACTS, "--isl", "--out", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"to {path}" in captured.err
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# starcompute contact plan")
    assert any(ln.startswith("a contact +") for ln in lines)
    assert any(ln.startswith("a range +") for ln in lines)


@pytest.mark.parametrize(("suffix", "fmt"), [(".json", None), (".dat", "csv"), (".pq", "parquet")])
def test_contacts_out_other_formats(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, suffix: str, fmt: str | None
) -> None:
    path = tmp_path / f"plan{suffix}"
    argv = [*CONTACTS, "--out", str(path)] + (["--format", fmt] if fmt else [])
    run_ok(capsys, argv)
    assert path.stat().st_size > 0
    if suffix == ".json":
        assert json.loads(path.read_text(encoding="utf-8"))["stations"][0] == "Kashi"


# --- eclipses ---------------------------------------------------------------------------------


def test_eclipses_json(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, ECLIPSES)["eclipses"]
    assert rows
    assert {r["kind"] for r in rows} == {"umbra", "penumbra"}
    for r in rows:
        assert set(r) == {"satellite", "start", "end", "kind", "beta_deg"}
        assert -90.0 <= r["beta_deg"] <= 90.0
        assert is_utc_iso(r["start"]) and is_utc_iso(r["end"])
        assert r["start"] < r["end"]
        assert START[:10] in r["start"]


def test_eclipses_umbra_only(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, [*ECLIPSES, "--umbra-only"])["eclipses"]
    assert rows
    assert {r["kind"] for r in rows} == {"umbra"}


def test_eclipses_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert "umbra intervals" in run_ok(capsys, ECLIPSES)


# --- help -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["constellation"],
        ["constellation", "show"],
        ["constellation", "presets"],
        ["constellation", "export"],
        ["stations"],
        ["stations", "show"],
        ["stations", "presets"],
        ["contacts"],
        ["eclipses"],
        ["node"],
        ["testbed"],
        ["testbed", "status"],
    ],
    ids=lambda argv: " ".join(argv) or "starcompute",
)
def test_help_exits_zero(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("usage: starcompute")
    assert captured.err == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("starcompute ")


def test_usage_error_exits_two(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["contacts", "--constellation", "three-body-12"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert "--start" in err
    assert "Traceback" not in err


# --- errors: exit code 2 and one line -----------------------------------------------------------


def run_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    assert captured.err.count("starcompute: error:") == 1
    assert captured.err.startswith("starcompute: error: ")
    return captured.err


def run_one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    err = run_error(capsys, argv)
    assert len(err.splitlines()) == 1
    return err


@pytest.mark.parametrize(
    "argv",
    [
        ["constellation", "show", "atlantis"],
        ["constellation", "export", "atlantis"],
        ["contacts", "--constellation", "atlantis", "--stations", "china", *SPAN],
        ["eclipses", "--constellation", "atlantis", *SPAN],
    ],
)
def test_unknown_constellation_preset(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    err = run_one_line_error(capsys, argv)
    assert "'atlantis'" in err
    assert "three-body-12" in err  # the presets that do exist


def test_unknown_station_preset(capsys: pytest.CaptureFixture[str]) -> None:
    err = run_one_line_error(capsys, ["stations", "show", "china,atlantis"])
    assert "station preset 'atlantis'" in err
    assert "ksat" in err


@pytest.mark.parametrize("start", ["yesterday", "2025-13-01T00:00:00Z", "2025-02-30", "20251120"])
@pytest.mark.parametrize("command", ["contacts", "eclipses"])
def test_unparseable_time(capsys: pytest.CaptureFixture[str], command: str, start: str) -> None:
    base = CONTACTS if command == "contacts" else ECLIPSES
    argv = [*base[: base.index("--start")], "--start", start, "--hours", "2"]
    err = run_one_line_error(capsys, argv)
    assert repr(start) in err
    assert "ISO-8601" in err


@pytest.mark.parametrize("hours", ["-2", "0", "1000", "nan"])
@pytest.mark.parametrize("command", ["contacts", "eclipses"])
def test_bad_hours(capsys: pytest.CaptureFixture[str], command: str, hours: str) -> None:
    base = CONTACTS if command == "contacts" else ECLIPSES
    argv = [*base[: base.index("--hours")], "--hours", hours]
    err = run_one_line_error(capsys, argv)
    assert "--hours" in err
    assert "744" in err


def test_malformed_tle_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.tle"
    bad_l1 = ISS_L1[:7] + "X" + ISS_L1[8:]  # classification 'X'
    path.write_text(f"ISS\n{bad_l1}\n{ISS_L2}\n", encoding="utf-8")
    err = run_error(capsys, ["constellation", "show", str(path)])
    assert "column 8" in err
    assert bad_l1 in err  # the template error is multi-line by design


def test_bad_tle_checksum_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.tle"
    path.write_text(f"{ISS_L1[:68]}0\n{ISS_L2}\n", encoding="utf-8")
    err = run_error(capsys, ["contacts", "--constellation", str(path), "--stations", "ksat", *SPAN])
    assert "checksum" in err


@pytest.mark.parametrize("command", ["show", "contacts"])
def test_station_latitude_out_of_range(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("name,lat_deg,lon_deg,alt_m,min_elevation_deg\nX,91,0,0,10\n", encoding="utf-8")
    if command == "show":
        argv = ["stations", "show", str(path)]
    else:
        argv = ["contacts", "--constellation", "three-body-12", "--stations", str(path), *SPAN]
    err = run_one_line_error(capsys, argv)
    assert "latitude" in err
    assert "-90..90" in err


def test_format_without_out(capsys: pytest.CaptureFixture[str]) -> None:
    err = run_one_line_error(capsys, [*CONTACTS, "--format", "csv"])
    assert "--format needs --out" in err


def test_out_with_unknown_suffix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = run_one_line_error(capsys, [*CONTACTS, "--out", str(tmp_path / "plan.xyz")])
    assert "--format" in err


def test_missing_constellation_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = run_one_line_error(capsys, ["constellation", "show", str(tmp_path / "none.tle")])
    assert "no such file" in err


def test_contacts_bad_step(capsys: pytest.CaptureFixture[str]) -> None:
    err = run_one_line_error(capsys, [*CONTACTS, "--step", "0"])
    assert "1..300" in err


def test_eclipses_zero_step(capsys: pytest.CaptureFixture[str]) -> None:
    run_one_line_error(capsys, [*ECLIPSES, "--step", "0"])


# --- console script ------------------------------------------------------------------------------


def test_console_script_error_exit_code() -> None:
    script = Path(sys.executable).parent / "starcompute"
    found = script if script.exists() else shutil.which("starcompute")
    command = [str(found)] if found else [sys.executable, "-m", "starcompute.cli.main"]
    result = subprocess.run(
        [*command, "constellation", "show", "atlantis"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("starcompute: error: unknown constellation preset 'atlantis'")


def test_module_entry_point_success() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "starcompute.cli.main", "constellation", "presets"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "three-body-12" in result.stdout.split()


def test_node_bad_data_directory_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["node", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("starcompute: error:") and "node.toml is missing" in err
    assert len(err.strip().splitlines()) == 1


def test_node_without_its_model_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A provisioned data directory whose weights are gone: a clear line, nothing run."""
    import json

    from starcompute import load_constellation, load_stations, parse_utc
    from starcompute.links.contacts import contact_plan
    from starcompute.node.config import NodeConfig
    from starcompute.security.telecommand import Key, SatelliteKeys

    start = parse_utc("2025-11-20T00:00:00Z")
    plan = contact_plan(load_constellation("three-body-12"), load_stations("ksat"), start, 600.0)
    NodeConfig("TB500-P00-S02", "three-body-12", "127.0.0.1:0", "127.0.0.1:9",
               "2025-11-20T00:00:00Z", 0.0).save(tmp_path)  # fmt: skip
    plan.write(tmp_path / "contact-plan.json", "json")
    keys = SatelliteKeys(Key.generate(1)).to_dict()
    (tmp_path / "keys.json").write_text(json.dumps(keys), encoding="utf-8")
    assert main(["node", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no model in" in err and len(err.strip().splitlines()) == 1


def test_testbed_status_without_a_run_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["testbed", "status", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no testbed is running" in err and len(err.strip().splitlines()) == 1


def test_serve_dual_needs_seu_protect(capsys: pytest.CaptureFixture[str]) -> None:
    err = run_one_line_error(capsys, ["serve", "--dual", "--constellation", "three-body-12"])
    assert "--dual needs --seu-protect" in err


def test_a_non_input_error_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """errors.EXIT_CODES: an error starcompute raises on purpose that is not bad input
    (here: the planner has no way to orbit) is one line and exit code 1, not a traceback."""
    from starcompute.cli import infer
    from starcompute.errors import UnavailableError

    def unavailable(args: object) -> int:
        raise UnavailableError("no way to orbit in the plan")

    monkeypatch.setattr(infer, "run", unavailable)
    assert main(["infer", "hello"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["starcompute: error: no way to orbit in the plan"]
