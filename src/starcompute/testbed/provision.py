"""Provisioning a testbed run, as satellites are provisioned before launch: every node
gets its data directory (identity, the contact plan, its own master key and the session
key derived from it for telecommands and BPSec, its model weights), mission control gets
the matching ground keys.

Weights are hard-linked from one checkpoint into every node's ``model/`` folder: each
node loads its own files, memory-mapped, and nodes on one host share the pages (the
same inode). Where a hard link is impossible (another file system) they are copied, and
then not shared.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from starcompute.links.contact_plan import ContactPlan
from starcompute.node.config import KEYS, MODEL, PLAN, NodeConfig
from starcompute.security.telecommand import GroundKeys, SatelliteKeys, new_master
from starcompute.testbed.config import Testbed

GROUND_KEYS = "keys.json"


def ground_dir(tb: Testbed) -> Path:
    return tb.run / "ground"


def link_model(checkpoint: Path, target: Path) -> int:
    """Hard-link (or copy) a checkpoint's files into ``target``; returns files copied."""
    target.mkdir(parents=True, exist_ok=True)
    copied = 0
    for src in checkpoint.iterdir():
        if not src.is_file():
            continue
        dst = target / src.name
        if dst.exists():
            continue
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
            copied += 1
    return copied


def provision(
    tb: Testbed, plan: ContactPlan, roles: dict[str, str], checkpoint: Path | None
) -> None:
    """Write the run folder: config, plan, every node's data directory, ground keys.
    ``roles``: satellite -> inference | training | relay (relays get no model)."""
    tb.save()
    plan.write(tb.run / PLAN, "json")
    ground = ground_dir(tb)
    ground.mkdir(parents=True, exist_ok=True)
    keys: dict[str, dict[str, object]] = {}
    for name, role in roles.items():
        master = new_master()
        keys[name] = GroundKeys.provision(master).to_dict()
        data = tb.node_dir(name)
        NodeConfig(
            name=name,
            constellation=tb.constellation,
            listen=tb.endpoints[name],
            emulator=tb.emulator,
            start=tb.start,
            epoch_unix_s=tb.epoch_unix_s,
            time_scale=tb.time_scale,
            role=role,
            timing_card=tb.timing_card,
            pace=tb.pace,
            telemetry_s=tb.telemetry_s,
        ).save(data)
        shutil.copy2(tb.run / PLAN, data / PLAN)
        (data / KEYS).write_text(
            json.dumps(SatelliteKeys.provision(master).to_dict()), encoding="utf-8"
        )
        if role != "relay" and checkpoint is not None:
            link_model(checkpoint, data / MODEL)
    (ground / GROUND_KEYS).write_text(json.dumps(keys), encoding="utf-8")


def load_ground_keys(tb: Testbed) -> dict[str, GroundKeys]:
    doc = json.loads((ground_dir(tb) / GROUND_KEYS).read_text(encoding="utf-8"))
    return {name: GroundKeys.from_dict(d) for name, d in doc.items()}


def save_ground_keys(tb: Testbed, keys: dict[str, GroundKeys]) -> None:
    """Persist the ground's keys and sequence counters (atomic replace)."""
    path = ground_dir(tb) / GROUND_KEYS
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({n: k.to_dict() for n, k in keys.items()}), encoding="utf-8")
    os.replace(tmp, path)
