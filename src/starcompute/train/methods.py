"""DiLoCo, FedAvg and synchronous data-parallel training on the orbital clock.

Every worker is a satellite with its own model replica, AdamW state and data shard, run
one after the other in this process. The orbital clock of each worker advances by
``step_s`` per inner step and waits while its satellite must pause (eclipse, heat).

DiLoCo / FedAvg (Douillard et al. 2023, arXiv:2311.08105; McMahan et al. 2017): after H
inner steps the workers that are ready - within ``straggler_wait_s`` of the first - and
joined by laser links at that moment send their deltas (their model at the last sync minus
their model now, compressed); the deltas, weighted by the inner steps they hold, are
averaged into one outer-optimiser step on the global model, which goes back to them. A
worker left out (late, or cut off) trains on and joins a later sync with its older delta.
With fewer than two workers joined the sync is skipped. The last sync waits (up to a day)
for every worker.

Synchronous data-parallel: every step the live workers able to compute (elastic: one that
must pause sits the step out) compute on their batch and all-reduce fp32 gradients
(mathematically: one AdamW step on the concatenated batch); a step waits until the links
join all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from starcompute.compute.cards import load_card
from starcompute.errors import InputError, StarcomputeError
from starcompute.train import checkpoint
from starcompute.train.config import OUTER, TrainConfig
from starcompute.train.corpus import Corpus
from starcompute.train.estimate import step_seconds
from starcompute.train.model import (
    WARMUP_STEPS,
    Batch,
    adamw,
    as_tensor,
    eval_batch,
    evaluate,
    generator_for,
    lr_at,
    n_params,
    pretrain,
    quantise,
    stream,
    train_step,
)
from starcompute.train.orbit import Orbit, Sync
from starcompute.train.result import Row, TrainResult

CONNECT_LIMIT_S = 86400.0  # how long a sync may wait for the links to join every worker


@dataclass(slots=True)
class Worker:
    index: int
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    generator: torch.Generator
    batches: Iterator[Batch]
    base: list[torch.Tensor]  # the parameters at this worker's last sync
    t_s: float = 0.0
    since_sync: int = 0  # inner steps in the delta it holds
    alive: bool = True


@dataclass(slots=True)
class RunState:
    """Everything that changes during a run (what a checkpoint holds, with the models)."""

    step: int = 0
    t_s: float = 0.0
    bytes_sent: float = 0.0
    syncs: list[Sync] = field(default_factory=list)
    skipped: list[Sync] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    dropped: list[tuple[int, int]] = field(default_factory=list)  # (worker, step)
    paused_s: float = 0.0
    links_wait_s: float = 0.0  # orbital seconds syncs waited for the laser links to join


@dataclass(slots=True)
class Run:
    cfg: TrainConfig
    orbit: Orbit
    corpus: Corpus
    step_s: float | None = None  # None: the performance model's time for one step
    out: Path | None = None
    on_step: Callable[[int], None] | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # what a resume needs to rebuild
    start_model: torch.nn.Module | None = None  # the shared start (else pretrained here)
    global_model: torch.nn.Module = field(init=False)
    eval_data: Batch = field(init=False)
    init_loss: float = field(init=False)
    payload_bytes: float = field(init=False)
    warmup: int = field(init=False)

    def __post_init__(self) -> None:
        if len(self.corpus.shards) != self.cfg.workers:
            raise InputError(
                f"corpus has {len(self.corpus.shards)} shards for {self.cfg.workers} workers"
            )
        if self.start_model is None:
            self.start_model = pretrain(self.cfg, self.corpus.shards[0])
        self.global_model = checkpoint.clone_model(self.start_model)
        self.eval_data = eval_batch(self.cfg, self.corpus.held_out)
        self.init_loss = evaluate(self.global_model, self.eval_data)
        self.payload_bytes = n_params(self.global_model) * self.cfg.outer_bits / 8.0
        self.warmup = 0 if self.cfg.pretrain_steps else min(WARMUP_STEPS, self.cfg.steps // 10)
        if self.step_s is None:
            hardware = self.orbit.const.hardware[self.orbit.workers[0]]
            if self.cfg.timing_card is not None:  # the clock of the real model
                card = load_card(self.cfg.timing_card)
                params = float(card.matmul_params_per_token())
                self.step_s = step_seconds(params, self.cfg.timing_tokens, hardware)
            else:
                tokens = self.cfg.batch * self.cfg.window
                self.step_s = step_seconds(n_params(self.global_model), tokens, hardware)

    @property
    def step_time_s(self) -> float:
        if self.step_s is None:
            raise StarcomputeError("Run.step_s is set in __post_init__")
        return self.step_s

    def lr(self, step: int) -> float:
        return lr_at(self.cfg, step, self.warmup)

    def advance(self, state: RunState, worker: int, t_s: float) -> float:
        """One inner step of ``worker`` starting no earlier than ``t_s``: its end time."""
        start = self.orbit.next_active_s(worker, t_s)
        state.paused_s += start - t_s
        return start + self.step_time_s

    def record(self, state: RunState, train_losses: list[float], participants: int) -> None:
        loss = sum(train_losses) / len(train_losses) if train_losses else float("nan")
        state.rows.append(
            Row(
                self.cfg.method,
                state.step,
                state.t_s,
                loss,
                evaluate(self.global_model, self.eval_data),
                state.bytes_sent,
                len(state.syncs),
                len(state.skipped),
                participants,
            )
        )

    def dropped_now(self, state: RunState, worker: int, step: int) -> bool:
        if (worker, step) in self.cfg.drops:
            state.dropped.append((worker, step))
            return True
        return False

    def wait_for_links(self, state: RunState, t_s: float, members: list[int]) -> float:
        t = self.orbit.next_connected_s(t_s, members, CONNECT_LIMIT_S)
        if t is None:
            raise InputError(
                f"the laser links never join workers {members} within a day of t = {t_s:.0f} s: "
                "choose fewer workers or a constellation whose training satellites connect"
            )
        state.links_wait_s += t - t_s
        return t

    def result(self, state: RunState, wall_s: float) -> TrainResult:
        return TrainResult(
            config=self.cfg,
            satellites=self.orbit.names,
            params=n_params(self.global_model),
            step_s=self.step_time_s,
            init_eval_loss=self.init_loss,
            rows=state.rows,
            syncs=state.syncs,
            skipped=state.skipped,
            dropped=state.dropped,
            bytes_sent=state.bytes_sent,
            orbit_s=state.t_s,
            paused_s=state.paused_s,
            links_wait_s=state.links_wait_s,
            wall_s=wall_s,
        )


# --- DiLoCo and FedAvg ------------------------------------------------------------------
def _make_workers(run: Run) -> list[Worker]:
    workers = []
    for k, shard in enumerate(run.corpus.shards):
        model = checkpoint.clone_model(run.global_model)
        gen = generator_for(run.cfg, k)
        workers.append(
            Worker(
                k,
                model,
                adamw(model, run.cfg.lr),
                gen,
                stream(run.cfg, as_tensor(shard), gen),
                [p.detach().clone() for p in model.parameters()],
            )
        )
    return workers


def _inner_round(run: Run, state: RunState, workers: list[Worker], h: int) -> list[float]:
    losses = []
    for w in (w for w in workers if w.alive):
        for j in range(h):
            if run.dropped_now(state, w.index, state.step + j):
                w.alive = False
                break
            w.t_s = run.advance(state, w.index, w.t_s)
            losses.append(train_step(w.model, w.opt, next(w.batches), run.lr(state.step + j)))
            w.since_sync += 1
    return losses


def _arrivals(
    run: Run, state: RunState, alive: list[Worker], final: bool
) -> tuple[float, list[Worker]]:
    """When the sync opens and who is ready by then."""
    if final:
        t = max(w.t_s for w in alive)
        return run.wait_for_links(state, t, [w.index for w in alive]), alive
    wait = run.cfg.straggler_wait_s
    wait = 0.5 * run.cfg.inner_steps * run.step_time_s if wait is None else wait
    deadline = min(w.t_s for w in alive) + wait
    arrived = [w for w in alive if w.t_s <= deadline]
    return max(w.t_s for w in arrived), arrived


def _outer_step(run: Run, outer: torch.optim.Optimizer, members: list[Worker]) -> None:
    bits = run.cfg.outer_bits
    total = float(sum(w.since_sync for w in members))
    with torch.no_grad():
        for i, p in enumerate(run.global_model.parameters()):
            delta = torch.zeros_like(p)
            for w in members:
                mine = list(w.model.parameters())[i]
                delta += (w.since_sync / total) * quantise(w.base[i] - mine, bits)
            p.grad = delta
    outer.step()
    outer.zero_grad(set_to_none=True)
    with torch.no_grad():
        for w in members:
            for mine, g, base in zip(
                w.model.parameters(), run.global_model.parameters(), w.base, strict=True
            ):
                mine.copy_(g)
                base.copy_(g)
            w.since_sync = 0


def _outer_sync(
    run: Run, state: RunState, outer: torch.optim.Optimizer, workers: list[Worker]
) -> int:
    alive = [w for w in workers if w.alive]
    t, arrived = _arrivals(run, state, alive, final=state.step >= run.cfg.steps)
    coord, ids = run.orbit.component(t, [w.index for w in arrived])
    members = [w for w in arrived if w.index in ids]
    if len(members) < 2 <= len(alive):
        state.skipped.append(Sync(t, 0.0, coord, ids, run.payload_bytes))
        state.t_s = max(state.t_s, t)
        return 0
    duration = run.orbit.sync_duration_s(t, coord, ids, run.payload_bytes)
    _outer_step(run, outer, members)
    state.bytes_sent += 2.0 * (len(members) - 1) * run.payload_bytes
    state.syncs.append(Sync(t, duration, coord, ids, run.payload_bytes))
    for w in members:
        w.t_s = t + duration
    state.t_s = max(state.t_s, t + duration)
    return len(members)


def train_local(run: Run, resume: Path | None = None) -> TrainResult:
    cfg, started = run.cfg, time.perf_counter()
    lr, momentum, nesterov = OUTER[cfg.method]
    workers = _make_workers(run)
    outer = torch.optim.SGD(
        run.global_model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov
    )
    state = RunState()
    if resume is not None:
        state = checkpoint.load_local(resume, run, outer, workers)
    else:
        run.record(state, [], cfg.workers)
    while state.step < cfg.steps and any(w.alive for w in workers):
        h = min(cfg.inner_steps, cfg.steps - state.step)
        losses = _inner_round(run, state, workers, h)
        state.step += h
        if not any(w.alive for w in workers):
            break
        joined = _outer_sync(run, state, outer, workers)
        run.record(state, losses, joined)
        if run.out is not None:
            checkpoint.save_local(run.out, run, state, outer, workers)
        if run.on_step is not None:
            run.on_step(h)
    return run.result(state, time.perf_counter() - started)


# --- synchronous data-parallel ----------------------------------------------------------
def _computing(run: Run, state: RunState, alive: list[int]) -> tuple[float, list[int]]:
    """When the next step starts and who computes it: the live workers able to at the
    first moment any is (elastic: a worker that must pause sits the step out)."""
    starts = {k: run.orbit.next_active_s(k, state.t_s) for k in alive}
    t = min(starts.values())
    ready = [k for k in alive if starts[k] == t]
    state.paused_s += (t - state.t_s) * len(alive) + run.step_time_s * (len(alive) - len(ready))
    return t, ready


def train_sync(run: Run, resume: Path | None = None) -> TrainResult:
    cfg, started = run.cfg, time.perf_counter()
    model = run.global_model
    opt = adamw(model, cfg.lr)
    gens = [generator_for(cfg, k) for k in range(cfg.workers)]
    alive = list(range(cfg.workers))
    state = RunState()
    if resume is not None:
        state, alive = checkpoint.load_sync(resume, run, opt, gens)
    else:
        run.record(state, [], cfg.workers)
    shards = [as_tensor(s) for s in run.corpus.shards]
    its = [stream(cfg, shard, g) for shard, g in zip(shards, gens, strict=True)]
    losses: list[float] = []
    while state.step < cfg.steps and alive:
        alive = [k for k in alive if not run.dropped_now(state, k, state.step)]
        if not alive:
            break
        t, ready = _computing(run, state, alive)
        batches = [next(its[k]) for k in ready]
        xs, ys = zip(*batches, strict=True)
        losses.append(train_step(model, opt, (torch.cat(xs), torch.cat(ys)), run.lr(state.step)))
        t += run.step_time_s
        if len(ready) > 1:
            t = run.wait_for_links(state, t, ready)
            duration = run.orbit.sync_duration_s(t, min(ready), ready, run.payload_bytes)
            state.syncs.append(Sync(t, duration, min(ready), ready, run.payload_bytes))
            state.bytes_sent += 2.0 * (len(ready) - 1) * run.payload_bytes
            t += duration
        state.t_s, state.step = t, state.step + 1
        if state.step % cfg.inner_steps == 0 or state.step == cfg.steps:
            run.record(state, losses, len(ready))
            if run.out is not None:
                checkpoint.save_sync(run.out, run, state, opt, gens, alive)
            if run.on_step is not None:
                run.on_step(len(losses))
            losses = []
    return run.result(state, time.perf_counter() - started)


def train(run: Run, resume: Path | None = None) -> TrainResult:
    """Run ``run.cfg.method`` to the end (from a checkpoint directory when ``resume``)."""
    if run.cfg.method == "sync":
        return train_sync(run, resume)
    return train_local(run, resume)
