"""The offline HTML reports of a simulation and of a sweep."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from starcompute.sim.metrics import SimResult
from starcompute.sim.report import write_report, write_sweep_report
from starcompute.sim.run import simulate
from starcompute.sim.scenario import load_scenario

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "three-body-12.toml"
PNG = "data:image/png;base64,"


@pytest.fixture(scope="module")
def result() -> SimResult:
    return simulate(load_scenario(EXAMPLE).with_overrides({"duration_h": 2.0}))


@pytest.fixture(scope="module")
def report_html(result: SimResult, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = write_report(result, tmp_path_factory.mktemp("report") / "sub" / "report.html")
    assert path.is_file()
    return path.read_text(encoding="utf-8")


def _cells(page: str) -> list[str]:
    return re.findall(r"<td[^>]*>(.*?)</td>", page)


def test_report_has_name_and_headline_numbers(result: SimResult, report_html: str) -> None:
    s = result.summary
    assert "three-body-12" in report_html
    assert result.name in report_html
    cells = _cells(report_html)
    assert f"{s['requests']:,}" in cells
    assert f"{s['completed']:,}" in cells
    assert f"{s['latency_s']['p50']:,.2f} s" in cells
    assert f"{100 * s['fraction_under_120s']:,.2f} %" in cells
    for reason in s["rejected_by_reason"]:
        assert reason in report_html
    for station in result.stations["station"]:
        assert str(station) in report_html


def test_report_is_offline_with_images(report_html: str) -> None:
    assert report_html.count(PNG) >= 6
    assert "http://" not in report_html
    assert "https://" not in report_html
    assert not re.search(r"(src|href)=\"(?!data:)", report_html)
    assert "ITU-R P.1511" in report_html or "graticule only" in report_html


def test_report_escapes_text(result: SimResult, tmp_path: Path) -> None:
    odd = SimResult(
        "<b>odd & name</b>",
        result.summary,
        result.requests,
        result.satellites,
        result.series,
        result.stations,
        result.tracks,
        result.served,
        result.allocations,
    )
    page = write_report(odd, tmp_path / "odd.html").read_text(encoding="utf-8")
    assert "&lt;b&gt;odd &amp; name&lt;/b&gt;" in page
    assert "<b>odd" not in page


def test_report_without_completed_requests(result: SimResult, tmp_path: Path) -> None:
    requests = dict(result.requests, latency_s=np.full(len(result.requests["latency_s"]), np.nan))
    served = {k: v[:0] for k, v in result.served.items()}
    empty = SimResult(
        result.name,
        {"requests": 0, "completed": 0},
        requests,
        result.satellites,
        result.series,
        result.stations,
        result.tracks,
        served,
        result.allocations,
    )
    page = write_report(empty, tmp_path / "empty.html").read_text(encoding="utf-8")
    assert page.count(PNG) >= 6


def test_sweep_report(tmp_path: Path) -> None:
    varied = ["ground.stations", "scheduler.policy"]
    rows = [
        {
            "ground.stations": stations,
            "scheduler.policy": policy,
            "completed": completed,
            "latency_s.p50": p50,
            "latency_s.p99": p50 * 6,
            "fraction_under_120s": under,
            "energy_per_query_j": 4600.0,
            "satellite_utilization_mean": 0.014,
        }
        for stations, policy, completed, p50, under in [
            ("china", "earliest-completion", 1234, 8.06, 0.9962),
            ("china,ksat", "earliest-completion", 1250, 6.5, 0.998),
            ("china,ksat", "<round & robin>", 1190, 9.25, 0.97),
        ]
    ]
    page = write_sweep_report(rows, varied, tmp_path / "sweep.html").read_text(encoding="utf-8")
    assert page.count(PNG) == 1
    assert page.count("<tr>") == len(rows) + 1  # header and one row each
    cells = _cells(page)
    for text in ("1,234", "1,250", "1,190", "8.06", "0.9962", "china,ksat"):
        assert text in cells
    assert "&lt;round &amp; robin&gt;" in page
    assert "http://" not in page and "https://" not in page
