"""Constrained decoding: answers that must match a grammar (JSON, a JSON schema, tool calls).

A grammar is given in llguidance's form (Microsoft's Low-level Guidance, the library vLLM,
SGLang and llama.cpp use for structured outputs; its JSON-schema compiler and Lark
front end). At every decode step a :class:`Matcher` computes which tokens keep the
answer inside the grammar; every other token gets a logit of -inf before sampling
(greedy or not), and the chosen token advances the matcher. The answer ends when the
grammar is complete and nothing may follow (``finish_reason: "stop"``); an answer cut by
``max_tokens`` first stops where it is (``"length"``), as OpenAI's does.

JSON is generated compactly (no free whitespace between tokens): a small model cannot
then spend its budget on blank lines. ``bench/bench_grammar.py`` measures what the
masks cost per token against the unconstrained decode and against ``outlines-core``.
"""

from __future__ import annotations

import functools
from typing import Any

from starcompute.errors import InputError, StarcomputeError

JSON_OPTIONS = {"whitespace_flexible": False}


def json_object() -> str:
    """Any JSON object (OpenAI's ``response_format: {"type": "json_object"}``)."""
    return json_schema({"type": "object"})


def json_schema(schema: dict[str, Any]) -> str:
    """Answers valid against ``schema`` (JSON Schema; InputError if the compiler refuses
    it, with its reason)."""
    from llguidance import LLMatcher

    if not isinstance(schema, dict):
        raise InputError("a JSON schema must be an object")
    try:
        grammar = LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise InputError(f"the JSON schema is not usable: {exc}") from None
    return check(grammar)


def lark(text: str) -> str:
    """A grammar in llguidance's Lark dialect (``%json {...}`` embeds a JSON schema)."""
    from llguidance import LLMatcher

    return check(LLMatcher.grammar_from_lark(text))


def check(grammar: str) -> str:
    """The grammar if llguidance compiles it, else InputError naming why."""
    from llguidance import LLMatcher

    error = LLMatcher.validate_grammar(grammar)
    if error:
        first = error.strip().splitlines()[0] if error.strip() else "invalid grammar"
        raise InputError(f"the grammar is not usable: {first}")
    return grammar


@functools.lru_cache(maxsize=8)
def guidance_tokenizer(tokenizer_json: str, eos_ids: tuple[int, ...]) -> Any:
    """llguidance's view of a tokenizer (built once per tokenizer: ~0.3 s); the grammar
    lets any of ``eos_ids`` end a complete answer."""
    from llguidance import LLTokenizer

    return LLTokenizer(tokenizer_json, eos_token=list(eos_ids) or None)


class Matcher:
    """One answer's position in its grammar: which tokens may come next."""

    def __init__(self, grammar: str, tokenizer: Any) -> None:
        import numpy as np
        from llguidance import LLMatcher

        self.tokenizer = tokenizer
        self.matcher = LLMatcher(tokenizer, grammar, log_level=0)
        self._fail_if_error()
        self.vocab = int(tokenizer.vocab_size)
        self._bits = np.zeros((self.vocab + 31) // 32, dtype=np.int32)

    def allowed(self) -> Any:
        """A boolean tensor over the tokenizer's vocabulary: the tokens that may come next."""
        import numpy as np
        import torch

        self.matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        self._fail_if_error()
        bits = np.unpackbits(self._bits.view(np.uint8), bitorder="little")[: self.vocab]
        return torch.from_numpy(bits.astype(bool))

    def mask(self, logits: Any) -> Any:
        """``logits`` (one row over the model's vocabulary, which may be wider than the
        tokenizer's) with every token the grammar forbids at -inf (a new tensor)."""
        import torch

        out = torch.full_like(logits, float("-inf"))
        keep = self.allowed()
        n = min(len(keep), logits.shape[-1])
        out[:n] = torch.where(keep[:n], logits[:n], out[:n])
        return out

    def accept(self, token: int) -> None:
        """Advance past the chosen token (it was allowed: the mask saw to it)."""
        self.matcher.consume_token(token)
        self._fail_if_error()

    @property
    def stopped(self) -> bool:
        """The grammar is complete and nothing may follow."""
        return bool(self.matcher.is_stopped())

    def _fail_if_error(self) -> None:
        if self.matcher.is_error():
            lines = self.matcher.get_error().strip().splitlines() or ["unknown error"]
            why = next((x for x in lines if x.startswith("Error:")), lines[0])
            raise StarcomputeError(f"constrained decoding failed: {why[:300]}")
