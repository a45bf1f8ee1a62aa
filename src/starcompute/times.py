"""Time conventions: UTC ``numpy.datetime64[ns]`` at the edges, float seconds inside.

Times cross every edge (CLI, files, JSON) as ISO-8601 strings ending in ``Z``.
UT1 is taken equal to UTC (|UT1-UTC| < 0.9 s); the resulting Earth-rotation error
is below 0.9 s x 465 m/s = 0.42 km at the equator, i.e. < 0.06 s on pass edges.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from starcompute.errors import InputError

DatetimeArray = npt.NDArray[np.datetime64]
FloatArray = npt.NDArray[np.float64]

_JD_UNIX_EPOCH = 2440587.5  # Julian date of 1970-01-01T00:00:00 UTC
_NS_PER_DAY = 86_400 * 10**9
_ISO_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]00:?00)?$", re.IGNORECASE
)


def parse_utc(text: str) -> np.datetime64:
    """Parse an ISO-8601 UTC time (``2025-11-20T00:00:00Z``) into ``datetime64[ns]``."""
    value = text.strip()
    if not _ISO_RE.match(value):
        raise InputError(
            f"unparseable time {text!r}: use ISO-8601 UTC such as 2025-11-20T06:30:00Z"
        )
    value = re.sub(r"(Z|[+-]00:?00)$", "", value, flags=re.IGNORECASE).replace(" ", "T")
    try:
        return np.datetime64(value, "ns")
    except ValueError as exc:
        raise InputError(
            f"invalid time {text!r} ({exc}): use ISO-8601 UTC such as 2025-11-20T06:30:00Z"
        ) from None


def format_utc(t: np.datetime64 | DatetimeArray, digits: int = 3) -> str | list[str]:
    """ISO-8601 with ``Z``; ``digits`` decimals of seconds (0, 3, 6 or 9)."""
    unit = {0: "s", 3: "ms", 6: "us", 9: "ns"}[digits]
    out = np.datetime_as_string(np.asarray(t, dtype="datetime64[ns]"), unit=unit)  # type: ignore[call-overload]
    if np.ndim(out) == 0:
        return str(out) + "Z"
    return [s + "Z" for s in out.tolist()]


def to_jd(t: np.datetime64 | DatetimeArray) -> tuple[FloatArray, FloatArray]:
    """Split UTC times into (whole Julian day, fraction) as SGP4 wants them."""
    ns = np.asarray(t, dtype="datetime64[ns]").astype(np.int64)
    days, rem_ns = np.divmod(ns, _NS_PER_DAY)
    jd = days.astype(np.float64) + _JD_UNIX_EPOCH
    fr = rem_ns.astype(np.float64) / _NS_PER_DAY
    return jd, fr


def offsets_s(t: np.datetime64 | DatetimeArray, epoch: np.datetime64) -> FloatArray:
    """Seconds from ``epoch`` (float64, ns resolution)."""
    delta = np.asarray(t, dtype="datetime64[ns]") - np.asarray(epoch, dtype="datetime64[ns]")
    return np.asarray(delta.astype(np.int64) / 1e9, dtype=np.float64)


def from_offsets(epoch: np.datetime64, seconds: FloatArray | Sequence[float]) -> DatetimeArray:
    """``epoch`` + float seconds, rounded to the nanosecond."""
    ns = np.rint(np.asarray(seconds, dtype=np.float64) * 1e9).astype(np.int64)
    base = np.asarray(epoch, dtype="datetime64[ns]")
    return np.asarray(base + ns.astype("timedelta64[ns]"), dtype="datetime64[ns]")


def time_grid(start: np.datetime64, duration_s: float, step_s: float) -> DatetimeArray:
    """Times from ``start`` to ``start + duration_s`` inclusive, every ``step_s``."""
    if not np.isfinite(duration_s) or duration_s < 0:
        raise InputError(f"duration must be a non-negative number of seconds, got {duration_s}")
    if not np.isfinite(step_s) or step_s <= 0:
        raise InputError(f"time step must be positive, got {step_s} s")
    n = int(np.floor(duration_s / step_s + 1e-9))
    grid = np.arange(n + 1, dtype=np.float64) * step_s
    if grid[-1] < duration_s - 1e-9:
        grid = np.append(grid, duration_s)
    return from_offsets(start, grid)


@dataclass(slots=True)
class OrbitClock:
    """Orbit time = ``start`` + (wall time - ``epoch_unix_s``) x ``time_scale``.

    Every process given the same three numbers reads the same orbit time (as satellites
    keep time from GNSS): the testbed's nodes, stations and link emulator share one
    clock this way. An epoch of 0 means "not started yet": the clock reads ``start``
    until ``epoch_file`` (JSON ``{"epoch_unix_s": ...}``) appears, so that a testbed's
    orbit time begins when all its processes are up, whatever their start-up took.
    ``wait`` False: report orbital waits but do not hold for them."""

    start: np.datetime64
    time_scale: float = 1.0
    epoch_unix_s: float = field(default_factory=time.time)
    wait: bool = True
    epoch_file: Path | None = None
    _looked: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.time_scale) and self.time_scale > 0):
            raise InputError(f"time scale must be > 0, got {self.time_scale}")
        self.start = self.start.astype("datetime64[ns]")

    @property
    def started(self) -> bool:
        if self.epoch_unix_s > 0 or self.epoch_file is None:
            return True
        now = time.monotonic()
        if now - self._looked >= 0.1:  # look for the file ten times a second at most
            self._looked = now
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                doc = json.loads(self.epoch_file.read_text(encoding="utf-8"))
                self.epoch_unix_s = float(doc["epoch_unix_s"])
        return self.epoch_unix_s > 0

    def elapsed_s(self) -> float:
        """Orbit seconds since ``start`` (0 until the clock has started)."""
        if not self.started:
            return 0.0
        return (time.time() - self.epoch_unix_s) * self.time_scale

    def now(self) -> np.datetime64:
        now: np.datetime64 = from_offsets(self.start, [self.elapsed_s()])[0]
        return now

    def wall_s(self, orbit_s: float) -> float:
        """Wall seconds that ``orbit_s`` orbit seconds take."""
        return orbit_s / self.time_scale

    def wall_until(self, when: np.datetime64) -> float:
        """Wall seconds until orbit time ``when`` (0 if past, or when not waiting)."""
        if not self.wait:
            return 0.0
        return max(0.0, float(offsets_s(when, self.now())) / self.time_scale)
