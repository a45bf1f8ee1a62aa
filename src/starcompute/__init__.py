"""starcompute: AI computing in orbit.

The public surface; ``tests/test_public_api.py`` locks ``__all__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from starcompute.errors import (
    ElementSetError,
    InputError,
    PropagationError,
    StarcomputeError,
    UnknownPresetError,
)
from starcompute.ground.stations import GroundStation, load_stations, station_presets
from starcompute.links.config import IslConfig
from starcompute.links.contact_plan import ContactPlan, GroundContacts, IslContacts
from starcompute.links.contacts import contact_plan
from starcompute.links.topology import plus_grid
from starcompute.orbits.constellation import (
    Constellation,
    constellation_presets,
    load_constellation,
)
from starcompute.orbits.eclipse import (
    Eclipses,
    beta_angle_deg,
    find_eclipses,
    sunlit_fraction,
)
from starcompute.orbits.frames import ecef_to_geodetic, teme_to_ecef
from starcompute.orbits.propagate import Ephemeris, iter_propagate, propagate
from starcompute.orbits.sun import sun_position_teme_km
from starcompute.orbits.walker import WalkerShell, sun_synchronous_inclination_deg
from starcompute.times import format_utc, parse_utc, time_grid

if TYPE_CHECKING:
    from starcompute.sim.metrics import SimResult
    from starcompute.sim.run import simulate
    from starcompute.sim.scenario import Scenario, load_scenario
    from starcompute.train.config import TrainConfig
    from starcompute.train.result import TrainResult
    from starcompute.train.run import estimate_run, resume_run, train_runs

# the simulator and training load on first use: a node process needs neither
_LAZY = {
    "SimResult": "starcompute.sim.metrics",
    "simulate": "starcompute.sim.run",
    "Scenario": "starcompute.sim.scenario",
    "load_scenario": "starcompute.sim.scenario",
    "TrainConfig": "starcompute.train.config",
    "TrainResult": "starcompute.train.result",
    "estimate_run": "starcompute.train.run",
    "resume_run": "starcompute.train.run",
    "train_runs": "starcompute.train.run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'starcompute' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
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
    "Scenario",
    "SimResult",
    "StarcomputeError",
    "TrainConfig",
    "TrainResult",
    "UnknownPresetError",
    "WalkerShell",
    "__version__",
    "beta_angle_deg",
    "constellation_presets",
    "contact_plan",
    "ecef_to_geodetic",
    "estimate_run",
    "find_eclipses",
    "format_utc",
    "iter_propagate",
    "load_constellation",
    "load_scenario",
    "load_stations",
    "parse_utc",
    "plus_grid",
    "propagate",
    "resume_run",
    "simulate",
    "station_presets",
    "sun_position_teme_km",
    "sun_synchronous_inclination_deg",
    "sunlit_fraction",
    "teme_to_ecef",
    "time_grid",
    "train_runs",
]
