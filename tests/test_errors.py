"""One error tree (``errors.py``) and its two tables: HTTP and CLI exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from starcompute import errors
from starcompute.errors import (
    BundleError,
    ClError,
    DeadlineError,
    ElementSetError,
    IdempotencyError,
    InputError,
    JobError,
    LinkDownError,
    PlanEndedError,
    PropagationError,
    QueueFullError,
    StarcomputeError,
    TelecommandError,
    UnavailableError,
    UnknownPresetError,
    exit_code,
    http_error,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "starcompute"


def test_every_public_error_class_lives_in_errors_py() -> None:
    for path in SRC.rglob("*.py"):
        if path.name == "errors.py":
            continue
        public = re.findall(
            r"^class ([A-Z]\w*(?:Error|Exception))\b", path.read_text("utf-8"), re.M
        )
        assert not public, f"{path}: {public} belong in errors.py"


def test_the_docstring_draws_every_class() -> None:
    classes = [
        v
        for v in vars(errors).values()
        if isinstance(v, type)
        and issubclass(v, StarcomputeError)
        and not v.__name__.startswith("_")
    ]
    for cls in classes:
        assert cls.__name__ in (errors.__doc__ or ""), cls


@pytest.mark.parametrize(
    ("exc", "status", "kind", "code", "exit"),
    [
        (InputError("bad"), 400, "invalid_request_error", None, 2),
        (UnknownPresetError("preset", "x", ["a"]), 400, "invalid_request_error",
         "unknown_preset", 2),
        (ElementSetError("bad TLE"), 400, "invalid_request_error", None, 2),
        (BundleError("crc", "bad"), 400, "invalid_request_error", "crc", 2),
        (JobError("auth", "forged"), 400, "invalid_request_error", "auth", 2),
        (TelecommandError("replay", "seen"), 403, "permission_error", "replay", 2),
        (IdempotencyError(422, "reused", "idempotency_key_reused"), 422,
         "invalid_request_error", "idempotency_key_reused", 2),
        (QueueFullError(64, 4.0), 429, "rate_limit_error", "queue_full", 1),
        (DeadlineError(60.0, None), 503, "server_error", "no_path_to_orbit", 1),
        (PlanEndedError(np.datetime64("2026-01-01T00:00:00")), 503, "server_error",
         "plan_ended", 1),
        (LinkDownError("down"), 503, "server_error", "unavailable", 1),
        (ClError("cut"), 503, "server_error", "unavailable", 1),
        (UnavailableError("x"), 503, "server_error", "unavailable", 1),
        (PropagationError("decayed"), 503, "server_error", "unavailable", 1),
    ],
)  # fmt: skip
def test_tables(exc: StarcomputeError, status: int, kind: str, code: str | None, exit: int) -> None:
    assert http_error(exc) == (status, kind, code)
    assert exit_code(exc) == exit


def test_refused_input_is_input_and_value_error() -> None:
    """Hostile input (bundles, jobs, commands) is the InputError family: what fuzzing expects."""
    for exc in (BundleError("a", "b"), JobError("a", "b"), TelecommandError("a", "b")):
        assert isinstance(exc, InputError) and isinstance(exc, ValueError)
        assert exc.reason == "a"
    assert str(TelecommandError("replay", "seen")) == "telecommand rejected (replay): seen"
