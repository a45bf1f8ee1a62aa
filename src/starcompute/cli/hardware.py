"""``starcompute hardware list|show|estimate``: profiles and predicted inference speed."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from starcompute.cli.common import add_json, add_presets_command, print_json
from starcompute.compute.cards import Quant, load_card, model_cards
from starcompute.compute.perf import ComputeTarget, PerformanceModel
from starcompute.compute.split import plan_split
from starcompute.spacecraft.hardware import hardware_presets, load_hardware


def register(sub: Any) -> None:
    group = sub.add_parser(
        "hardware",
        help="hardware profiles and inference estimates",
        description="Hardware profiles and predicted inference speed.",
    )
    cmds = group.add_subparsers(dest="action", metavar="ACTION")
    cmds.required = True
    add_presets_command(cmds, "hardware profiles", hardware_presets)
    show = cmds.add_parser("show", help="one profile's numbers", description="Show a profile.")
    show.add_argument("profile", metavar="PROFILE|FILE")
    add_json(show)
    show.set_defaults(run=run_show)
    est = cmds.add_parser(
        "estimate",
        help="predicted prefill/decode time, tokens/s, energy, memory fit",
        description="Roofline estimate of a model card on a hardware profile, and the "
        "pipeline split across satellites when it does not fit one.",
    )
    est.add_argument(
        "--model", required=True, metavar="CARD", help=f"model card: {', '.join(model_cards())}"
    )
    est.add_argument("--profile", required=True, metavar="PROFILE|FILE", help="hardware profile")
    est.add_argument(
        "--quant",
        default=Quant.INT8.value,
        choices=[q.value for q in Quant],
        help="weight precision (default int8)",
    )
    est.add_argument("--prompt-tokens", type=int, default=512, metavar="N")
    est.add_argument("--output-tokens", type=int, default=256, metavar="M")
    est.add_argument("--batch", type=int, default=1, metavar="B")
    add_json(est)
    est.set_defaults(run=run_estimate)


def run_show(args: argparse.Namespace) -> int:
    doc = asdict(load_hardware(args.profile))
    if args.json:
        print_json(doc)
    else:
        for section, values in doc.items():
            print(f"{section}: {values}")
    return 0


def run_estimate(args: argparse.Namespace) -> int:
    card = load_card(args.model)
    model = PerformanceModel(
        card, ComputeTarget.from_profile(load_hardware(args.profile)), args.quant
    )
    e = model.estimate(args.prompt_tokens, args.output_tokens, args.batch)
    doc: dict[str, Any] = {
        "model": card.name,
        "profile": args.profile,
        "quant": args.quant,
        "prompt_tokens": args.prompt_tokens,
        "output_tokens": args.output_tokens,
        "batch": args.batch,
        "prefill_s": round(e.prefill_s, 6),
        "decode_s": round(e.decode_s, 6),
        "decode_ms_per_token": round(e.decode_step_s * 1e3, 4),
        "tokens_per_s": round(e.tokens_per_s, 2),
        "energy_j": round(e.energy_j, 2),
        "memory_need_gb": round(e.memory_need_gb, 2),
        "memory_gb": model.target.memory_gb,
        "fits": e.fits,
    }
    if not e.fits:
        plan = plan_split(model, args.prompt_tokens, args.output_tokens)
        doc["split"] = {
            "satellites": plan.satellites,
            "layers_per_satellite": plan.layers_per_satellite,
            "prefill_s": round(plan.prefill_s, 6),
            "decode_ms_per_token": round(plan.decode_token_s * 1e3, 4),
            "pipelined_tokens_per_s": round(plan.throughput_tokens_per_s, 2),
        }
    if args.json:
        print_json(doc)
        return 0
    print(
        f"{card.name} ({args.quant}) on {args.profile}: prefill {doc['prefill_s']:.3f} s, "
        f"decode {doc['decode_ms_per_token']:.2f} ms/token ({doc['tokens_per_s']:.1f} tok/s), "
        f"{doc['energy_j']:.0f} J, needs {doc['memory_need_gb']:.1f} of "
        f"{doc['memory_gb']:.0f} GB"
    )
    if not e.fits:
        s = doc["split"]
        print(
            f"does not fit one satellite: split over {s['satellites']} "
            f"({s['layers_per_satellite']} layers), {s['decode_ms_per_token']:.2f} ms/token, "
            f"{s['pipelined_tokens_per_s']:.1f} tok/s pipelined"
        )
    return 0
