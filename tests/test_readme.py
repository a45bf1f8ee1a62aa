"""The README's examples run as written (CLI lines and the Python block)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _cli_examples() -> list[list[str]]:
    text = README.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = re.findall(r"^\.venv/bin/starcompute (.+)$", text, flags=re.MULTILINE)
    return [shlex.split(line) for line in lines]


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_examples() -> None:
    assert len(_cli_examples()) >= 5
    assert _python_blocks()


def test_cli_examples_run_in_order(tmp_path: Path) -> None:
    """In one folder, in order: a later example may read a file an earlier one wrote.
    The folder holds a copy of examples/, as a checkout does."""
    shutil.copytree(README.parent / "examples", tmp_path / "examples")
    for args in _cli_examples():
        proc = subprocess.run(
            [sys.executable, "-m", "starcompute.cli.main", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"{args}: {proc.stderr}"


@pytest.mark.parametrize("block", _python_blocks())
def test_python_examples_run(block: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", block],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
