"""Checkpoints in satellite storage: after every outer sync (every H steps for sync DP)
each live worker writes its replica, optimiser state and data position to its own
satellite (``<satellite>.pt``) and the coordinator writes the global model, the outer
optimiser and the run's counters (``run.pt``), under ``OUT/checkpoints/step-NNNNNN/``.
Only the newest complete step is kept (written to a temporary directory, then renamed).
A satellite whose file is missing on resume is treated as lost."""

from __future__ import annotations

import copy
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from starcompute.errors import InputError
from starcompute.train.orbit import Sync
from starcompute.train.result import Row

if TYPE_CHECKING:
    from starcompute.train.methods import Run, RunState, Worker

RUN_FILE = "run.pt"


def clone_model(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model)


def latest(root: Path) -> Path:
    """The newest complete checkpoint under ``root`` (a run's OUT, its checkpoints/
    directory, or one step directory)."""
    for candidate in (root, root / "checkpoints"):
        if (candidate / RUN_FILE).exists():
            return candidate
        steps = sorted(candidate.glob("step-*/" + RUN_FILE)) if candidate.is_dir() else []
        if steps:
            return steps[-1].parent
    raise InputError(
        f"no checkpoint under {root}: expected {root}/checkpoints/step-NNNNNN/{RUN_FILE}"
    )


def run_dir(root: Path) -> Path:
    """The run's output folder (the parent of its checkpoints/ folder)."""
    return latest(root).parent.parent


def read_meta(root: Path) -> dict[str, Any]:
    """The run description of the newest checkpoint: config, constellation, start."""
    doc: dict[str, Any] = torch.load(latest(root) / RUN_FILE, weights_only=True)
    meta: dict[str, Any] = doc["meta"]
    return meta


def _state_doc(state: RunState) -> dict[str, Any]:
    return {
        "step": state.step,
        "t_s": float(state.t_s),
        "bytes_sent": float(state.bytes_sent),
        "syncs": [asdict(s) for s in state.syncs],
        "skipped": [asdict(s) for s in state.skipped],
        "rows": [asdict(r) for r in state.rows],
        "dropped": [list(d) for d in state.dropped],
        "paused_s": float(state.paused_s),
        "links_wait_s": float(state.links_wait_s),
    }


def _state_from(doc: dict[str, Any]) -> RunState:
    from starcompute.train.methods import RunState

    return RunState(
        step=doc["step"],
        t_s=doc["t_s"],
        bytes_sent=doc["bytes_sent"],
        syncs=[Sync(**s) for s in doc["syncs"]],
        skipped=[Sync(**s) for s in doc["skipped"]],
        rows=[Row(**r) for r in doc["rows"]],
        dropped=[(int(w), int(s)) for w, s in doc["dropped"]],
        paused_s=doc["paused_s"],
        links_wait_s=doc.get("links_wait_s", 0.0),
    )


def _write(out: Path, step: int, files: dict[str, Any]) -> None:
    root = out / "checkpoints"
    final = root / f"step-{step:06d}"
    tmp = root / f".step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, doc in files.items():
        torch.save(doc, tmp / name)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in root.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)


def _run_doc(run: Run, state: RunState, **extra: Any) -> dict[str, Any]:
    return {
        "meta": run.meta,
        "state": _state_doc(state),
        "global": run.global_model.state_dict(),
        "horizon_s": run.orbit.horizon_s,
        **extra,
    }


def _open(root: Path, run: Run) -> tuple[Path, dict[str, Any]]:
    where = latest(root)
    doc: dict[str, Any] = torch.load(where / RUN_FILE, weights_only=True)
    if doc["meta"]["config"] != run.cfg.to_dict():
        saved, now = doc["meta"]["config"], run.cfg.to_dict()
        diff = sorted(k for k in now if saved.get(k) != now[k])
        raise InputError(f"checkpoint {where} was written with other settings: {', '.join(diff)}")
    run.global_model.load_state_dict(doc["global"])
    run.orbit.cover(float(doc["horizon_s"]))
    return where, doc


def save_local(
    out: Path, run: Run, state: RunState, outer: torch.optim.Optimizer, workers: list[Worker]
) -> None:
    files = {RUN_FILE: _run_doc(run, state, outer=outer.state_dict())}
    for w in workers:
        if w.alive:
            files[f"{run.orbit.names[w.index]}.pt"] = {
                "model": w.model.state_dict(),
                "opt": w.opt.state_dict(),
                "generator": w.generator.get_state(),
                "base": w.base,
                "t_s": float(w.t_s),
                "since_sync": w.since_sync,
            }
    _write(out, state.step, files)


def load_local(
    root: Path, run: Run, outer: torch.optim.Optimizer, workers: list[Worker]
) -> RunState:
    where, doc = _open(root, run)
    outer.load_state_dict(doc["outer"])
    for w in workers:
        path = where / f"{run.orbit.names[w.index]}.pt"
        if not path.exists():
            w.alive = False  # its satellite (and its storage) is gone
            continue
        sat = torch.load(path, weights_only=True)
        w.model.load_state_dict(sat["model"])
        w.opt.load_state_dict(sat["opt"])
        w.generator.set_state(sat["generator"])
        with torch.no_grad():
            for mine, saved in zip(w.base, sat["base"], strict=True):
                mine.copy_(saved)
        w.t_s, w.since_sync = float(sat["t_s"]), int(sat["since_sync"])
    return _state_from(doc["state"])


def save_sync(
    out: Path,
    run: Run,
    state: RunState,
    opt: torch.optim.Optimizer,
    generators: list[torch.Generator],
    alive: list[int],
) -> None:
    files = {RUN_FILE: _run_doc(run, state, opt=opt.state_dict(), alive=alive)}
    for k in alive:
        files[f"{run.orbit.names[k]}.pt"] = {"generator": generators[k].get_state()}
    _write(out, state.step, files)


def load_sync(
    root: Path, run: Run, opt: torch.optim.Optimizer, generators: list[torch.Generator]
) -> tuple[RunState, list[int]]:
    where, doc = _open(root, run)
    opt.load_state_dict(doc["opt"])
    alive = []
    for k in doc["alive"]:
        path = where / f"{run.orbit.names[k]}.pt"
        if path.exists():
            generators[k].set_state(torch.load(path, weights_only=True)["generator"])
            alive.append(int(k))
    return _state_from(doc["state"]), alive
