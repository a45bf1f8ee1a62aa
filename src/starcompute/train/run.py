"""A training run end to end: constellation -> orbit -> corpus -> method -> result."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from starcompute.compute.cards import load_card
from starcompute.errors import InputError
from starcompute.orbits.constellation import Constellation, load_constellation
from starcompute.times import format_utc, parse_utc
from starcompute.train.config import TrainConfig
from starcompute.train.corpus import load_corpus
from starcompute.train.estimate import DAY_S, Network, estimate
from starcompute.train.orbit import Orbit, training_satellites
from starcompute.train.result import TrainResult, write_comparison

DEFAULT_CONSTELLATION = "star-compute-2800"
UNIX_EPOCH_JD = 2440587.5
CHINCHILLA_TOKENS_PER_PARAM = 20  # compute-optimal (Hoffmann et al. 2022, arXiv:2203.15556)


def epoch_of(const: Constellation) -> np.datetime64:
    """The element epoch of the first satellite (a Walker preset's reference epoch)."""
    s = const.satrecs[0]
    ns = round(((s.jdsatepoch - UNIX_EPOCH_JD) + s.jdsatepochF) * DAY_S * 1e9)
    return np.datetime64(int(ns), "ns")


def orbit_for(
    cfg: TrainConfig, constellation: str, start: str | None, step_s: float | None
) -> Orbit:
    const = load_constellation(constellation)
    t0 = parse_utc(start) if start else epoch_of(const)
    expected_s = cfg.steps * (step_s or 0.0) * 1.5
    return Orbit.for_workers(
        const, cfg.workers, t0, expected_s, pause_in_eclipse=cfg.pause_in_eclipse
    )


def _meta_start(orbit: Orbit) -> str:
    return str(format_utc(orbit.start, digits=9))


def train_runs(
    cfg: TrainConfig,
    methods: list[str],
    constellation: str = DEFAULT_CONSTELLATION,
    start: str | None = None,
    out: Path | None = None,
    on_step: Callable[[int], None] | None = None,
) -> list[TrainResult]:
    """Train ``cfg`` with each method, for real, on the constellation's training
    satellites and the orbital clock, all from one shared start (pretrained once);
    with ``out``, each method's outputs and checkpoints go to ``out/METHOD`` (to ``out``
    itself for a single method) and a comparison plot to ``out/loss.png``."""
    from starcompute.train.methods import Run, train
    from starcompute.train.model import pretrain

    corpus = load_corpus(cfg.corpus, cfg.workers, cfg.shard_kib * 1024, cfg.window)
    orbit = orbit_for(cfg, constellation, start, cfg.step_s)
    start_model = pretrain(cfg, corpus.shards[0])
    results = []
    for method in methods:
        mcfg = dataclasses.replace(cfg, method=method)
        where = None if out is None else (out if len(methods) == 1 else out / method)
        meta = {
            "config": mcfg.to_dict(),
            "constellation": constellation,
            "start": _meta_start(orbit),
        }
        run = Run(mcfg, orbit, corpus, cfg.step_s, where, on_step, meta, start_model)
        results.append(train(run))
        if where is not None:
            results[-1].write(where)
    if out is not None:
        write_comparison(out, results)
    return results


def resume_run(
    checkpoints: Path, out: Path | None = None, on_step: Callable[[int], None] | None = None
) -> TrainResult:
    """Continue the run whose newest checkpoint is under ``checkpoints`` (same settings,
    same orbit); lost satellites (missing files) stay lost. Outputs and new checkpoints
    go to ``out`` (default: the run's own folder)."""
    from starcompute.train import checkpoint
    from starcompute.train.methods import Run, train

    meta = checkpoint.read_meta(checkpoints)
    out = out or checkpoint.run_dir(checkpoints)
    cfg = TrainConfig.from_dict(meta["config"])
    corpus = load_corpus(cfg.corpus, cfg.workers, cfg.shard_kib * 1024, cfg.window)
    orbit = orbit_for(cfg, meta["constellation"], meta["start"], cfg.step_s)
    run = Run(cfg, orbit, corpus, cfg.step_s, out, on_step, meta)
    result = train(run, resume=checkpoints)
    result.write(out)
    write_comparison(out, [result])
    return result


def estimate_run(
    model: str,
    tokens: float | None,
    satellites: int,
    constellation: str = DEFAULT_CONSTELLATION,
    start: str | None = None,
    batch_tokens: int = 8192,
    inner_steps: int = 100,
    compress_bits: int = 16,
) -> dict[str, Any]:
    """The scale estimate for ``satellites`` training satellites (a day of their orbit)."""
    card = load_card(model)
    tokens = CHINCHILLA_TOKENS_PER_PARAM * card.params_total() if tokens is None else tokens
    const = load_constellation(constellation)
    eligible = training_satellites(const)
    if not 1 <= satellites <= len(eligible):
        raise InputError(
            f"{satellites} satellites but {const.name} has {len(eligible)} training satellites: "
            f"choose 1..{len(eligible)}"
        )
    t0 = parse_utc(start) if start else epoch_of(const)
    orbit = Orbit.for_workers(const, satellites, t0, DAY_S)
    net = Network.measure(orbit)
    hardware = orbit.const.hardware[orbit.workers[0]]
    doc = estimate(card, tokens, net, hardware, batch_tokens, inner_steps, compress_bits)
    doc["constellation"] = const.name
    doc["start"] = format_utc(t0)
    return doc
