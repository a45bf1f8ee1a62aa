"""One request's answer as the engine generates it: sampling, stop rules, streaming text.

Shared by the static batch (``compute.real``) and the continuous batcher
(``compute.continuous``): a :class:`Stream` takes one token per decode step, decides
whether the request is done (EOS, a stop string, its token budget, cancelled), and
streams the text that is safe to show (a tail that may still become a stop string, or a
partly decoded character, is held back until the request finishes). Sampling is per
request with its own seeded generator, so a seed gives the same tokens whatever else
runs in the batch.

A request may also constrain its answer to a grammar (``compute.grammars``: JSON, a
JSON schema, tool calls), bias chosen tokens' logits, and ask for each token's
log-probability with the most likely alternatives; those travel with the streamed text
(:class:`Piece`) and end in the completion.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from starcompute.compute.engine import Completion, GenerationRequest, TokenLogprob
from starcompute.compute.tokenizer import ChatTokenizer

PieceFn = Callable[[str], None]


class Piece(str):
    """Streamed text with the log-probabilities of the tokens it completes (a ``str``
    wherever text is expected)."""

    logprobs: tuple[TokenLogprob, ...] = ()
    prompt_logprobs: tuple[TokenLogprob, ...] = ()  # the prompt's (echo): the first piece

    @classmethod
    def of(cls, text: str, logprobs: list[TokenLogprob], prompt: list[TokenLogprob]) -> Piece:
        piece = cls(text)
        piece.logprobs, piece.prompt_logprobs = tuple(logprobs), tuple(prompt)
        return piece


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
        self.matcher = _matcher(request, tokenizer, eos_ids)
        self.logprobs: list[TokenLogprob] | None = None if request.logprobs is None else []
        self.prompt_logprobs: list[TokenLogprob] | None = None  # set by the engine (echo)
        self.step_logprobs: Any = None  # this step's log-probabilities (sample sets them)
        self.logprobs_sent = 0
        self.prompt_sent = False

    def accept(self, token: int, now: float) -> bool:
        """Take one decode step's token (``now``: perf_counter); True once done. ``emit``
        hears once per step while running (its piece may be empty while text is held
        back), so its calls count the request's decode steps."""
        r, at = self.request, now - self.started_s
        if self.first_s is None:
            self.first_s = at
        if r.cancelled is not None and r.cancelled():  # nobody is waiting for it
            return self.finish("cancelled", at)
        if r.max_tokens == 0:  # the prompt's log-probabilities only (echo)
            return self.finish("length", at)
        if token in self.eos_ids and not r.ignore_eos:
            return self.finish("stop", at)
        self.generated.append(token)
        self._note_logprob(token)
        if self.matcher is not None:
            self.matcher.accept(token)
            if self.matcher.stopped:  # the grammar is complete: nothing may follow
                self.text = self.tok.decode(self.generated)
                return self.finish("stop", at)
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
            self.logprobs,
            self.prompt_logprobs,
        )

    def _note_logprob(self, token: int) -> None:
        lp, k = self.step_logprobs, self.request.logprobs
        if lp is None or self.logprobs is None or k is None:
            return
        self.logprobs.append(token_logprob(lp, token, k, self.tok))

    def _emit(self, final: bool) -> None:
        """Stream the text that is safe to show, with the log-probabilities of the tokens
        decoded since the last piece (they may run ahead of text held back)."""
        text = self.text
        end = len(text) if final else _safe_end(text, self.request.stop)
        if self.emit is not None:
            piece = text[self.sent : end]
            lps = self.logprobs[self.logprobs_sent :] if self.logprobs else []
            self.logprobs_sent += len(lps)
            prompt = [] if self.prompt_sent else (self.prompt_logprobs or [])
            self.prompt_sent = True
            self.emit(Piece.of(piece, lps, prompt) if lps or prompt else piece)
        self.sent = max(self.sent, end)


def sample(logits: Any, streams: Sequence[Stream | None], pad_id: int) -> list[int]:
    """One token per row of ``logits`` [rows, vocab]: greedy rows in one call, the others
    from their own stream's generator (temperature, then top-p); ``pad_id`` for rows
    with no stream or a finished one. A row's log-probabilities (if its request asks)
    are taken from the raw logits; its logit bias and grammar apply before choosing."""
    import torch

    out = torch.argmax(logits, dim=-1).tolist()  # greedy rows in one call
    for i, s in enumerate(streams):
        if s is None or s.done:
            out[i] = pad_id
            continue
        r, row = s.request, logits[i]
        if r.logprobs is not None:
            s.step_logprobs = torch.log_softmax(row.float(), dim=-1)
        if r.logit_bias or s.matcher is not None:
            row = _adjusted(row, s)
            out[i] = int(torch.argmax(row))
        if r.temperature > 0.0:
            probs = torch.softmax(row.float() / r.temperature, dim=-1)
            if r.top_p < 1.0:
                sorted_p, order = torch.sort(probs, descending=True)
                keep = torch.cumsum(sorted_p, 0) - sorted_p < r.top_p
                probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
            out[i] = int(torch.multinomial(probs, 1, generator=s.generator))
    return [int(t) for t in out]


def _adjusted(row: Any, s: Stream) -> Any:
    """A row's logits with its request's logit bias added and its grammar's mask."""
    import torch

    if s.request.logit_bias:
        row = row.clone()
        ids = torch.tensor([t for t, _ in s.request.logit_bias])
        row[ids] += torch.tensor([b for _, b in s.request.logit_bias], dtype=row.dtype)
    return s.matcher.mask(row) if s.matcher is not None else row


def token_logprob(logprobs: Any, token: int, k: int, tok: ChatTokenizer) -> TokenLogprob:
    """``token``'s entry from one position's log-probabilities, with the top ``k``."""
    import torch

    top = []
    if k:
        values, ids = torch.topk(logprobs, k)
        top = [
            (int(t), tok.token_bytes(int(t)), float(v)) for v, t in zip(values, ids, strict=True)
        ]
    return TokenLogprob(token, tok.token_bytes(token), float(logprobs[token]), tuple(top))


def prompt_logprobs(
    model: Any, prompt: list[int], k: int, tok: ChatTokenizer
) -> list[TokenLogprob]:
    """Each prompt token's log-probability given the tokens before it (one forward pass
    over the whole prompt; the first token has none), with the top ``k`` alternatives."""
    import torch

    n = len(prompt)
    out = model(
        input_ids=torch.tensor([prompt]),
        attention_mask=torch.ones((1, n), dtype=torch.long),
        position_ids=torch.arange(n)[None, :],
        use_cache=False,
        logits_to_keep=0,  # every position's
    )
    logprobs = torch.log_softmax(out.logits[0].float(), dim=-1)
    first = TokenLogprob(prompt[0], tok.token_bytes(prompt[0]), None)
    return [first] + [token_logprob(logprobs[i - 1], prompt[i], k, tok) for i in range(1, n)]


def _matcher(request: GenerationRequest, tok: ChatTokenizer, eos_ids: set[int]) -> Any:
    if request.grammar is None:
        return None
    from starcompute.compute.grammars import Matcher

    return Matcher(request.grammar, tok.guidance(eos_ids))


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
