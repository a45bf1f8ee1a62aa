"""Contact plan output: JSON round trip, CSV and Parquet tables, ION-DTN text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from starcompute.errors import InputError
from starcompute.ground.stations import load_stations
from starcompute.links.config import IslConfig
from starcompute.links.contact_plan import FORMATS, ContactPlan
from starcompute.links.contacts import contact_plan
from starcompute.orbits.constellation import load_constellation
from starcompute.times import offsets_s, parse_utc

START = "2025-11-20T00:00:00Z"
DURATION_S = 6 * 3600.0
MS = 1e-3
ION_LINE = re.compile(r"^a (contact|range) \+(\d+) \+(\d+) (\d+) (\d+) (\d+)$")


@pytest.fixture(scope="module")
def plan() -> ContactPlan:
    result = contact_plan(
        load_constellation("three-body-12"),
        load_stations("china"),
        parse_utc(START),
        DURATION_S,
        isl=IslConfig.default(),
    )
    assert len(result.ground) > 0
    assert len(result.isl) > 0
    return result


def test_plan_basics(plan: ContactPlan) -> None:
    assert plan.duration_s == DURATION_S
    assert len(plan.satellites) == 12
    assert len(plan.stations) == 5
    assert np.all(plan.ground.aos_s < plan.ground.los_s)
    assert np.all(plan.isl.start_s < plan.isl.end_s)
    assert np.all((plan.ground.aos_s >= 0) & (plan.ground.los_s <= DURATION_S))


# --- JSON ----------------------------------------------------------------------------------


def assert_same_plan(a: ContactPlan, b: ContactPlan) -> None:
    assert abs(float(offsets_s(b.start, a.start))) < MS
    assert abs(float(offsets_s(b.end, a.end))) < MS
    assert b.satellites == a.satellites
    assert b.stations == a.stations
    assert b.ground_rate_bps == a.ground_rate_bps
    assert b.isl_rate_bps == a.isl_rate_bps
    ga, gb = a.ground, b.ground
    assert gb.station.tolist() == ga.station.tolist()
    assert gb.satellite.tolist() == ga.satellite.tolist()
    for field in ("aos_s", "los_s", "tca_s"):
        np.testing.assert_allclose(getattr(gb, field), getattr(ga, field), rtol=0, atol=MS)
    np.testing.assert_allclose(gb.max_elevation_deg, ga.max_elevation_deg, atol=1e-3)
    np.testing.assert_allclose(gb.min_range_km, ga.min_range_km, atol=1e-3)
    np.testing.assert_allclose(gb.rate_bps, ga.rate_bps, atol=0.5)
    np.testing.assert_allclose(gb.up_rate_bps, ga.up_rate_bps, atol=0.5)
    assert b.uplink_rate_bps == a.uplink_rate_bps
    ia, ib = a.isl, b.isl
    assert ib.a.tolist() == ia.a.tolist()
    assert ib.b.tolist() == ia.b.tolist()
    for field in ("start_s", "end_s"):
        np.testing.assert_allclose(getattr(ib, field), getattr(ia, field), rtol=0, atol=MS)
    np.testing.assert_allclose(ib.min_range_km, ia.min_range_km, atol=1e-3)
    np.testing.assert_allclose(ib.max_range_km, ia.max_range_km, atol=1e-3)


def test_json_round_trip(plan: ContactPlan) -> None:
    doc = json.loads(json.dumps(plan.to_dict()))
    assert doc["start"] == "2025-11-20T00:00:00.000Z"
    assert doc["end"] == "2025-11-20T06:00:00.000Z"
    assert len(doc["ground_contacts"]) == len(plan.ground)
    assert len(doc["isl_contacts"]) == len(plan.isl)
    assert_same_plan(plan, ContactPlan.from_dict(doc))


def test_json_file_round_trip(plan: ContactPlan, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    plan.write(path, "json")
    assert_same_plan(plan, ContactPlan.read_json(path))


def test_json_records_fields(plan: ContactPlan) -> None:
    doc = plan.to_dict()
    g = doc["ground_contacts"][0]
    assert set(g) >= {"station", "satellite", "aos", "los", "tca", "max_elevation_deg"}
    assert g["station"] in plan.stations
    assert g["satellite"] in plan.satellites
    assert g["aos"] < g["tca"] < g["los"]
    i = doc["isl_contacts"][0]
    assert set(i) >= {"a", "b", "start", "end", "min_range_km", "max_range_km"}
    assert all(t.endswith("Z") for r in doc["isl_contacts"] for t in (r["start"], r["end"]))


@pytest.mark.parametrize("key", ["start", "satellites", "ground_contacts", "isl_rate_bps"])
def test_from_dict_missing_key(plan: ContactPlan, key: str) -> None:
    doc = plan.to_dict()
    del doc[key]
    with pytest.raises(InputError, match="not a starcompute contact plan"):
        ContactPlan.from_dict(doc)


def test_read_json_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("{oops", encoding="utf-8")
    with pytest.raises(InputError, match="cannot read contact plan"):
        ContactPlan.read_json(path)


# --- tables --------------------------------------------------------------------------------


def check_table(table: pa.Table, plan: ContactPlan) -> None:
    n_ground, n_isl = len(plan.ground), len(plan.isl)
    assert table.num_rows == n_ground + n_isl
    assert {"kind", "from", "to", "start", "end"} <= set(table.column_names)
    kind = table.column("kind").to_pylist()
    assert kind == ["ground"] * n_ground + ["isl"] * n_isl
    src, dst = table.column("from").to_pylist(), table.column("to").to_pylist()
    assert src[:n_ground] == [plan.stations[i] for i in plan.ground.station]
    assert dst[:n_ground] == [plan.satellites[i] for i in plan.ground.satellite]
    assert src[n_ground:] == [plan.satellites[i] for i in plan.isl.a]
    assert dst[n_ground:] == [plan.satellites[i] for i in plan.isl.b]
    start = table.column("start").cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64())
    end = table.column("end").cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64())
    t0 = np.datetime64(plan.start, "ns").astype(np.int64)
    start_s = (np.asarray(start.to_pylist(), dtype=np.int64) - t0) / 1e9
    end_s = (np.asarray(end.to_pylist(), dtype=np.int64) - t0) / 1e9
    np.testing.assert_allclose(
        start_s, np.concatenate([plan.ground.aos_s, plan.isl.start_s]), rtol=0, atol=MS
    )
    np.testing.assert_allclose(
        end_s, np.concatenate([plan.ground.los_s, plan.isl.end_s]), rtol=0, atol=MS
    )


def test_csv(plan: ContactPlan, tmp_path: Path) -> None:
    path = tmp_path / "plan.csv"
    plan.write(path, "csv")
    check_table(pa_csv.read_csv(path), plan)


def test_parquet(plan: ContactPlan, tmp_path: Path) -> None:
    path = tmp_path / "plan.parquet"
    plan.write(path, "parquet")
    table = pq.read_table(path)
    assert table.schema.field("start").type == pa.timestamp("ns", tz="UTC")
    check_table(table, plan)


# --- ION -----------------------------------------------------------------------------------


def test_ion(plan: ContactPlan, tmp_path: Path) -> None:
    path = tmp_path / "plan.ion"
    plan.write(path, "ion")
    text = path.read_text(encoding="utf-8")
    assert text == plan.to_ion()
    n_windows = len(plan.ground) + len(plan.isl)
    n_nodes = len(plan.satellites) + len(plan.stations)
    contacts: list[tuple[int, int, int, int]] = []
    ranges: list[tuple[int, int, int, int]] = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = ION_LINE.match(line)
        assert match, f"not an ION contact-plan line: {line!r}"
        kind, start, stop, a, b, value = match.groups()
        row = (int(start), int(stop), int(a), int(b))
        assert int(start) < int(stop)
        assert int(start) >= 0
        assert int(stop) <= int(np.ceil(DURATION_S))
        assert 1 <= int(a) <= n_nodes and 1 <= int(b) <= n_nodes and a != b
        assert int(value) > 0
        (contacts if kind == "contact" else ranges).append(row)
    assert len(contacts) == 2 * n_windows
    assert len(ranges) == 2 * n_windows
    # every contact in both directions, with a matching range
    assert sorted(contacts) == sorted((s, e, b, a) for s, e, a, b in contacts)
    assert sorted(ranges) == sorted(contacts)


def test_uplink_and_downlink_have_budgets_of_their_own() -> None:
    """With an S-band uplink budget and an X-band downlink budget each pass carries its
    own rate each way, in the plan, its ION export and the contact graph's contacts."""
    from starcompute.links.budgets import RfLinkConfig
    from starcompute.routing.cgr import contact_graph

    up, down = RfLinkConfig.preset("s-band-up"), RfLinkConfig.preset("x-band")
    two_way = contact_plan(
        load_constellation("three-body-12"), load_stations("china"), parse_utc(START),
        3 * 3600.0, rf=down, rf_up=up,
    )  # fmt: skip
    g = two_way.ground
    assert len(g) > 5
    assert np.all((g.up_rate_bps > 5e6) & (g.up_rate_bps <= 16.5e6))  # S-band: <= 16.5 Mbps
    assert np.all(g.rate_bps > 1e8)  # X-band: hundreds of Mbps
    n_sat = len(two_way.satellites)
    graph = contact_graph(two_way)
    ups = [c for c in graph.contacts if c.src >= n_sat]
    downs = [c for c in graph.contacts if c.dst >= n_sat]
    assert sorted(c.rate_bps for c in ups) == sorted(g.up_rate_bps.tolist())
    assert sorted(c.rate_bps for c in downs) == sorted(g.rate_bps.tolist())
    rates = {
        (int(a), int(b)): int(v)
        for kind, _, _, a, b, v in (
            ION_LINE.match(ln).groups() for ln in two_way.to_ion().splitlines() if ln[0] == "a"
        )
        if kind == "contact" and max(int(a), int(b)) > n_sat  # a ground contact
    }
    assert any(v * 8 <= 16.5e6 for (a, _), v in rates.items() if a > n_sat)  # station -> sat
    assert all(v * 8 > 1e8 for (a, _), v in rates.items() if a <= n_sat)  # sat -> station
    with pytest.raises(InputError, match="a downlink budget; for the uplink choose one of"):
        contact_plan(
            load_constellation("three-body-12"), load_stations("china"), parse_utc(START),
            600.0, rf_up=down,
        )  # fmt: skip


def test_ion_header_names_nodes(plan: ContactPlan) -> None:
    comments = [ln for ln in plan.to_ion().splitlines() if ln.startswith("# node")]
    assert comments[0] == f"# node 1 = {plan.satellites[0]}"
    assert comments[-1] == f"# node {len(comments)} = {plan.stations[-1]}"


# --- formats -------------------------------------------------------------------------------


def test_formats() -> None:
    assert set(FORMATS) == {"json", "csv", "parquet", "ion"}


@pytest.mark.parametrize("fmt", ["xml", "JSON", ""])
def test_unknown_format(plan: ContactPlan, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "plan.out"
    with pytest.raises(InputError) as info:
        plan.write(path, fmt)
    message = str(info.value)
    assert "unknown contact-plan format" in message
    assert all(f in message for f in FORMATS)
    assert not path.exists()
