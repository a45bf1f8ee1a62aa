"""Windows where a sampled function is positive, with edges refined to milliseconds.

The one event finder behind ground passes, laser-link windows and eclipses. Given
``g`` sampled on a coarse uniform grid for many rows (one row per station-satellite
pair, link or satellite) and a vectorised ``evaluate(rows, t_s)``, it

1. brackets every sign change between two samples and bisects it (``tol_s``);
2. finds windows shorter than a grid step that no sample sees: every sampled local
   maximum within ``near_miss`` below zero is refined by golden-section search, and
   kept when the refined maximum is positive (the approach of skyfield's find_events);
3. pairs rises and sets per row (a row already up at the first sample starts there),
   and refines each window's peak by golden-section search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from starcompute.times import FloatArray

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Evaluate = Callable[[IntArray, FloatArray], FloatArray]
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


@dataclass(slots=True)
class Windows:
    """Intervals where g > 0: one entry per window, sorted by (row, start)."""

    row: IntArray
    start_s: FloatArray
    end_s: FloatArray
    peak_s: FloatArray
    peak_value: FloatArray

    def __len__(self) -> int:
        return len(self.row)


def bisect(
    evaluate: Evaluate, rows: IntArray, lo: FloatArray, hi: FloatArray, tol_s: float
) -> FloatArray:
    """Root of g in [lo, hi] per row, where g(lo) and g(hi) differ in sign."""
    lo, hi = lo.copy(), hi.copy()
    if len(rows) == 0:
        return lo
    lo_up = evaluate(rows, lo) > 0
    while np.max(hi - lo) > tol_s:
        mid = 0.5 * (lo + hi)
        same = (evaluate(rows, mid) > 0) == lo_up
        lo = np.where(same, mid, lo)
        hi = np.where(same, hi, mid)
    return 0.5 * (lo + hi)


def golden_max(
    evaluate: Evaluate, rows: IntArray, lo: FloatArray, hi: FloatArray, tol_s: float
) -> tuple[FloatArray, FloatArray]:
    """(t, g(t)) of the maximum of a unimodal g in [lo, hi] per row."""
    a, b = lo.copy(), hi.copy()
    if len(rows) == 0:
        return a, a.copy()
    c = b - _GOLDEN * (b - a)
    d = a + _GOLDEN * (b - a)
    gc, gd = evaluate(rows, c), evaluate(rows, d)
    while np.max(b - a) > tol_s:
        left = gc >= gd  # the maximum lies in [a, d]
        a, b = np.where(left, a, c), np.where(left, d, b)
        new_t = np.where(left, b - _GOLDEN * (b - a), a + _GOLDEN * (b - a))
        new_g = evaluate(rows, new_t)
        c, d, gc, gd = (
            np.where(left, new_t, d),
            np.where(left, c, new_t),
            np.where(left, new_g, gd),
            np.where(left, gc, new_g),
        )
    t = 0.5 * (a + b)
    return t, evaluate(rows, t)


def _local_maxima(g: FloatArray, near_miss: float) -> tuple[IntArray, IntArray]:
    """(row, k) of sampled local maxima with -near_miss < g <= 0 (g padded at the ends)."""
    pad = np.full((g.shape[0], 1), -np.inf)
    left = np.concatenate([pad, g[:, :-1]], axis=1)
    right = np.concatenate([g[:, 1:], pad], axis=1)
    hit = (g >= left) & (g > right) & (g <= 0) & (g > -near_miss)
    rows, ks = np.nonzero(hit)
    return rows.astype(np.int64), ks.astype(np.int64)


def find_windows(
    g: FloatArray,
    t_s: FloatArray,
    evaluate: Evaluate,
    near_miss: float,
    tol_s: float = 1e-3,
) -> Windows:
    """Windows where g > 0 for every row of ``g`` (rows x samples); see module docstring."""
    n_t = g.shape[1]
    up = g > 0
    last = n_t - 1
    # 1. sign changes between samples
    rows_c, k_c = np.nonzero(up[:, :-1] != up[:, 1:])
    t_cross = bisect(evaluate, rows_c, t_s[k_c], t_s[k_c + 1], tol_s)
    kind_c = np.where(up[rows_c, k_c], -1, 1)  # +1 rise, -1 set
    # 2. windows between samples
    rows_m, k_m = _local_maxima(g, near_miss)
    lo = t_s[np.maximum(k_m - 1, 0)]
    hi = t_s[np.minimum(k_m + 1, last)]
    t_pk, g_pk = golden_max(evaluate, rows_m, lo, hi, tol_s)
    ok = g_pk > 0
    rows_m, lo, hi, t_pk = rows_m[ok], lo[ok], hi[ok], t_pk[ok]
    t_rise = bisect(evaluate, rows_m, lo, t_pk, tol_s)
    t_set = bisect(evaluate, rows_m, t_pk, hi, tol_s)
    # 3. pair rises and sets, rows already up at either end included
    first_up = np.flatnonzero(up[:, 0]).astype(np.int64)
    last_up = np.flatnonzero(up[:, last]).astype(np.int64)
    ev_row = np.concatenate([rows_c, rows_m, rows_m, first_up, last_up]).astype(np.int64)
    ev_t = np.concatenate(
        [t_cross, t_rise, t_set, np.full(len(first_up), t_s[0]), np.full(len(last_up), t_s[last])]
    )
    ev_kind = np.concatenate(
        [
            kind_c,
            np.ones(len(rows_m)),
            -np.ones(len(rows_m)),
            np.ones(len(first_up)),
            -np.ones(len(last_up)),
        ]
    )
    order = np.lexsort((-ev_kind, ev_t, ev_row))  # rise before set at equal times
    ev_row, ev_t, ev_kind = ev_row[order], ev_t[order], ev_kind[order]
    rises = np.flatnonzero(ev_kind > 0)
    sets = np.flatnonzero(ev_kind < 0)
    if len(rises) != len(sets) or np.any(ev_row[rises] != ev_row[sets]) or np.any(sets < rises):
        raise RuntimeError("event pairing failed: rises and sets do not alternate")
    row, start, end = ev_row[rises], ev_t[rises], ev_t[sets]
    peak_t, peak_g = _window_peaks(g, t_s, evaluate, row, start, end, tol_s)
    return Windows(row, start, end, peak_t, peak_g)


def window_samples(
    n_t: int, t_s: FloatArray, row: IntArray, start: FloatArray, end: FloatArray
) -> tuple[IntArray, IntArray, BoolArray]:
    """Grid samples inside each window: (window id, flat index into a (rows, n_t) array),
    plus a mask of the windows that contain at least one sample."""
    h = t_s[1] - t_s[0] if len(t_s) > 1 else 1.0
    k_lo = np.clip(np.ceil((start - t_s[0]) / h - 1e-9).astype(np.int64), 0, n_t)
    k_hi = np.clip(np.floor((end - t_s[0]) / h + 1e-9).astype(np.int64), -1, n_t - 1)
    lengths = np.maximum(k_hi - k_lo + 1, 0)
    window = np.repeat(np.arange(len(row)), lengths)
    offsets = np.arange(len(window)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    flat = row[window] * n_t + k_lo[window] + offsets
    return window.astype(np.int64), flat.astype(np.int64), lengths > 0


def _window_peaks(
    g: FloatArray,
    t_s: FloatArray,
    evaluate: Evaluate,
    row: IntArray,
    start: FloatArray,
    end: FloatArray,
    tol_s: float,
) -> tuple[FloatArray, FloatArray]:
    """Golden-section the peak of each window around its best sample."""
    n_t = g.shape[1]
    window, flat, _ = window_samples(n_t, t_s, row, start, end)
    vals = np.nan_to_num(g.ravel()[flat], nan=-np.inf)
    order = np.lexsort((-vals, window))
    first = order[np.r_[0, np.flatnonzero(np.diff(window[order])) + 1]] if len(order) else order
    h = t_s[1] - t_s[0] if len(t_s) > 1 else 1.0
    k_best = np.clip(np.round((start - t_s[0]) / h).astype(np.int64), 0, n_t - 1)
    k_best[window[first]] = flat[first] % n_t
    lo = np.maximum(start, t_s[np.maximum(k_best - 1, 0)])
    hi = np.minimum(end, t_s[np.minimum(k_best + 1, n_t - 1)])
    lo = np.minimum(lo, hi)
    return golden_max(evaluate, row, lo, hi, tol_s)
