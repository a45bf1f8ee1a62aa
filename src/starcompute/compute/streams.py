"""One request's answer as the engine generates it: sampling, stop rules, streaming text.

Shared by the static batch (``compute.real``) and the continuous batcher
(``compute.continuous``): a :class:`Stream` takes one token per decode step, decides
whether the request is done (EOS, a stop string, its token budget, cancelled), and
streams the text that is safe to show (a tail that may still become a stop string, or a
partly decoded character, is held back until the request finishes). Sampling is per
request with its own seeded generator, so a seed gives the same tokens whatever else
runs in the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from starcompute.compute.engine import Completion, GenerationRequest
from starcompute.compute.tokenizer import ChatTokenizer

PieceFn = Callable[[str], None]


class Stream:
    """The answer to one request, token by token."""

    def __init__(
        self,
        request: GenerationRequest,
        prompt: list[int],
        tokenizer: ChatTokenizer,
        eos_ids: set[int],
        emit: PieceFn | None,
        started_s: float,
    ) -> None:
        self.request, self.prompt, self.tok, self.eos_ids = request, prompt, tokenizer, eos_ids
        self.emit = emit
        self.started_s = started_s  # perf_counter: what its times count from
        self.generator = generator(request.seed)
        self.generated: list[int] = []
        self.text = ""
        self.sent = 0  # characters already streamed
        self.done = False
        self.reason = "length"
        self.first_s: float | None = None  # first token, seconds after started_s
        self.finish_s = 0.0

    def accept(self, token: int, now: float) -> bool:
        """Take one decode step's token (``now``: perf_counter); True once done. ``emit``
        hears once per step while running (its piece may be empty while text is held
        back), so its calls count the request's decode steps."""
        r, at = self.request, now - self.started_s
        if self.first_s is None:
            self.first_s = at
        if r.cancelled is not None and r.cancelled():  # nobody is waiting for it
            return self.finish("cancelled", at)
        if token in self.eos_ids and not r.ignore_eos:
            return self.finish("stop", at)
        self.generated.append(token)
        if not (r.stop or self.emit is not None):  # text only needed at the end
            return self.finish("length", at) if len(self.generated) >= r.max_tokens else False
        text = self.tok.decode(self.generated)
        cut = _stop_at(text, r.stop)
        self.text = text[:cut] if cut is not None else text
        if cut is not None:
            return self.finish("stop", at)
        if len(self.generated) >= r.max_tokens:
            return self.finish("length", at)
        self._emit(final=False)
        return False

    def cancelled(self) -> bool:
        return self.request.cancelled is not None and self.request.cancelled()

    def finish(self, reason: str, at_s: float) -> bool:
        self.done, self.reason, self.finish_s = True, reason, at_s
        if self.request.stop or self.emit is not None:
            self._emit(final=True)
        else:
            self.text = self.tok.decode(self.generated)
        return True

    def completion(self) -> Completion:
        first = self.first_s if self.first_s is not None else self.finish_s
        return Completion(
            self.text,
            len(self.prompt),
            len(self.generated),
            self.reason,
            first,
            self.finish_s or first,
            self.generated,
        )

    def _emit(self, final: bool) -> None:
        text = self.text
        end = len(text) if final else _safe_end(text, self.request.stop)
        if self.emit is not None:
            self.emit(text[self.sent : end])
        self.sent = max(self.sent, end)


def sample(logits: Any, streams: Sequence[Stream | None], pad_id: int) -> list[int]:
    """One token per row of ``logits`` [rows, vocab]: greedy rows in one call, the others
    from their own stream's generator (temperature, then top-p); ``pad_id`` for rows
    with no stream or a finished one."""
    import torch

    out = torch.argmax(logits, dim=-1).tolist()  # greedy rows in one call
    for i, s in enumerate(streams):
        if s is None or s.done:
            out[i] = pad_id
            continue
        r = s.request
        if r.temperature > 0.0:
            probs = torch.softmax(logits[i].float() / r.temperature, dim=-1)
            if r.top_p < 1.0:
                sorted_p, order = torch.sort(probs, descending=True)
                keep = torch.cumsum(sorted_p, 0) - sorted_p < r.top_p
                probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
            out[i] = int(torch.multinomial(probs, 1, generator=s.generator))
    return [int(t) for t in out]


def generator(seed: int | None) -> Any:
    import torch

    g = torch.Generator()
    g.manual_seed(seed if seed is not None else int(time.time_ns() % 2**31))
    return g


def _safe_end(text: str, stops: tuple[str, ...]) -> int:
    end = len(text)
    while end > 0 and text[end - 1] == "\ufffd":
        end -= 1
    for s in stops:
        for k in range(min(len(s) - 1, end), 0, -1):
            if text[end - k : end] == s[:k]:
                end -= k
                break
    return end


def _stop_at(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None
