"""The public surface is deliberate: adding or removing a name must change this test."""

from __future__ import annotations

import starcompute

EXPECTED = {
    "Constellation",
    "ContactPlan",
    "Eclipses",
    "ElementSetError",
    "Ephemeris",
    "GroundContacts",
    "GroundStation",
    "InputError",
    "IslConfig",
    "IslContacts",
    "PropagationError",
    "StarcomputeError",
    "UnknownPresetError",
    "WalkerShell",
    "__version__",
    "beta_angle_deg",
    "constellation_presets",
    "contact_plan",
    "ecef_to_geodetic",
    "find_eclipses",
    "format_utc",
    "iter_propagate",
    "load_constellation",
    "load_stations",
    "parse_utc",
    "plus_grid",
    "propagate",
    "station_presets",
    "sun_position_teme_km",
    "sun_synchronous_inclination_deg",
    "sunlit_fraction",
    "teme_to_ecef",
    "time_grid",
    "Scenario",
    "SimResult",
    "load_scenario",
    "simulate",
    "TrainConfig",
    "TrainResult",
    "train_runs",
    "resume_run",
    "estimate_run",
}


def test_all_is_locked() -> None:
    assert set(starcompute.__all__) == EXPECTED
    for name in starcompute.__all__:
        assert hasattr(starcompute, name), name


def test_lower_layers_do_not_import_higher_ones() -> None:
    """Data flows one way: orbits -> ... -> mission -> train -> sim; cli on top."""
    import ast
    from pathlib import Path

    order = [
        "errors",
        "data",
        "times",
        "tomlio",
        "orbits",
        "ground",
        "links",
        "spacecraft",
        "compute",
        "security",
        "routing",
        "dtn",
        "node",
        "mission",
        "train",
        "sim",
        "gateway",
        "testbed",
        "cli",
    ]
    root = Path(starcompute.__file__).parent
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).parts
        layer = rel[0].removesuffix(".py")
        if layer not in order or layer == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("starcompute."):
                target = node.module.split(".")[1]  # type: ignore[union-attr]
                if target in order:
                    assert order.index(target) <= order.index(layer), f"{path}: imports {target}"
