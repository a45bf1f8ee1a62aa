"""``starcompute infer``: run the real engine locally (no orbit) and print the answer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from starcompute.cli.common import add_backend, add_json, print_json
from starcompute.compute.backends import load_engine
from starcompute.compute.engine import GenerationRequest, Message


def register(sub: Any) -> None:
    p = sub.add_parser(
        "infer",
        help="answer a prompt with a real model on this machine",
        description="Run a real LLM locally: the embedded SmolLM2-135M-Instruct by default, "
        "or a Hugging Face checkpoint directory / GGUF file (e.g. Qwen3) with --model.",
    )
    p.add_argument("prompt", help="the question (sent as a chat message unless --raw)")
    p.add_argument(
        "--model",
        type=Path,
        metavar="PATH",
        help="Hugging Face checkpoint directory or .gguf file (default: SmolLM2)",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=128,
        metavar="N",
        help="tokens to generate at most (default 128)",
    )
    p.add_argument(
        "--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples"
    )
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1)")
    p.add_argument("--seed", type=int, help="sampling seed")
    p.add_argument("--system", help="system message")
    p.add_argument("--raw", action="store_true", help="complete the prompt as plain text")
    p.add_argument("--stream", action="store_true", help="print tokens as they come")
    add_backend(p)
    add_json(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    messages = (
        ()
        if args.raw
        else tuple(
            ([Message("system", args.system)] if args.system else [])
            + [Message("user", args.prompt)]
        )
    )
    request = GenerationRequest(
        prompt=args.prompt if args.raw else None,
        messages=messages,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
    )
    engine = load_engine(args.backend, args.model)
    engine.count_tokens(request)  # the context-window check, before any output
    stream = args.stream and not args.json

    def on_token(_: int, piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    done = engine.generate([request], on_token if stream else None)[0]
    timings = {
        "load_s": round(engine.load_s, 3),
        "time_to_first_token_s": round(done.time_to_first_token_s, 4),
        "total_s": round(done.total_s, 4),
        "decode_tokens_per_s": round(done.decode_tokens_per_s, 2),
    }
    if args.json:
        print_json(
            {
                "model": engine.name,
                "text": done.text,
                "finish_reason": done.finish_reason,
                "prompt_tokens": done.prompt_tokens,
                "completion_tokens": done.completion_tokens,
                **timings,
            }
        )
        return 0
    print("" if stream else done.text)
    print(
        f"[{engine.name}: {done.prompt_tokens} prompt + {done.completion_tokens} tokens, "
        f"first token {timings['time_to_first_token_s']} s, "
        f"{timings['decode_tokens_per_s']} tok/s, load {timings['load_s']} s]",
        file=sys.stderr,
    )
    return 0
