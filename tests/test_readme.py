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
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"{args}: {proc.stderr}"


GATEWAY = "http://127.0.0.1:8000"


@pytest.mark.parametrize("block", _python_blocks())
def test_python_examples_run(block: str, tmp_path: Path) -> None:
    """A block that talks to the gateway runs against a `starcompute serve` started here
    (on 127.0.0.1:8000, as the README shows) and stopped after."""
    server = _start_gateway(tmp_path) if GATEWAY in block else None
    try:
        proc = subprocess.run(
            [sys.executable, "-c", block],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr


def _start_gateway(tmp_path: Path) -> subprocess.Popen[bytes]:
    import time
    import urllib.request

    server = subprocess.Popen(
        [sys.executable, "-m", "starcompute.cli.main", "serve", "--port", "8000",
         "--hours", "2", "--time-scale", "60", "--no-wait",
         "--log-db", str(tmp_path / "requests.sqlite")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(GATEWAY + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise AssertionError("starcompute serve did not come up on 127.0.0.1:8000")
