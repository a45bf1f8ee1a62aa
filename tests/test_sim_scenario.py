"""Scenario files: strict schema, defaults, one-line errors, overrides and the CLI's
``simulate`` front door (bad input: exit 2, one line, before any simulation work)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from starcompute.cli.main import main
from starcompute.errors import InputError
from starcompute.mission.policy import POLICIES
from starcompute.sim.scenario import SCHEMA, describe_keys, load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
THREE_BODY = EXAMPLES / "three-body-12.toml"
STAR_COMPUTE = EXAMPLES / "star-compute-2800.toml"


def _schema_names() -> set[str]:
    """The dotted name of every schema key, as --keys and error messages spell it."""
    names = set()
    for section, keys in SCHEMA.items():
        for key in keys:
            if section == "":
                names.add(key)
            elif section == "earth_observation":
                names.add(f"workload.earth_observation.{key}")
            elif section == "models":
                names.add(f"models[].{key}")
            elif section == "failures":
                names.add(f"failures[].{key}")
            elif not (section == "workload" and key == "earth_observation"):
                names.add(f"{section}.{key}")
    return names


# --- loading, defaults, key list ----------------------------------------------------------


def test_three_body_example_loads() -> None:
    s = load_scenario(THREE_BODY)
    assert s[""]["name"] == "three-body-12"
    assert s[""]["step_s"] == 10.0
    assert s[""]["drain_h"] == 2.0
    assert s["constellation"]["preset"] == "three-body-12"
    assert s["ground"]["handoff"] == "any"
    assert [m["name"] for m in s.models] == ["qwen3-8b"]
    assert s["workload"]["queries_per_day"] == 2000.0
    assert s["earth_observation"]["images_per_day"] == 500.0
    assert s.base_dir == EXAMPLES.resolve()
    assert s.duration_s == 24 * 3600.0
    # horizon = arrivals + drain, rounded up to whole steps
    assert s.horizon_s == 26 * 3600.0


def test_star_compute_example_loads() -> None:
    s = load_scenario(STAR_COMPUTE)
    assert s[""]["name"] == "star-compute-2800"
    assert [(m["name"], m["share"]) for m in s.models] == [("qwen3-8b", 0.8), ("qwen3-32b", 0.2)]
    assert s.models[1]["placement"] == ["SSO750I"]
    assert s.models[0]["placement"] == "all"  # default filled in
    assert s["ground"]["stations"] == "china,ksat,aws"
    assert s["workload"]["queries_per_day"] == 1_000_000.0
    assert s["workload"]["prompt_tokens"] == {"median": 200, "sigma": 1.0, "max": 4096}
    assert s["earth_observation"]["model"] == "qwen3-8b"
    assert s["scheduler"]["candidates"] == 16  # the schema default
    assert s["power"]["initial_soc"] == 1.0  # section absent from the file: defaults


def test_empty_document_gives_schema_defaults() -> None:
    s = parse_scenario({})
    for section, keys in SCHEMA.items():
        for key, spec in keys.items():
            if section == "models":
                assert len(s.models) == 1
                got = s.models[0][key]
            elif section == "failures":
                assert s.failures == ()  # none unless listed
                continue
            else:
                got = s[section][key]
            assert got == spec.default, (section, key)


def test_missing_sections_filled_from_defaults() -> None:
    s = parse_scenario({"scheduler": {"max_batch": 4}, "seed": 9})
    assert s["scheduler"]["max_batch"] == 4
    assert s["scheduler"]["policy"] == SCHEMA["scheduler"]["policy"].default
    assert s[""]["seed"] == 9
    assert s["power"] == {k: v.default for k, v in SCHEMA["power"].items()}
    assert s["ground"] == {k: v.default for k, v in SCHEMA["ground"].items()}


def test_integral_float_accepted_for_int_key() -> None:
    s = parse_scenario({"seed": 3.0, "scheduler": {"max_batch": 16.0}})
    assert s[""]["seed"] == 3 and isinstance(s[""]["seed"], int)
    assert s["scheduler"]["max_batch"] == 16 and isinstance(s["scheduler"]["max_batch"], int)


def test_describe_keys_covers_schema() -> None:
    rows = describe_keys()
    names = [r["key"] for r in rows]
    assert len(names) == len(set(names)), "a key listed twice"
    assert set(names) == _schema_names()
    for must in ("duration_h", "scheduler.max_batch", "workload.earth_observation.images_per_day"):
        assert must in names
    for r in rows:
        assert r["doc"] and r["allowed"]
        json.loads(r["default"])  # a JSON literal
    policy = next(r for r in rows if r["key"] == "scheduler.policy")
    assert all(p in policy["allowed"] for p in POLICIES)


# --- bad values: InputError naming the key and the value ----------------------------------

BAD_VALUES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    # wrong type
    ("duration-string", {"duration_h": "3"}, ("duration_h", "'3'")),
    ("seed-fraction", {"seed": 1.5}, ("seed", "1.5", "int")),
    ("bool-for-float", {"power": {"background_load": True}}, ("power.background_load", "True")),
    ("bool-for-int", {"scheduler": {"max_batch": True}}, ("scheduler.max_batch", "True")),
    ("str-for-bool", {"compute": {"infinite": "yes"}}, ("compute.infinite", "'yes'")),
    ("nan", {"drain_h": float("nan")}, ("drain_h", "nan")),
    # out of range
    ("step-zero", {"step_s": 0}, ("step_s", "0", "1..600")),
    ("duration-negative", {"duration_h": -1}, ("duration_h", "-1")),
    ("max-batch-zero", {"scheduler": {"max_batch": 0}}, ("scheduler.max_batch", "0", "1..1024")),
    ("soc-above-one", {"power": {"initial_soc": 1.5}}, ("power.initial_soc", "1.5", "0..1")),
    ("seed-negative", {"seed": -1}, ("seed", "-1")),
    (
        "eo-negative",
        {"workload": {"earth_observation": {"images_per_day": -5}}},
        ("workload.earth_observation.images_per_day", "-5"),
    ),
    # bad choice: the message lists what is allowed
    (
        "policy",
        {"scheduler": {"policy": "fastest"}},
        ("scheduler.policy", "'fastest'", *POLICIES),
    ),
    (
        "handoff",
        {"ground": {"handoff": "random"}},
        ("ground.handoff", "'random'", "nearest", "any"),
    ),
    ("quant", {"models": [{"quant": "int3"}]}, ("models[0].quant", "'int3'", "int8")),
    # unknown keys, with a hint
    ("unknown-top", {"duraton_h": 3}, ("'duraton_h'", "did you mean duration_h")),
    (
        "unknown-section-key",
        {"scheduler": {"max_bacth": 3}},
        ("'scheduler.max_bacth'", "did you mean max_batch"),
    ),
    (
        "unknown-eo-key",
        {"workload": {"earth_observation": {"imges_per_day": 3}}},
        ("workload.earth_observation.imges_per_day", "images_per_day"),
    ),
    (
        "unknown-lognormal-key",
        {"workload": {"prompt_tokens": {"median": 100, "sigma": 1, "max": 200, "mediann": 1}}},
        ("workload.prompt_tokens.mediann", "did you mean median"),
    ),
    ("unknown-section", {"shceduler": {}}, ("'shceduler'", "did you mean scheduler")),
    # models
    (
        "shares-sum",
        {"models": [{"name": "qwen3-8b", "share": 0.5}, {"name": "qwen3-32b", "share": 0.4}]},
        ("shares", "0.9"),
    ),
    ("unknown-card", {"models": [{"name": "gpt-9"}]}, ("models[0].name", "'gpt-9'", "qwen3-8b")),
    (
        "duplicate-model",
        {"models": [{"name": "qwen3-8b", "share": 0.5}, {"name": "qwen3-8b", "share": 0.5}]},
        ("twice", "qwen3-8b"),
    ),
    ("models-not-list", {"models": {"name": "qwen3-8b"}}, ("models",)),
    ("models-empty", {"models": []}, ("models",)),
    # log-normal lengths
    (
        "median-above-max",
        {"workload": {"prompt_tokens": {"median": 5000, "sigma": 1, "max": 4096}}},
        ("workload.prompt_tokens", "5000", "4096"),
    ),
    (
        "negative-sigma",
        {"workload": {"output_tokens": {"median": 10, "sigma": -0.5, "max": 100}}},
        ("workload.output_tokens.sigma", "-0.5"),
    ),
    (
        "eo-model-not-listed",
        {"workload": {"earth_observation": {"model": "qwen3-32b"}}},
        ("workload.earth_observation.model", "'qwen3-32b'", "qwen3-8b"),
    ),
    ("section-not-table", {"constellation": 5}, ("constellation", "5")),
]


@pytest.mark.parametrize(("doc", "needles"), [pytest.param(d, n, id=i) for i, d, n in BAD_VALUES])
def test_bad_value_names_key_and_value(doc: dict[str, Any], needles: tuple[str, ...]) -> None:
    with pytest.raises(InputError) as info:
        parse_scenario(doc, "bad.toml")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("bad.toml: ")
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_input_error_is_value_error() -> None:
    with pytest.raises(ValueError, match=r"scheduler\.max_batch"):
        parse_scenario({"scheduler": {"max_batch": 0}})


def test_bad_start_names_key() -> None:
    with pytest.raises(InputError) as info:
        parse_scenario({"start": "yesterday"}, "bad.toml")
    assert "start" in str(info.value).replace("'yesterday'", "")
    assert "bad.toml" in str(info.value)


def test_bad_start_rejected() -> None:
    with pytest.raises(InputError, match="yesterday"):
        parse_scenario({"start": "yesterday"}, "bad.toml")


def test_partial_lognormal_table_keeps_schema_defaults() -> None:
    s = parse_scenario({"workload": {"prompt_tokens": {"median": 300}}})
    assert s["workload"]["prompt_tokens"] == {"median": 300, "sigma": 1.0, "max": 4096.0}


def test_short_diurnal_list_rejected_at_parse_time() -> None:
    with pytest.raises(InputError, match="diurnal"):
        parse_scenario({"workload": {"diurnal": [1.0] * 23}})


# --- files ----------------------------------------------------------------------------------


def test_invalid_toml(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('name = "x"\nduration_h = = 3\n', encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_scenario(p)
    msg = str(info.value)
    assert "invalid TOML" in msg and str(p) in msg and "\n" not in msg


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.toml"
    with pytest.raises(InputError, match="not found") as info:
        load_scenario(p)
    assert str(p) in str(info.value)


def test_directory_is_not_a_scenario(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_scenario(tmp_path)


def test_non_utf8_file(tmp_path: Path) -> None:
    p = tmp_path / "latin1.toml"
    p.write_bytes('description = "Zürich"\n'.encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8") as info:
        load_scenario(p)
    assert str(p) in str(info.value)


def test_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text("[scheduler]\nmax_batch = 0\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_scenario(p)
    assert str(p) in str(info.value) and "scheduler.max_batch = 0" in str(info.value)


def test_base_dir_is_the_scenario_folder(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "s.toml"
    p.parent.mkdir()
    p.write_text('[workload]\ntrace = "t.csv"\n', encoding="utf-8")
    s = load_scenario(p)
    assert s.path("t.csv") == p.parent.resolve() / "t.csv"
    assert s.path(str(tmp_path / "abs.csv")) == tmp_path / "abs.csv"


# --- overrides ------------------------------------------------------------------------------


def test_with_overrides_keeps_other_values() -> None:
    base = load_scenario(THREE_BODY)
    s = base.with_overrides({"scheduler.max_batch": 4, "duration_h": 2.0, "seed": 7})
    assert s["scheduler"]["max_batch"] == 4
    assert s[""]["duration_h"] == 2.0 and s[""]["seed"] == 7
    assert s[""]["step_s"] == 10.0 and s[""]["name"] == "three-body-12"
    assert s["ground"]["handoff"] == "any"
    assert s["earth_observation"]["images_per_day"] == 500.0
    assert s.models == base.models
    assert s.source == base.source and s.base_dir == base.base_dir
    assert base["scheduler"]["max_batch"] == 8  # the original is unchanged


def test_with_overrides_nested_eo_key() -> None:
    base = load_scenario(STAR_COMPUTE)
    s = base.with_overrides({"workload.earth_observation.images_per_day": 123})
    assert s["earth_observation"]["images_per_day"] == 123.0
    assert s["earth_observation"]["model"] == "qwen3-8b"
    assert s["earth_observation"]["answer_bytes"] == 2000.0
    assert s["workload"]["queries_per_day"] == 1_000_000.0
    assert base["earth_observation"]["images_per_day"] == 20000.0


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"scheduler.max_batch": 0}, "scheduler.max_batch = 0"),
        ({"duration_h": -1.0}, "duration_h = -1.0"),
        ({"workload.earth_observation.images_per_day": -1}, "images_per_day = -1"),
        ({"scheduler.polcy": "nearest"}, "did you mean policy"),
        ({"name.x": 1}, "'name.x'"),
        ({"models.share": 0.5}, "'models.share'"),
    ],
)
def test_with_overrides_validates(overrides: dict[str, Any], needle: str) -> None:
    base = load_scenario(THREE_BODY)
    with pytest.raises(InputError) as info:
        base.with_overrides(overrides)
    assert needle in str(info.value)
    # the base still works
    assert base.with_overrides({"seed": 2})[""]["seed"] == 2


def test_with_overrides_does_not_mutate_original() -> None:
    base = parse_scenario({})
    with pytest.raises(InputError):
        base.with_overrides({"workload.output_tokens.median": 5000})  # > max 1024
    assert base["workload"]["output_tokens"]["median"] == 150.0
    base.with_overrides({"constellation.roles.X": "training"})
    assert base["constellation"]["roles"] == {}


# --- CLI -----------------------------------------------------------------------------------


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("starcompute: error:"), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[scheduler]\nmax_batch = 0\n", "scheduler.max_batch = 0"),
        ('[scheduler]\npolicy = "fastest"\n', "fastest"),
        ("duraton_h = 3\n", "did you mean duration_h"),
        ("duration_h = = 3\n", "invalid TOML"),
        ('[[models]]\nname = "gpt-9"\n', "gpt-9"),
    ],
)
def test_cli_bad_scenario_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["simulate", str(p), "--out", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert needle in line
    assert not out.exists()  # failed before any work


def test_cli_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in _one_error_line(capsys.readouterr().err)


def test_cli_missing_out_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(THREE_BODY)]) == 2
    assert "--out" in _one_error_line(capsys.readouterr().err)


def test_cli_missing_scenario_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate"]) == 2
    assert "SCENARIO" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [(["--hours", "-1"], "duration_h = -1.0"), (["--seed", "-3"], "seed = -3")],
)
def test_cli_bad_override_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    out = tmp_path / "out"
    assert main(["simulate", str(THREE_BODY), "--out", str(out), *extra]) == 2
    assert needle in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_cli_unparseable_hours_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", str(THREE_BODY), "--hours", "abc"])
    assert info.value.code == 2
    # argparse's usage errors carry the subcommand's prog ("starcompute simulate: error:")
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("starcompute simulate: error:") and "--hours" in err


def test_cli_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--keys"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert listed == _schema_names()


def test_cli_keys_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--keys", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == describe_keys()
    assert {r["key"] for r in rows} == _schema_names()


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--out" in out and "--keys" in out


def test_cli_subprocess_bad_scenario(tmp_path: Path) -> None:
    """The installed entry point: exit 2, one line on stderr, no traceback."""
    exe = Path(sys.executable).parent / "starcompute"
    if not exe.exists():
        pytest.skip("starcompute entry point not installed next to the interpreter")
    p = tmp_path / "bad.toml"
    p.write_text("[power]\ninitial_soc = 1.5\n", encoding="utf-8")
    proc = subprocess.run(
        [str(exe), "simulate", str(p), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "power.initial_soc = 1.5" in _one_error_line(proc.stderr)
    assert proc.stdout == ""
