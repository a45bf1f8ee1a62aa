"""Test doubles shared by several test modules."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from starcompute.compute.engine import Completion, EngineBase, GenerationRequest, TokenCallback


class EchoEngine(EngineBase):
    """A deterministic engine that counts its calls: it echoes the prompt's words."""

    name = "echo"
    context_window = 2048

    def __init__(self, step_s: float = 0.0) -> None:
        self.calls = 0
        self.step_s = step_s
        self.started = threading.Event()

    def generate(
        self, requests: Sequence[GenerationRequest], on_token: TokenCallback | None = None
    ) -> list[Completion]:
        if requests and requests[0].prompt == "warm-up":
            return [Completion("", 1, 1, "length", 0.0, 0.0) for _ in requests]
        self.calls += 1
        self.started.set()
        out = []
        for i, r in enumerate(requests):
            text = r.prompt if r.prompt is not None else r.messages[-1].content
            words = [f"{w} " for w in text.split()][: r.max_tokens]
            for w in words:
                time.sleep(self.step_s)
                if on_token is not None:
                    on_token(i, w)
            out.append(Completion("".join(words), 4, len(words), "length", 0.0, 0.0))
        return out
