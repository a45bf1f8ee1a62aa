"""A short run of every fuzzing harness (``make fuzz`` runs 100,000 inputs each): an
input must end in a result or the target's documented error, never a crash or a hang."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["bundle", "bpsec", "job", "telecommand", "tle", "omm-json", "omm-csv", "scenario", "api"]


def _rss_limit_mb() -> int:
    """libFuzzer's 2 GB budget above this process's peak: Linux carries a process's peak
    resident set across fork and exec (ru_maxrss), and libFuzzer reads that peak, so a
    fuzzer started from a test worker that once loaded a model would start "over" 2 GB."""
    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return int(inherited_mb) + 2048


@pytest.mark.parametrize("target", TARGETS)
def test_fuzzer_short_run(target: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "fuzz.py"), target, "-runs=3000", "-timeout=10",
         f"-rss_limit_mb={_rss_limit_mb()}", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DONE" in proc.stderr and not list(tmp_path.iterdir())


def test_the_gate_fails_when_a_parser_crashes(tmp_path: Path) -> None:
    """``make fuzz`` runs fuzz/gate.py: a crash (here the bundle target made to crash on
    every input) must fail it, and a clean target must pass."""
    gate = [sys.executable, str(ROOT / "fuzz" / "gate.py"), "--runs", "200",
            "--artifacts", str(tmp_path), f"-rss_limit_mb={_rss_limit_mb()}"]  # fmt: skip
    clean = subprocess.run([*gate, "--targets", "tle"], capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "tle: 200 inputs, no crash" in clean.stdout
    env = {**os.environ, "STARCOMPUTE_FUZZ_BREAK": "bundle"}
    broken = subprocess.run(
        [*gate, "--targets", "bundle,tle"], capture_output=True, text=True, timeout=300, env=env
    )
    assert broken.returncode == 1
    assert "bundle: CRASH" in broken.stdout and "RuntimeError" in broken.stdout
    assert "1 of 2 targets passed" in broken.stdout


def test_a_bare_value_error_is_not_an_expected_outcome() -> None:
    """Only the InputError family is the documented error of hostile input."""
    import importlib.util

    from starcompute.errors import BundleError, InputError

    spec = importlib.util.spec_from_file_location("fuzz_harness", ROOT / "fuzz" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)

    def raising(exc: Exception) -> Any:
        def target(data: bytes) -> None:
            raise exc

        return target

    harness.one_input(raising(InputError("bad")))(b"")
    harness.one_input(raising(BundleError("crc", "bad")))(b"")  # in the family
    with pytest.raises(ValueError, match="raw"):
        harness.one_input(raising(ValueError("raw")))(b"")


def test_found_inputs_stay_fixed() -> None:
    """Inputs the fuzzers found that once escaped as raw exceptions."""
    from starcompute.errors import ElementSetError
    from starcompute.orbits.omm import parse_omm_csv, parse_omm_json

    with pytest.raises(ElementSetError, match="header lacks"):  # was csv.Error
        parse_omm_csv("\rW")
    with pytest.raises(ElementSetError, match="not a CSV file"):
        parse_omm_csv("a" * 200_000)  # one field past the csv module's size limit
    record = '{"OBJECT_NAME":"X","EPOCH":"2008-09-20T12:25:40","MEAN_MOTION":15.7,'
    record += '"ECCENTRICITY":0.0007,"INCLINATION":51.6,"RA_OF_ASC_NODE":247.5,'
    record += '"ARG_OF_PERICENTER":130.5,"MEAN_ANOMALY":325.0,"NORAD_CAT_ID":%s%s}'
    with pytest.raises(ElementSetError, match="CLASSIFICATION_TYPE must be U, C or S"):
        parse_omm_json(record % ("25544", ',"CLASSIFICATION_TYPE":"\\ufffdU"'))
    with pytest.raises(ElementSetError, match="NORAD_CAT_ID must be within"):
        parse_omm_json(record % ("1e300", ""))
    from pydantic import ValidationError

    from starcompute.gateway.schemas import TelecommandRequest

    with pytest.raises(ValidationError, match="packet_hex"):  # was a raw ValueError
        TelecommandRequest.model_validate_json('{"satellite":"S","packet_hex":"0g"}')
