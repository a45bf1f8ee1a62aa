"""Coverage-guided fuzzing (atheris / libFuzzer) of everything that parses hostile input.

    .venv/bin/python fuzz/fuzz.py TARGET [libFuzzer flags]     e.g. -runs=100000
    make fuzz                                                   every target, 100,000 inputs
                                                                (fuzz/gate.py: fails on a crash)

Targets: bundle (BPv7 bundles as a node receives them), bpsec (bundles with BPSec blocks
as their destination verifies and decrypts them), job (a job bundle's payload as a
node opens it), telecommand (SDLS-protected commands), tle,
omm-json, omm-csv, scenario (TOML), api (the gateway's request bodies - chat completions,
failures, telecommands - as it parses and uses them). An input must end in a result or in
the target's documented error (the ``InputError`` family of ``errors.py``, nothing
else: a bare ``ValueError`` is a crash); any other exception, a crash or a hang
(libFuzzer's -timeout) fails the run. ``STARCOMPUTE_FUZZ_BREAK=TARGET`` makes that
target crash on every input: the gate's own test that a crash fails ``make fuzz``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable

import atheris
import numpy as np

with atheris.instrument_imports(include=["starcompute", "tomllib", "json", "csv"]):
    from pydantic import ValidationError

    from starcompute.dtn import bundle
    from starcompute.dtn.bpsec import Bpsec
    from starcompute.errors import HttpError, InputError
    from starcompute.gateway.openai_requests import (
        ChatCompletionRequest,
        CompletionRequest,
        ResponsesRequest,
    )
    from starcompute.gateway.schemas import FailureRequest, TelecommandRequest
    from starcompute.mission.failures import Outage
    from starcompute.node import jobs
    from starcompute.orbits import omm, tle
    from starcompute.security.telecommand import Key, SatelliteKeys
    from starcompute.sim.scenario import scenario_from_text

EXPECTED = (InputError,)  # the documented error of hostile input (errors.py's tree)
KEY = Key(1, bytes(range(32)), b"salt")
BPSEC = Bpsec({103: bytes(range(32))})  # satellite ipn:103's keys, as on board and ground


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _api(data: bytes) -> None:
    """The request bodies of the gateway's POST endpoints, as it validates and uses them."""
    for shape in (ChatCompletionRequest, CompletionRequest, ResponsesRequest):
        with contextlib.suppress(ValidationError):
            try:
                shape.model_validate_json(data).asked(default_max_tokens=64)
            except HttpError as exc:  # a 4xx is the answer to a bad request; a 5xx is not
                if exc.status >= 500:
                    raise
    with contextlib.suppress(ValidationError):
        f = FailureRequest.model_validate_json(data)
        Outage.lasting(f.kind, f.target, np.datetime64("2026-01-01T00:00:00"), f.minutes, f.cause)
    with contextlib.suppress(ValidationError):
        packet = TelecommandRequest.model_validate_json(data).packet()
        if packet is not None:
            SatelliteKeys(KEY).open(packet)


TARGETS: dict[str, Callable[[bytes], object]] = {
    "bundle": lambda d: bundle.decode(d),
    "bpsec": lambda d: BPSEC.accept(bundle.decode(d)),
    "job": lambda d: jobs.open_job(SatelliteKeys(KEY), d),
    "telecommand": lambda d: SatelliteKeys(KEY).open(d),
    "tle": lambda d: tle.parse_tle(_text(d)),
    "omm-json": lambda d: omm.parse_omm_json(_text(d)),
    "omm-csv": lambda d: omm.parse_omm_csv(_text(d)),
    "scenario": lambda d: scenario_from_text(_text(d)),
    "api": _api,
}


def one_input(target: Callable[[bytes], object]) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        with contextlib.suppress(EXPECTED):
            target(data)

    return run


