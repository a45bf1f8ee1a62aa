"""The engine interface, free of torch: what mission control and the simulator import.

An engine turns a batch of :class:`GenerationRequest` into :class:`Completion` objects
with token counts and timings. The real engine (``compute.real``, PyTorch +
transformers) and the simulated engine (``compute.perf``, a calibrated model of space
hardware) both implement it; importing this module never loads a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from starcompute.errors import InputError

BATCHING = ("continuous", "static")  # how concurrent requests share an engine
TokenCallback = Callable[[int, str], None]  # (request index, text piece)
"""Called once per decode step of each running request (the piece may be empty while
text is held back), so the calls count a request's steps; the last call flushes."""


ROLES = ("system", "user", "assistant", "tool")
MAX_TOP_LOGPROBS = 20  # alternatives per token (OpenAI's limit)


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system" | "user" | "assistant" | "tool" (a tool's result)
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InputError(f"message role must be one of {', '.join(ROLES)}, got {self.role!r}")


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One token with its log-probability (natural log) under the model's own
    distribution, before temperature, top-p, logit bias and any grammar (vLLM's default
    "raw" log-probabilities), and the ``top`` most likely tokens at that position."""

    token: int
    text: bytes  # the bytes it stands for (may be part of a UTF-8 character)
    logprob: float | None  # None: a prompt's first token (nothing comes before it)
    top: tuple[tuple[int, bytes, float], ...] = ()

    def to_list(self) -> list[Any]:
        return [self.token, self.text, self.logprob, [list(t) for t in self.top]]

    @classmethod
    def from_list(cls, item: Any) -> TokenLogprob:
        token, text, logprob, top = item
        if not (isinstance(token, int) and isinstance(text, bytes)):
            raise TypeError("a token's log-probability is [id, bytes, logprob, top]")
        alternatives = tuple((int(t), bytes(b), float(p)) for t, b, p in top)
        return cls(token, text, None if logprob is None else float(logprob), alternatives)


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A prompt (raw text) or chat messages, and how to sample the answer."""

    prompt: str | None = None
    messages: tuple[Message, ...] = ()
    max_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False  # generate exactly max_tokens (benchmarks)
    grammar: str | None = None  # the answer must match it (llguidance, compute.grammars)
    tools: str | None = None  # JSON list of tools the prompt offers (compute.tools)
    logprobs: int | None = None  # each answer token's logprob and this many alternatives
    echo: bool = False  # the prompt's tokens and their logprobs too (needs logprobs)
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token, bias) added before sampling
    cancelled: Callable[[], bool] | None = field(default=None, compare=False)  # stop early

    def __post_init__(self) -> None:
        if (self.prompt is None) == (not self.messages):
            raise InputError("give either a prompt or chat messages, not both or neither")
        least = 0 if self.echo else 1  # echo with 0 tokens: score the prompt only
        if not (
            isinstance(self.max_tokens, int)
            and not isinstance(self.max_tokens, bool)
            and self.max_tokens >= least
        ):
            raise InputError(f"max tokens must be an integer >= {least}, got {self.max_tokens!r}")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_TOP_LOGPROBS:
            raise InputError(f"logprobs must be within 0..{MAX_TOP_LOGPROBS}, got {self.logprobs}")
        if self.echo and self.logprobs is None:
            raise InputError("echo needs logprobs (the prompt's tokens come with theirs)")
        if not (math.isfinite(self.temperature) and 0.0 <= self.temperature <= 5.0):
            raise InputError(f"temperature must be within 0..5, got {self.temperature}")
        if not (0.0 < self.top_p <= 1.0):
            raise InputError(f"top_p must be within (0, 1], got {self.top_p}")


@dataclass(slots=True)
class Completion:
    """One answer with its accounting (times in seconds, wall clock or predicted)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) | "length"
    time_to_first_token_s: float
    total_s: float
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None  # one per answer token, when asked for
    prompt_logprobs: list[TokenLogprob] | None = None  # one per prompt token (echo)

    @property
    def decode_tokens_per_s(self) -> float:
        decode_s = self.total_s - self.time_to_first_token_s
        return (self.completion_tokens - 1) / decode_s if decode_s > 0 else float("nan")


class Scheduler(Protocol):
    """Serves requests from many callers on one engine (``Engine.scheduler``)."""

    def submit(
        self, request: GenerationRequest, on_piece: Callable[[str], None] | None = None
    ) -> Future[Completion]:
        """Queue ``request``; its text pieces go to ``on_piece`` as they come."""
        ...

    @property
    def waiting(self) -> int: ...

    def close(self) -> None: ...


class Engine(Protocol):
    """Anything that answers requests: what every caller may use."""

    @property
    def name(self) -> str: ...

    @property
    def context_window(self) -> int: ...

    @property
    def load_s(self) -> float:
        """Seconds it took to load."""
        ...

    def generate(
        self, requests: Sequence[GenerationRequest], on_token: TokenCallback | None = None
    ) -> list[Completion]:
        """Answer ``requests`` (in static batches); InputError for a request it refuses."""
        ...

    def count_tokens(self, request: GenerationRequest) -> int:
        """The request's prompt tokens (InputError if it does not fit the context window)."""
        ...

    def stats(self) -> dict[str, Any]:
        """What it counts (e.g. upsets corrected): empty if nothing."""
        ...

    def weights(self) -> Any | None:
        """The torch module holding its weights (to guard them), None if not exposed."""
        ...

    def scheduler(
        self, max_batch: int, coming: Callable[[], int] | None = None, continuous: bool = True
    ) -> Scheduler:
        """How concurrent callers share it: continuous batching where the engine can (and
        ``continuous``), else static batches (``coming``: requests on their way, worth
        waiting for)."""
        ...


class EngineBase:
    """The defaults of :class:`Engine` for a new backend: tokens estimated from words,
    no stats, no weights exposed, static batching."""

    name: str = "engine"
    context_window: int = 2048
    load_s: float = 0.0

    def generate(
        self, requests: Sequence[GenerationRequest], on_token: TokenCallback | None = None
    ) -> list[Completion]:
        raise NotImplementedError

    def count_tokens(self, request: GenerationRequest) -> int:
        return prompt_token_count(request)

    def stats(self) -> dict[str, Any]:
        return {}

    def weights(self) -> Any | None:
        return None

    def scheduler(
        self, max_batch: int, coming: Callable[[], int] | None = None, continuous: bool = True
    ) -> Scheduler:
        from starcompute.compute.batcher import Batcher

        return Batcher(self, max_batch, coming=coming)


WORD_TOKENS = 1.3  # tokens per whitespace-separated word of English (BPE vocabularies)
MESSAGE_TOKENS = 4  # a chat template's tokens around each message (role, delimiters)


def prompt_token_count(
    request: GenerationRequest, count: Callable[[GenerationRequest], int] | None = None
) -> int:
    """A request's prompt tokens: ``count`` (the engine's tokenizer, e.g. its ``encode``
    length) where there is one, else estimated from its words and messages."""
    if count is not None:
        return count(request)
    text = request.prompt or " ".join(m.content for m in request.messages)
    return max(1, round(WORD_TOKENS * len(text.split())) + MESSAGE_TOKENS * len(request.messages))
