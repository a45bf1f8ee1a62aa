"""What a training run reports: the loss curve, bytes sent, syncs done and skipped, the
orbital time; written as CSV, JSON and a plot."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from starcompute.train.config import TrainConfig
from starcompute.train.orbit import Sync


@dataclass(slots=True)
class Row:
    """One point of the loss curve (after an outer sync, or every H steps for sync DP)."""

    method: str
    step: int  # inner steps done by every worker
    orbit_s: float  # orbital time from the start of the run
    train_loss: float  # mean over the steps since the last point (nan at step 0)
    eval_loss: float  # global model on the held-out text, nats per byte
    bytes_sent: float  # cumulative
    syncs: int  # cumulative
    skipped: int  # cumulative
    participants: int  # workers in the last sync


@dataclass(slots=True)
class TrainResult:
    config: TrainConfig
    satellites: list[str]
    params: int
    step_s: float
    init_eval_loss: float
    rows: list[Row]
    syncs: list[Sync]
    skipped: list[Sync]
    dropped: list[tuple[int, int]]
    bytes_sent: float
    orbit_s: float
    paused_s: float
    wall_s: float
    links_wait_s: float = 0.0

    @property
    def final_eval_loss(self) -> float:
        return self.rows[-1].eval_loss

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.config.method,
            "workers": self.config.workers,
            "satellites": self.satellites,
            "steps": self.rows[-1].step,
            "inner_steps": self.config.inner_steps,
            "compress": "fp32" if self.config.method == "sync" else self.config.compress,
            "params": self.params,
            "start_eval_loss": round(self.init_eval_loss, 4),
            "final_eval_loss": round(self.final_eval_loss, 4),
            "bytes_sent": int(self.bytes_sent),
            "syncs_done": len(self.syncs),
            "syncs_skipped": len(self.skipped),
            "workers_dropped": [{"worker": w, "step": s} for w, s in self.dropped],
            "step_s": self.step_s,
            "orbit_s": round(self.orbit_s, 3),
            "paused_s": round(self.paused_s, 3),
            "links_wait_s": round(self.links_wait_s, 3),
            "sync_s": round(sum(s.duration_s for s in self.syncs), 6),
            "wall_s": round(self.wall_s, 2),
            "config": self.config.to_dict(),
        }

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(self.summary(), indent=2) + "\n")
        write_rows(out / "loss.csv", self.rows)
        with (out / "syncs.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(
                ["t_s", "duration_s", "coordinator", "participants", "payload_bytes", "done"]
            )
            done = [(s, 1) for s in self.syncs] + [(s, 0) for s in self.skipped]
            for s, ok in sorted(done, key=lambda x: x[0].t_s):
                members = " ".join(str(p) for p in s.participants)
                w.writerow(
                    [
                        f"{s.t_s:.3f}",
                        f"{s.duration_s:.6f}",
                        s.coordinator,
                        members,
                        s.payload_bytes,
                        ok,
                    ]
                )


def write_rows(path: Path, rows: list[Row]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([x.name for x in fields(Row)])
        for row in rows:
            w.writerow(asdict(row).values())


def plot(results: list[TrainResult], path: Path) -> None:
    """Eval loss against inner steps and against bytes sent, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_step, by_bytes) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        label = f"{r.config.method} ({r.final_eval_loss:.3f})"
        steps = [x.step for x in r.rows]
        losses = [x.eval_loss for x in r.rows]
        by_step.plot(steps, losses, marker=".", label=label)
        sent = [(x.bytes_sent / 1e6, x.eval_loss) for x in r.rows if x.bytes_sent > 0]
        by_bytes.plot([m for m, _ in sent], [loss for _, loss in sent], marker=".", label=label)
    by_step.set(xlabel="inner steps per worker", ylabel="held-out loss (nats/byte)")
    by_bytes.set(xlabel="MB sent over laser links", xscale="log")
    for ax in (by_step, by_bytes):
        ax.grid(alpha=0.3)
        ax.legend()
    cfg = results[0].config
    fig.suptitle(f"{cfg.workers} workers, H = {cfg.inner_steps}, {results[0].params:,} parameters")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def comparison(results: list[TrainResult]) -> dict[str, Any]:
    """Every method's summary, and each method's loss and bytes relative to sync DP."""
    doc: dict[str, Any] = {"methods": [r.summary() for r in results]}
    sync = next((r for r in results if r.config.method == "sync"), None)
    if sync is not None:
        for r in results:
            if r is not sync:
                doc[f"{r.config.method}_vs_sync"] = {
                    "eval_loss_ratio": round(r.final_eval_loss / sync.final_eval_loss, 4),
                    "bytes_ratio": round(sync.bytes_sent / max(r.bytes_sent, 1.0), 2),
                    "orbit_time_ratio": round(sync.orbit_s / max(r.orbit_s, 1e-9), 2),
                }
    return doc


def write_comparison(out: Path, results: list[TrainResult]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plot(results, out / "loss.png")
    if len(results) > 1:
        write_rows(out / "loss.csv", [row for r in results for row in r.rows])
        (out / "comparison.json").write_text(json.dumps(comparison(results), indent=2) + "\n")