ISS = (
    "ISS (ZARYA)\n"
    "1 25544U 98067A   08264.51782528 -.00002182  00000-0 -11606-4 0  2927\n"
    "2 25544  51.6416 247.4627 0006703 130.5360 325.0288 15.72125391563537\n"
)
OMM = {
    "OBJECT_NAME": "ISS (ZARYA)", "OBJECT_ID": "1998-067A", "EPOCH": "2008-09-20T12:25:40.104192",
    "MEAN_MOTION": 15.72125391, "ECCENTRICITY": 0.0006703, "INCLINATION": 51.6416,
    "RA_OF_ASC_NODE": 247.4627, "ARG_OF_PERICENTER": 130.536, "MEAN_ANOMALY": 325.0288,
    "EPHEMERIS_TYPE": 0, "CLASSIFICATION_TYPE": "U", "NORAD_CAT_ID": 25544,
    "ELEMENT_SET_NO": 292, "REV_AT_EPOCH": 56353, "BSTAR": -1.1606e-5,
    "MEAN_MOTION_DOT": -2.182e-5, "MEAN_MOTION_DDOT": 0,
}  # fmt: skip


def _bundles(telemetry: bool = False) -> list[bundle.Bundle]:
    from starcompute.dtn.eid import Eid

    query = bundle.Bundle(Eid(1, 1), Eid(103, 1), 816_912_000_000, 0, b"query")
    down = bundle.Bundle(Eid(103, 3), Eid(1, 3), 816_912_000_000, 1, b'{"battery_wh": 1}')
    return [query, query.forwarded_by(Eid(118, 0)), *([down] if telemetry else [])]


def seeds(name: str) -> list[bytes]:
    """Valid inputs to start the mutations from (the fuzzer then goes everywhere)."""
    import json
    from pathlib import Path

    from starcompute.security.telecommand import Command, GroundKeys

    root = Path(__file__).resolve().parents[1]
    ground = GroundKeys(KEY)
    return {
        "bundle": [bundle.encode(b) for b in _bundles()],
        "bpsec": [bundle.encode(BPSEC.protect(b)) for b in _bundles(telemetry=True)],
        "job": [jobs.seal_job(GroundKeys(KEY), jobs.Query("q", prompt="Hello?"), "smollm2")],
        "telecommand": [ground.seal(Command("set-config", {"max_batch": 8})) for _ in range(2)],
        "tle": [ISS.encode()],
        "omm-json": [json.dumps([OMM]).encode()],
        "omm-csv": [(",".join(OMM) + "\n" + ",".join(str(v) for v in OMM.values())).encode()],
        "scenario": [p.read_bytes() for p in sorted((root / "examples").glob("*.toml"))],
        "api": [
            b'{"model":"smollm2-135m-instruct","messages":[{"role":"user","content":"Hi"}],'
            b'"max_tokens":16,"stream":true,"temperature":0.5,"stop":["\\n"]}',
            b'{"kind":"link","target":"TB500-P00-S01~Kashi","minutes":10,"cause":"outage"}',
            b'{"satellite":"TB500-P00-S01","packet_hex":"'
            + ground.seal(Command("run-job", {"query_id": "q"})).hex().encode()
            + b'"}',
        ],
    }[name]


def _broken(data: bytes) -> None:
    raise RuntimeError("a parser made to crash (STARCOMPUTE_FUZZ_BREAK)")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        print(f"usage: fuzz.py TARGET [libFuzzer flags]; targets: {', '.join(TARGETS)}")
        raise SystemExit(2)
    import tempfile
    from pathlib import Path

    name = sys.argv.pop(1)
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    for i, seed in enumerate(seeds(name)):
        (corpus / f"seed-{i}").write_bytes(seed)
    args = sys.argv + ([] if any(not a.startswith("-") for a in sys.argv[1:]) else [str(corpus)])
    target = TARGETS[name]
    if os.environ.get("STARCOMPUTE_FUZZ_BREAK") == name:
        target = _broken
    atheris.Setup(args, one_input(target))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
