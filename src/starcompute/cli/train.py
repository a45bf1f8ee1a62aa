"""``starcompute train`` and ``starcompute train estimate``: training in orbit."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from starcompute.cli.common import add_json, print_json, progress_wanted
from starcompute.errors import InputError
from starcompute.train.config import COMPRESSION_BITS, METHODS, TrainConfig, parse_drop

DEFAULTS = TrainConfig()


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a model across training satellites (DiLoCo, sync DP, FedAvg)",
        description="Train a byte-level Qwen3 decoder for real (PyTorch) on K workers, one "
        "per training satellite, each on its own shard of Shakespeare; outer syncs happen "
        "only when the contact plan joins the workers by laser links, workers pause in "
        "eclipse or when hot (power model). Prints the loss, bytes sent, syncs done/skipped "
        "and the orbital time; --out writes loss.csv, loss.png, syncs.csv, summary.json "
        "and checkpoints. `train estimate --help`: the 400-satellite scale estimate.",
    )
    _add_training_args(p)
    p.set_defaults(run=run_train)
    cmds = p.add_subparsers(dest="train_command", metavar="estimate")
    e = cmds.add_parser(
        "estimate",
        help="wall-clock time and traffic to train a model on the training satellites",
        description="Predict the wall-clock time and laser-link traffic of training a "
        "model card on N training satellites with DiLoCo vs synchronous data-parallel, "
        "from the hardware performance model and a day of the contact plan.",
    )
    e.add_argument("--model", default="qwen3-0.6b", help="model card (default qwen3-0.6b)")
    e.add_argument(
        "--tokens", type=float, help="training tokens (default: 20 per parameter, Chinchilla)"
    )
    e.add_argument("--satellites", type=int, default=400, help="training satellites (400)")
    e.add_argument("--constellation", default="star-compute-2800", help="preset or file")
    e.add_argument("--start", metavar="ISO8601", help="default: the constellation's epoch")
    e.add_argument(
        "--batch-tokens", type=int, default=8192, help="tokens per satellite per step (8192)"
    )
    e.add_argument("--inner-steps", type=int, default=100, help="DiLoCo H (default 100)")
    e.add_argument(
        "--compress",
        choices=list(COMPRESSION_BITS),
        default="bf16",
        help="DiLoCo outer-update precision (default bf16; sync DP sends bf16 gradients)",
    )
    add_json(e)
    e.set_defaults(run=run_estimate)


def _add_training_args(p: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    p.add_argument(
        "--method",
        default=d.method,
        help=f"{' | '.join(METHODS)}, or several joined by commas to compare (default {d.method})",
    )
    p.add_argument("--workers", type=int, default=d.workers, help=f"K satellites ({d.workers})")
    p.add_argument("--steps", type=int, default=d.steps, help=f"inner steps ({d.steps})")
    p.add_argument(
        "--inner-steps",
        type=int,
        default=d.inner_steps,
        help=f"H, steps per sync ({d.inner_steps})",
    )
    p.add_argument(
        "--compress",
        choices=list(COMPRESSION_BITS),
        default=d.compress,
        help="outer-update precision",
    )
    p.add_argument(
        "--pretrain-steps",
        type=int,
        default=d.pretrain_steps,
        help=f"shared start: worker 0 alone, no communication ({d.pretrain_steps}; 0 = scratch)",
    )
    p.add_argument("--constellation", default="star-compute-2800", help="preset or file")
    p.add_argument("--start", metavar="ISO8601", help="default: the constellation's epoch")
    p.add_argument(
        "--step-s", type=float, help="orbital seconds per inner step (default: performance model)"
    )
    p.add_argument(
        "--timing-model",
        metavar="CARD",
        help="the clock of a real model: each inner step takes the orbital seconds this "
        "model card's training step would on the hardware (e.g. qwen3-0.6b)",
    )
    p.add_argument(
        "--timing-tokens",
        type=int,
        default=d.timing_tokens,
        help=f"tokens per step and satellite of the timing model ({d.timing_tokens:,})",
    )
    p.add_argument("--straggler-wait-s", type=float, help="default: H x step time / 2")
    p.add_argument("--no-eclipse-pause", action="store_true", help="compute in eclipse too")
    p.add_argument(
        "--drop", action="append", default=[], metavar="K@STEP", help="lose worker K's satellite"
    )
    p.add_argument("--corpus", default=d.corpus, help="shakespeare, a text file or a folder")
    p.add_argument("--lr", type=float, default=d.lr, help=f"inner AdamW peak rate ({d.lr})")
    for name, doc in (("batch", "sequences per step"), ("window", "bytes per sequence")):
        p.add_argument(f"--{name}", type=int, default=getattr(d, name), help=doc)
    p.add_argument("--hidden", type=int, default=d.hidden, help=f"model width ({d.hidden})")
    p.add_argument("--layers", type=int, default=d.layers, help=f"decoder layers ({d.layers})")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--out", type=Path, metavar="DIR", help="outputs and checkpoints")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="continue a run from its newest checkpoint (with that run's settings)",
    )
    add_json(p)


def _config(args: argparse.Namespace, method: str) -> TrainConfig:
    return TrainConfig(
        method=method,
        workers=args.workers,
        steps=args.steps,
        inner_steps=args.inner_steps,
        compress=args.compress,
        pretrain_steps=args.pretrain_steps,
        lr=args.lr,
        batch=args.batch,
        window=args.window,
        hidden=args.hidden,
        layers=args.layers,
        corpus=args.corpus,
        seed=args.seed,
        step_s=args.step_s,
        timing_card=args.timing_model,
        timing_tokens=args.timing_tokens,
        straggler_wait_s=args.straggler_wait_s,
        pause_in_eclipse=not args.no_eclipse_pause,
        drops=tuple(parse_drop(x) for x in args.drop),
    )


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Any]:
    if not progress_wanted():
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="step", desc="training") as bar:
        yield bar.update


def run_train(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    configs = [_config(args, m) for m in methods]  # validates every method first
    if len(set(methods)) != len(methods):
        raise InputError(f"--method {args.method!r} names a method twice")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    from starcompute.train import run as train_api

    with _progress(configs[0].steps * len(methods)) as tick:
        if args.resume is not None:
            results = [train_api.resume_run(args.resume, args.out, tick)]
        else:
            results = train_api.train_runs(
                configs[0], methods, args.constellation, args.start, args.out, tick
            )
    from starcompute.train.result import comparison

    doc = comparison(results)
    if args.json:
        print_json(doc)
    else:
        _print(doc, args.out)
    return 0


def _print(doc: dict[str, Any], out: Path | None) -> None:
    first = doc["methods"][0]
    print(
        f"{first['workers']} workers on {', '.join(first['satellites'])}; "
        f"{first['params']:,} parameters, start loss {first['start_eval_loss']}"
    )
    print(
        f"{'method':8} {'eval loss':>9} {'MB sent':>10} {'syncs':>6} {'skipped':>7} "
        f"{'orbit s':>10} {'paused s':>9} {'wall s':>7}"
    )
    for m in doc["methods"]:
        print(
            f"{m['method']:8} {m['final_eval_loss']:9.4f} {m['bytes_sent'] / 1e6:10.2f} "
            f"{m['syncs_done']:6d} {m['syncs_skipped']:7d} {m['orbit_s']:10.2f} "
            f"{m['paused_s']:9.1f} {m['wall_s']:7.1f}"
        )
        for d in m["workers_dropped"]:
            print(f"  worker {d['worker']} lost at step {d['step']}; training went on")
    for key, value in doc.items():
        if key.endswith("_vs_sync"):
            print(
                f"{key.removesuffix('_vs_sync')} vs sync: loss x{value['eval_loss_ratio']}, "
                f"{value['bytes_ratio']}x fewer bytes, {value['orbit_time_ratio']}x less orbit time"
            )
    if out is not None:
        print(f"wrote {out}")


def run_estimate(args: argparse.Namespace) -> int:
    from starcompute.train.run import estimate_run

    doc = estimate_run(
        args.model,
        args.tokens,
        args.satellites,
        args.constellation,
        args.start,
        args.batch_tokens,
        args.inner_steps,
        COMPRESSION_BITS[args.compress],
    )
    if args.json:
        print_json(doc)
        return 0
    print(
        f"{doc['model']} ({doc['params'] / 1e9:.2f} B parameters), {doc['tokens']:.3g} tokens on "
        f"{doc['satellites']} training satellites of {doc['constellation']} ({doc['hardware']})"
    )
    print(
        f"{doc['steps']:,} steps of {doc['batch_tokens_per_satellite']:,} tokens per satellite, "
        f"{doc['compute_s_per_step']:.2f} s compute each; satellites computing "
        f"{doc['compute_fraction']:.0%} of the time, "
        f"links joining all {doc['connected_fraction']:.0%}"
    )
    for name in ("sync", "diloco"):
        m = doc[name]
        print(
            f"{name:7} {m['wall_s'] / 3600:10,.1f} h {m['bytes_total'] / 1e12:12,.1f} TB over ISLs "
            f"{m['syncs']:8,} all-reduces  memory {m['memory_need_gb']:.1f} of "
            f"{doc['memory_gb']:.0f} GB{'' if m['fits_memory'] else ' (does not fit)'}"
        )
    print(f"DiLoCo: {doc['speedup']:.2f}x faster, {doc['bytes_ratio']:.0f}x fewer bytes")
    return 0
