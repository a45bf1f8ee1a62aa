"""Self-contained offline HTML reports of simulations (no external URL: plots are PNG images
embedded as base64, drawn with matplotlib's Agg canvas without pyplot's global state).

``write_report`` writes one page for one simulation:

* the scenario's name and size, and a headline table of its summary (requests, completed,
  rejected by reason, latency p50/p95/p99, share under 120 s, tokens/s, energy per query,
  utilisation, lowest battery state of charge, downlink/laser-link bytes, Earth-observation
  downlink saved);
* a bar chart of the mean latency breakdown (terrestrial, wait for contact, up, queue,
  inference, down);
* the latency CDF of completed requests (log time axis, 120 s marked);
* over time (hours): arrivals and deliveries per second with tokens/s on a twin axis, the
  mean utilisation of inference satellites, the battery state of charge (min and mean) and
  the requests in the system;
* a world map (equirectangular): land from the ITU-R P.1511 topography shipped with the
  ``itur`` package (a graticule only when it is missing), ground tracks of a few satellites,
  the ground stations (labelled, with a table of their up/downlinks) and a 2-D histogram of
  where queries were served.

``write_sweep_report`` writes a comparison page of a parameter sweep: a table of every
combination and grouped bars of completed requests, share under 120 s and latency p50/p99.

Large results are aggregated before drawing (sorted-quantile CDF, binned map), so a
1,000,000-request day takes about a second.
"""

from __future__ import annotations

import base64
import functools
import html
import importlib.util
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from starcompute.sim.metrics import SimResult

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
DPI = 96
CDF_POINTS = 2000  # quantiles drawn for the latency CDF
MAP_BIN_DEG = 2.0  # cell of the "where queries were served" histogram
LAND_STEP = 3  # keep every 3rd cell of the 1/12-degree topography grid (1/4 degree)
TOPO_FILE = ("data", "1511", "v2_topo.npz")  # inside the itur package
TOPO_SHAPE = (2164, 4324)  # rows from 90.125 N to 90.125 S, columns from 180.125 W to E
LAND_SOURCE = "land: ITU-R P.1511-2 topography (shipped with the itur package)"
NO_LAND = "graticule only (no offline land outline found)"

CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; }
figure { margin: 1em 0; } img { max-width: 100%; }
figcaption { color: #555; font-size: 0.9em; }
"""


# ----------------------------------------------------------------------------- public API


def write_report(result: SimResult, path: Path) -> Path:
    """Write the HTML report of one simulation to ``path``; returns ``path``."""
    s = result.summary
    body = [
        f"<h1>Simulation report: {_esc(result.name)}</h1>",
        f"<p>{_esc(_scope_line(s))}</p>",
        "<h2>Headline</h2>",
        _table(["metric", "value"], _headline_rows(s)),
        *_figures(result),
        "<h2>Ground stations</h2>",
        _table(["station", "lat (°)", "lon (°)", "uplinks", "downlinks"], _station_rows(result)),
    ]
    return _write(path, _page(f"starcompute report: {result.name}", body))


def write_sweep_report(rows: list[dict[str, Any]], varied: list[str], path: Path) -> Path:
    """Write the HTML comparison page of a parameter sweep to ``path``; returns ``path``."""
    columns = _sweep_columns(rows, varied)
    cells = [[_fmt_cell(r.get(c)) for c in columns] for r in rows]
    labels = [_combination_label(r, varied) for r in rows]
    body = [
        f"<h1>Sweep report: {len(rows)} scenarios</h1>",
        f"<p>Varied: {_esc(', '.join(varied) or '(nothing)')}</p>",
        _table(columns, cells),
        _figure(_sweep_figure(rows, labels), "Comparison of the combinations of the sweep."),
    ]
    return _write(path, _page("starcompute sweep report", body))


# ----------------------------------------------------------------------------- HTML


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _page(title: str, body: Sequence[str]) -> str:
    head = f'<meta charset="utf-8"><title>{_esc(title)}</title><style>{CSS}</style>'
    return (
        f"<!DOCTYPE html>\n<html><head>{head}</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>\n" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"


def _td(cell: str) -> str:
    numeric = bool(cell) and (cell[0].isdigit() or cell[0] in "-+.") and cell != "-"
    return f'<td class="num">{_esc(cell)}</td>' if numeric else f"<td>{_esc(cell)}</td>"


def _figure(fig: Figure, caption: str) -> str:
    alt = _esc(caption.split(". ")[0].rstrip("."))
    img = f'<img alt="{alt}" src="data:image/png;base64,{_png_base64(fig)}">'
    return f"<figure>{img}<figcaption>{_esc(caption)}</figcaption></figure>"


def _write(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- formatting


def _get(summary: dict[str, Any], dotted: str) -> Any:
    """summary["a"]["b"] for "a.b"; None where a key is missing."""
    value: Any = summary
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _is_num(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool)


def _fmt_int(x: Any) -> str:
    return f"{int(x):,}" if _is_num(x) and math.isfinite(float(x)) else "-"


def _fmt_float(x: Any, unit: str = "", digits: int = 3) -> str:
    if not _is_num(x) or not math.isfinite(float(x)):
        return "-"
    return f"{float(x):,.{digits}f}{unit}"


def _fmt_pct(x: Any) -> str:
    return _fmt_float(100.0 * float(x), " %", 2) if _is_num(x) else "-"


def _fmt_bytes(x: Any) -> str:
    if not _is_num(x) or not math.isfinite(float(x)):
        return "-"
    value = float(x)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(value) < 1000.0 or unit == "PB":
            return f"{value:,.0f} B" if unit == "B" else f"{value:,.2f} {unit}"
        value /= 1000.0
    return "-"  # unreachable


def _fmt_cell(x: Any) -> str:
    """A sweep table cell: integers with thousands separators, floats to 4 digits."""
    if isinstance(x, bool) or not _is_num(x):
        return "" if x is None else str(x)
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    return f"{float(x):.4g}" if math.isfinite(float(x)) else "-"


def _scope_line(s: dict[str, Any]) -> str:
    return (
        f"{_fmt_int(_get(s, 'satellites'))} satellites, {_fmt_int(_get(s, 'stations'))} ground "
        f"stations, {_fmt_float(_get(s, 'duration_h'), ' h', 1)} of arrivals."
    )


def _rejected_text(s: dict[str, Any]) -> str:
    reasons = _get(s, "rejected_by_reason") or {}
    detail = ", ".join(f"{k} {_fmt_int(v)}" for k, v in reasons.items())
    total = _fmt_int(_get(s, "rejected"))
    return f"{total} ({detail})" if detail else total


def _headline_rows(s: dict[str, Any]) -> list[list[str]]:
    f = _fmt_float
    rows = [
        ("requests", _fmt_int(_get(s, "requests"))),
        ("completed", _fmt_int(_get(s, "completed"))),
        ("rejected (by reason)", _rejected_text(s)),
        ("latency p50", f(_get(s, "latency_s.p50"), " s", 2)),
        ("latency p95", f(_get(s, "latency_s.p95"), " s", 2)),
        ("latency p99", f(_get(s, "latency_s.p99"), " s", 2)),
        ("delivered within 120 s (of all requests)", _fmt_pct(_get(s, "fraction_under_120s"))),
        ("tokens per second", f(_get(s, "tokens_per_s"), "", 2)),
        ("energy per query", f(_get(s, "energy_per_query_j"), " J", 0)),
        (
            "mean utilisation of inference satellites",
            _fmt_pct(_get(s, "satellite_utilization_mean")),
        ),
        ("lowest battery state of charge", _fmt_pct(_get(s, "battery_soc_min"))),
        ("downlink", _fmt_bytes(_get(s, "downlink_bytes"))),
        ("laser links (each hop)", _fmt_bytes(_get(s, "isl_bytes"))),
        (
            "Earth observation: downlink saved",
            _fmt_bytes(_get(s, "earth_observation.downlink_bytes_saved")),
        ),
    ]
    return [list(r) for r in rows]


def _station_rows(result: SimResult) -> list[list[str]]:
    st = result.stations
    return [
        [str(name), f"{lat:.2f}", f"{lon:.2f}", f"{int(up):,}", f"{int(down):,}"]
        for name, lat, lon, up, down in zip(
            st["station"], st["lat_deg"], st["lon_deg"], st["uplinks"], st["downlinks"], strict=True
        )
    ]


# ----------------------------------------------------------------------------- figures


def _new_figure(width: float = 9.0, height: float = 3.6) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png_base64(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figures(result: SimResult) -> list[str]:
    s, series = result.summary, result.series
    land = _land_mask()
    return [
        "<h2>Latency</h2>",
        _figure(_breakdown_figure(s), "Mean latency of completed requests, by part."),
        _figure(_cdf_figure(result.requests["latency_s"]), _cdf_caption(s)),
        "<h2>Over time</h2>",
        _figure(_throughput_figure(series), "Arrivals, deliveries and tokens per second."),
        _figure(_utilisation_figure(series), "Mean utilisation of inference satellites."),
        _figure(_soc_figure(series), "Battery state of charge with the planned load."),
        _figure(_in_system_figure(series), "Requests in the system (arrived, not delivered)."),
        "<h2>Map</h2>",
        _figure(_map_figure(result, land), _map_caption(land is not None)),
    ]


def _no_data(ax: Axes, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777")


def _breakdown_figure(s: dict[str, Any]) -> Figure:
    parts = _get(s, "latency_parts_mean_s") or {}
    fig = _new_figure(9.0, 2.8)
    ax = fig.add_subplot()
    names = [str(k).replace("_", " ") for k in parts]
    bars = ax.barh(names, [float(v) for v in parts.values()], color="#4c72b0")
    ax.bar_label(bars, fmt="%.2f s", padding=3, fontsize=8)
    ax.margins(x=0.12)
    ax.invert_yaxis()
    ax.set_xlabel("mean seconds per completed request")
    if not parts:
        _no_data(ax)
    return fig


def _cdf_points(latency: FloatArray) -> tuple[FloatArray, FloatArray]:
    """At most CDF_POINTS (latency, share) points of the CDF of the finite latencies."""
    done = np.sort(latency[np.isfinite(latency)])
    if len(done) == 0:
        return np.zeros(0), np.zeros(0)
    idx = np.unique(np.linspace(0, len(done) - 1, CDF_POINTS).astype(np.int64))
    return done[idx], (idx + 1) / len(done)


def _cdf_figure(latency: FloatArray) -> Figure:
    x, y = _cdf_points(np.asarray(latency, dtype=np.float64))
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.axvline(120.0, color="#c44e52", ls="--", lw=1, label="120 s")
    if len(x):
        ax.step(np.maximum(x, 1e-3), y, where="post", color="#4c72b0", label="completed")
        ax.set_xscale("log")
    else:
        _no_data(ax, "no completed requests")
    ax.set(xlabel="latency (s)", ylabel="share of completed requests", ylim=(0, 1.02))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def _cdf_caption(s: dict[str, Any]) -> str:
    share = _fmt_pct(_get(s, "fraction_under_120s"))
    return f"Latency CDF of completed requests; {share} of all requests delivered within 120 s."


def _hours(series: dict[str, np.ndarray]) -> FloatArray:
    return np.asarray(series["t_s"], dtype=np.float64) / 3600.0


def _bin_s(series: dict[str, np.ndarray]) -> float:
    t = np.asarray(series["t_s"], dtype=np.float64)
    return float(t[1] - t[0]) if len(t) > 1 and t[1] > t[0] else 60.0


def _time_axes(width: float = 9.0, height: float = 3.2) -> tuple[Figure, Axes]:
    fig = _new_figure(width, height)
    ax = fig.add_subplot()
    ax.set_xlabel("time (h)")
    ax.grid(True, alpha=0.3)
    return fig, ax


def _throughput_figure(series: dict[str, np.ndarray]) -> Figure:
    fig, ax = _time_axes()
    h, dt = _hours(series), _bin_s(series)
    ax.plot(h, series["arrivals"] / dt, lw=1, color="#4c72b0", label="arrivals")
    ax.plot(h, series["delivered"] / dt, lw=1, color="#55a868", label="deliveries")
    ax.set_ylabel("requests per s")
    twin = ax.twinx()
    twin.plot(h, series["tokens_per_s"], lw=1, color="#dd8452", alpha=0.8, label="tokens/s")
    twin.set_ylabel("tokens per s")
    lines = ax.get_lines() + twin.get_lines()
    ax.legend(lines, [str(ln.get_label()) for ln in lines], loc="upper left")
    return fig


def _utilisation_figure(series: dict[str, np.ndarray]) -> Figure:
    fig, ax = _time_axes()
    ax.plot(_hours(series), 100.0 * series["utilization_mean"], lw=1, color="#8172b3")
    ax.set(ylabel="utilisation (%)", ylim=(0, None))
    return fig


def _soc_figure(series: dict[str, np.ndarray]) -> Figure:
    fig, ax = _time_axes()
    h = _hours(series)
    ax.plot(h, 100.0 * series["soc_mean"], lw=1, color="#55a868", label="mean")
    ax.plot(h, 100.0 * series["soc_min"], lw=1, color="#c44e52", label="min")
    ax.set(ylabel="state of charge (%)", ylim=(0, 100))
    ax.legend(loc="lower left")
    return fig


def _in_system_figure(series: dict[str, np.ndarray]) -> Figure:
    fig, ax = _time_axes()
    ax.plot(_hours(series), series["in_system"], lw=1, color="#4c72b0")
    ax.set(ylabel="requests in the system", ylim=(0, None))
    return fig


# ----------------------------------------------------------------------------- map


@functools.cache
def _land_mask() -> BoolArray | None:
    """Land (topography != 0: the sea is 0) on a 1/4-degree grid, north row first, from
    the ITU-R P.1511-2 data file inside the itur package; None when it cannot be read."""
    spec = importlib.util.find_spec("itur")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*TOPO_FILE)
    try:
        with np.load(path) as data:
            topo = np.asarray(data[data.files[0]])
    except (OSError, ValueError, IndexError):
        return None
    if topo.shape != TOPO_SHAPE:
        return None
    return np.asarray(topo[1:-1:LAND_STEP, 1:-1:LAND_STEP] != 0.0)


def _draw_land(ax: Axes, land: BoolArray | None) -> None:
    """The land mask as an image (its samples are within 0.1 degree of a regular grid)."""
    if land is None:
        return
    cmap = ListedColormap(["#ffffff", "#e4e0d4"])
    extent = (-180.0, 180.0, -90.0, 90.0)
    ax.imshow(land, cmap=cmap, extent=extent, origin="upper", interpolation="nearest", zorder=0)
    lat = np.linspace(90.0, -90.0, land.shape[0])
    lon = np.linspace(-180.0, 180.0, land.shape[1])
    ax.contour(
        lon,
        lat,
        land.astype(np.float32),
        levels=[0.5],
        colors="#333333",
        linewidths=0.5,
        zorder=1.5,
    )


def _served_histogram(served: dict[str, np.ndarray]) -> FloatArray:
    """Queries served per MAP_BIN_DEG cell, (lat, lon) with south first; NaN where none."""
    lon_edges = np.arange(-180.0, 180.0 + MAP_BIN_DEG, MAP_BIN_DEG)
    lat_edges = np.arange(-90.0, 90.0 + MAP_BIN_DEG, MAP_BIN_DEG)
    counts, _, _ = np.histogram2d(
        np.asarray(served["lat_deg"], dtype=np.float64),
        np.asarray(served["lon_deg"], dtype=np.float64),
        bins=(lat_edges, lon_edges),
        weights=np.asarray(served["queries"], dtype=np.float64),
    )
    return np.where(counts > 0, counts, np.nan)


def _draw_served(fig: Figure, ax: Axes, served: dict[str, np.ndarray]) -> None:
    counts = _served_histogram(served)
    if not np.isfinite(counts).any():
        return
    hi = float(np.nanmax(counts))
    norm = LogNorm(vmin=1.0, vmax=max(hi, 10.0))
    image = ax.imshow(
        counts,
        extent=(-180, 180, -90, 90),
        origin="lower",
        cmap="viridis",
        norm=norm,
        alpha=0.7,
        interpolation="nearest",
        zorder=1,
    )
    fig.colorbar(image, ax=ax, shrink=0.7, label=f"queries served per {MAP_BIN_DEG:g}° cell")


def _wrap_split(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Insert NaN between points where a track crosses the antimeridian (no wrap lines)."""
    cut = np.flatnonzero(np.abs(np.diff(lon)) > 180.0) + 1
    return np.insert(lon, cut, np.nan), np.insert(lat, cut, np.nan)


def _draw_tracks(ax: Axes, tracks: dict[str, np.ndarray]) -> None:
    lat = np.atleast_2d(np.asarray(tracks["lat_deg"], dtype=np.float64))
    lon = np.atleast_2d(np.asarray(tracks["lon_deg"], dtype=np.float64))
    for k in range(lat.shape[0]):
        x, y = _wrap_split(lon[k], lat[k])
        ax.plot(x, y, lw=0.9, color="#d62728", alpha=0.8, zorder=2)


def _draw_stations(ax: Axes, stations: dict[str, np.ndarray]) -> None:
    lat = np.asarray(stations["lat_deg"], dtype=np.float64)
    lon = np.asarray(stations["lon_deg"], dtype=np.float64)
    ax.scatter(lon, lat, marker="^", s=36, color="#222222", edgecolors="white", zorder=3)
    for name, x, y in zip(stations["station"], lon, lat, strict=True):
        ax.annotate(str(name), (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)


def _map_figure(result: SimResult, land: BoolArray | None) -> Figure:
    fig = _new_figure(10.0, 5.4)
    ax = fig.add_subplot()
    _draw_land(ax, land)
    _draw_served(fig, ax, result.served)
    _draw_tracks(ax, result.tracks)
    _draw_stations(ax, result.stations)
    ax.set(xlim=(-180, 180), ylim=(-90, 90), xlabel="longitude (°)", ylabel="latitude (°)")
    ax.set_xticks(np.arange(-180, 181, 30))
    ax.set_yticks(np.arange(-90, 91, 30))
    ax.set_aspect("equal")
    ax.grid(True, color="#999999", lw=0.4, alpha=0.5)
    return fig


def _map_caption(has_land: bool) -> str:
    background = LAND_SOURCE if has_land else NO_LAND
    return (
        "Where queries were served (under the serving satellite when its batch started), "
        "ground tracks of a few satellites over the first hours (red) and the ground "
        f"stations (triangles). Equirectangular; {background}."
    )


# ----------------------------------------------------------------------------- sweep


SWEEP_PANELS = (  # (axis label, ((summary key, legend label), ...))
    ("completed requests", (("completed", "completed"),)),
    ("share within 120 s", (("fraction_under_120s", "within 120 s"),)),
    ("latency (s)", (("latency_s.p50", "p50"), ("latency_s.p99", "p99"))),
)
ROTATE_LABELS_OVER = 12  # combinations; beyond, their labels are slanted


def _sweep_columns(rows: list[dict[str, Any]], varied: list[str]) -> list[str]:
    """The varied keys first, then every other key in the order it first appears."""
    columns = list(varied)
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def _combination_label(row: dict[str, Any], varied: list[str]) -> str:
    return "\n".join(f"{k.rsplit('.', 1)[-1]}={row.get(k)}" for k in varied) or "base"


def _metric(rows: list[dict[str, Any]], key: str) -> FloatArray:
    return np.array([float(r[key]) if _is_num(r.get(key)) else np.nan for r in rows])


def _sweep_figure(rows: list[dict[str, Any]], labels: list[str]) -> Figure:
    """One axis per panel, stacked, sharing the combinations along x."""
    width = min(max(8.0, 1.1 * len(rows) + 2.0), 24.0)
    fig = _new_figure(width, 2.3 * len(SWEEP_PANELS) + 1.0)
    axes = fig.subplots(len(SWEEP_PANELS), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (ylabel, keys) in zip(axes, SWEEP_PANELS, strict=True):
        _grouped_bars(ax, rows, keys)
        ax.set_ylabel(ylabel)
    slant = len(rows) > ROTATE_LABELS_OVER
    x = np.arange(len(rows), dtype=np.float64)
    axes[-1].set_xticks(
        x, labels, fontsize=7, rotation=30 if slant else 0, ha="right" if slant else "center"
    )
    return fig


def _grouped_bars(ax: Axes, rows: list[dict[str, Any]], keys: Sequence[tuple[str, str]]) -> None:
    """Bars of each key side by side for every combination."""
    x = np.arange(len(rows), dtype=np.float64)
    width = 0.8 / len(keys)
    for k, (key, label) in enumerate(keys):
        ax.bar(x + (k - (len(keys) - 1) / 2) * width, _metric(rows, key), width, label=label)
    ax.grid(True, axis="y", alpha=0.3)
    if len(keys) > 1:
        ax.legend(fontsize=8)
