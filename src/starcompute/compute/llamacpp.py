"""Optional second backend: llama.cpp through ``llama-cpp-python`` (extra ``[llamacpp]``).

It runs GGUF files natively (quantised, no dequantisation). The package compiles for
~5 minutes on 2 cores, so it is never part of the default install or CI; without it this
engine raises an InputError that says how to install it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starcompute.compute.checkpoints import DEFAULT_MODEL, default_gguf
from starcompute.compute.engine import Completion, EngineBase, GenerationRequest, TokenCallback
from starcompute.errors import InputError


class LlamaCppEngine(EngineBase):
    """An :class:`~starcompute.compute.engine.Engine` on llama.cpp (one request at a time)."""

    def __init__(
        self,
        model: str | Path | None = None,
        context_window: int = 4096,
        threads: int | None = None,
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise InputError(
                "the llama.cpp backend needs llama-cpp-python: pip install 'starcompute[llamacpp]'"
                " (compiles for ~5 minutes)"
            ) from None
        path = default_gguf() if model is None or str(model) == DEFAULT_MODEL else Path(model)
        if path.suffix.lower() != ".gguf" or not path.is_file():
            raise InputError(f"the llama.cpp backend needs a .gguf file, got {path}")
        t0 = time.perf_counter()
        self.llm: Any = Llama(
            model_path=str(path), n_ctx=context_window, n_threads=threads, verbose=False
        )
        self.load_s = time.perf_counter() - t0
        self.name = f"llamacpp:{path.name}"
        self.context_window = context_window

    def count_tokens(self, request: GenerationRequest) -> int:
        if request.prompt is not None:
            return len(self.llm.tokenize(request.prompt.encode()))
        return super().count_tokens(request)  # the chat template is llama.cpp's: estimated

    def generate(
        self, requests: Sequence[GenerationRequest], on_token: TokenCallback | None = None
    ) -> list[Completion]:
        return [self._one(i, r, on_token) for i, r in enumerate(requests)]

    def _one(self, index: int, r: GenerationRequest, on_token: TokenCallback | None) -> Completion:
        offered = (("grammar", r.grammar), ("tools", r.tools), ("logit_bias", r.logit_bias))
        asked = [name for name, value in offered if value] + ["logprobs"] * (r.logprobs is not None)
        if asked:
            raise InputError(
                f"the llama.cpp backend here does not offer {', '.join(asked)}: "
                "serve with --backend transformers"
            )
        kwargs = {
            "max_tokens": r.max_tokens,
            "temperature": r.temperature,
            "top_p": r.top_p,
            "stop": list(r.stop) or None,
            "seed": r.seed,
            "stream": True,
        }
        if r.prompt is not None:
            stream = self.llm.create_completion(r.prompt, **kwargs)
        else:
            msgs = [{"role": m.role, "content": m.content} for m in r.messages]
            stream = self.llm.create_chat_completion(msgs, **kwargs)
        t0, ttft, text, n, reason = time.perf_counter(), 0.0, "", 0, "length"
        for chunk in stream:
            choice = chunk["choices"][0]
            piece = choice.get("text") or choice.get("delta", {}).get("content") or ""
            if piece:
                ttft = ttft or time.perf_counter() - t0
                n += 1
                text += piece
                if on_token is not None:
                    on_token(index, piece)
            reason = choice.get("finish_reason") or reason
        prompt_tokens = len(self.llm.tokenize((r.prompt or "").encode())) if r.prompt else 0
        return Completion(text, prompt_tokens, n, reason, ttft, time.perf_counter() - t0)
