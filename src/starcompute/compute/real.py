"""The real engine: PyTorch on the CPU (or a GPU when there is one).

The network is the native decoder (``compute/decoder.py``, the Llama/Qwen2/Qwen3 family
without ``transformers``' modelling stack) where it runs the checkpoint, else
``transformers``' model class; the tokenizer is ``compute/tokenizer.py`` for both.

Requests are served in static batches (left-padded, one shared KV cache): one prefill
pass, then one decode step per token for the whole batch; a request leaves the batch
accounting when it hits EOS, a stop string or its token budget. Greedy or temperature
+ top-p sampling, per request, with an optional seed; tokens stream through a callback.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starcompute.compute.checkpoints import DEFAULT_MODEL, check_hf_dir, offline, resolve
from starcompute.compute.engine import Completion, GenerationRequest, TokenCallback
from starcompute.compute.tokenizer import ChatTokenizer
from starcompute.errors import InputError

DECODERS = ("auto", "native", "transformers")  # which implementation runs the network
CHATML_FALLBACK = "<|im_start|>{role}\n{content}<|im_end|>\n"


class TransformersEngine:
    """An :class:`~starcompute.compute.engine.Engine` running a real model."""

    def __init__(
        self,
        model: str | Path | None = None,
        max_batch: int = 16,
        device: str = "cpu",
        threads: int | None = None,
        decoder: str = "auto",
    ) -> None:
        if decoder not in DECODERS:
            raise InputError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        offline()
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.max_batch = max_batch
        self.device = device
        t0 = time.perf_counter()
        directory, self.converted = checkpoint_dir(model)
        self.model, self.tokenizer = _load_dir(directory, device, decoder)
        self.load_s = time.perf_counter() - t0
        self.name = str(model or DEFAULT_MODEL)
        self.path = directory
        self.context_window = int(getattr(self.model.config, "max_position_embeddings", 2048))
        params = inspect.signature(self.model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"  # transformers >= 5.24
        eos = self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        if self.tokenizer.eos_token_id is not None:
            self.eos_ids.add(self.tokenizer.eos_token_id)
        pad = self.tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else next(iter(self.eos_ids), 0)

    # ------------------------------------------------------------------ prompts
    def encode(self, request: GenerationRequest) -> list[int]:
        """Token ids of a request's prompt (chat template for messages)."""
        return prompt_ids(self.tokenizer, request, self.context_window)

    # --------------------------------------------------------------- generation
    def generate(
        self, requests: Sequence[GenerationRequest], on_token: TokenCallback | None = None
    ) -> list[Completion]:
        prompts = [self.encode(r) for r in requests]  # validate all before running any
        out: list[Completion] = []
        for b in range(0, len(requests), self.max_batch):
            batch = list(range(b, min(b + self.max_batch, len(requests))))
            out += _Batch(
                self, [requests[i] for i in batch], [prompts[i] for i in batch], batch, on_token
            ).run()
        return out


def checkpoint_dir(model: str | Path | None) -> tuple[Path, bool]:
    """The Hugging Face directory of a model (a GGUF file is dequantised into the cache
    the first time); whether it was converted now."""
    directory, gguf = resolve(model)
    converted = gguf is not None and not (directory / "config.json").is_file()
    if converted:
        _convert_gguf(gguf, directory)  # type: ignore[arg-type]
    return directory, converted


DTYPES = ("float32", "bfloat16")


def checkpoint_as(directory: Path, dtype: str) -> Path:
    """The checkpoint with its floating-point weights stored as ``dtype``: the directory
    itself when they already are, else a copy made once beside it (``<name>-<dtype>``).
    bfloat16 halves the weights every process maps (and touches)."""
    import json

    if dtype not in DTYPES:
        raise InputError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    if config.get("dtype", config.get("torch_dtype", "float32")) == dtype:
        return directory
    out = directory.parent / f"{directory.name}-{dtype}"
    if (out / "config.json").is_file():
        return out
    import torch
    from safetensors.torch import load_file, save_file

    tmp = directory.parent / f".{out.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(directory, tmp, ignore=shutil.ignore_patterns("*.safetensors", "config.json"))
    target = getattr(torch, dtype)
    for weights in directory.glob("*.safetensors"):
        tensors = load_file(weights)
        cast = {k: v.to(target) if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(cast, tmp / weights.name, metadata={"format": "pt"})
    config["dtype"] = dtype
    config.pop("torch_dtype", None)
    (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    try:
        tmp.rename(out)
    except OSError:  # made meanwhile by another process
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def prompt_ids(
    tokenizer: ChatTokenizer, request: GenerationRequest, context_window: int
) -> list[int]:
    """Token ids of a request's prompt (the chat template for messages); InputError if it
    is empty or with ``max_tokens`` does not fit the context window."""
    if request.prompt is not None:
        ids = tokenizer.encode(request.prompt)
    else:
        msgs = [{"role": m.role, "content": m.content} for m in request.messages]
        if tokenizer.chat_template:
            ids = tokenizer.encode_chat(msgs)
        else:
            text = "".join(CHATML_FALLBACK.format(**m) for m in msgs)
            ids = tokenizer.encode(text + "<|im_start|>assistant\n")
    if not ids:
        raise InputError("the prompt is empty")
    if len(ids) + request.max_tokens > context_window:
        raise InputError(
            f"prompt of {len(ids)} tokens + max tokens {request.max_tokens} exceeds the "
            f"context window of {context_window} tokens"
        )
    return ids


class PromptTokens:
    """Counts prompt tokens as a checkpoint's engine would, with its tokenizer only (the
    ground segment sizes queries without loading the model)."""

    def __init__(self, directory: Path) -> None:
        import json

        offline()
        check_hf_dir(directory)
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        self.context_window = int(config.get("max_position_embeddings", 2048))
        self.tokenizer = ChatTokenizer(directory)

    def __call__(self, request: GenerationRequest) -> int:
        return len(prompt_ids(self.tokenizer, request, self.context_window))


class _Batch:
    """One static batch: prefill, then decode until every request is done."""

    def __init__(
        self,
        engine: TransformersEngine,
        requests: list[GenerationRequest],
        prompts: list[list[int]],
        index: list[int],
        on_token: TokenCallback | None,
    ) -> None:
        self.e, self.requests, self.prompts = engine, requests, prompts
        self.index, self.on_token = index, on_token
        self.generated: list[list[int]] = [[] for _ in requests]
        self.texts = [""] * len(requests)
        self.sent = [0] * len(requests)  # characters already streamed
        self.done = [False] * len(requests)
        self.reason = ["length"] * len(requests)
        self.finish_s = [0.0] * len(requests)

    def run(self) -> list[Completion]:
        import torch

        e, n = self.e, len(self.requests)
        width = max(len(p) for p in self.prompts)
        ids = torch.full((n, width), e.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, p in enumerate(self.prompts):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        gens = [_generator(r.seed) for r in self.requests]
        t0 = time.perf_counter()
        with torch.inference_mode():
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            res = e.model(
                input_ids=ids.to(e.device),
                attention_mask=mask.to(e.device),
                position_ids=pos.to(e.device),
                use_cache=True,
            )
            cache, logits = _cache_of(res), res.logits[:, -1, :].float()
            ttft = 0.0
            for step in range(max(r.max_tokens for r in self.requests)):
                nxt = self._sample(logits, gens)
                if step == 0:
                    ttft = time.perf_counter() - t0
                self._accept(nxt, time.perf_counter() - t0)
                if all(self.done):
                    break
                mask = torch.cat([mask, torch.ones((n, 1), dtype=torch.long)], dim=1)
                pos = pos[:, -1:] + 1
                res = e.model(
                    input_ids=torch.tensor(nxt).view(n, 1).to(e.device),
                    attention_mask=mask.to(e.device),
                    position_ids=pos.to(e.device),
                    use_cache=True,
                    **{e.cache_kw: cache},
                )
                cache, logits = _cache_of(res), res.logits[:, -1, :].float()
        return [
            Completion(
                self.texts[i],
                len(self.prompts[i]),
                len(self.generated[i]),
                self.reason[i],
                ttft,
                self.finish_s[i] or ttft,
                self.generated[i],
            )
            for i in range(n)
        ]

    def _sample(self, logits: Any, gens: list[Any]) -> list[int]:
        import torch

        out = torch.argmax(logits, dim=-1).tolist()  # greedy rows in one call
        for i, r in enumerate(self.requests):
            if self.done[i]:
                out[i] = self.e.pad_id
            elif r.temperature > 0.0:
                probs = torch.softmax(logits[i] / r.temperature, dim=-1)
                if r.top_p < 1.0:
                    sorted_p, order = torch.sort(probs, descending=True)
                    keep = torch.cumsum(sorted_p, 0) - sorted_p < r.top_p
                    probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
                out[i] = int(torch.multinomial(probs, 1, generator=gens[i]))
        return [int(t) for t in out]

    def _accept(self, tokens: list[int], now_s: float) -> None:
        """Take one decode step's tokens; ``on_token`` hears once per request still
        running (its piece may be empty while text is held back), so its calls count
        the request's decode steps."""
        tok = self.e.tokenizer
        for i, t in enumerate(tokens):
            if self.done[i]:
                continue
            r = self.requests[i]
            if r.cancelled is not None and r.cancelled():  # nobody is waiting for it
                self._finish(i, "cancelled", now_s)
                continue
            if t in self.e.eos_ids and not r.ignore_eos:
                self._finish(i, "stop", now_s)
                continue
            self.generated[i].append(t)
            if not (r.stop or self.on_token is not None):  # text only needed at the end
                if len(self.generated[i]) >= r.max_tokens:
                    self._finish(i, "length", now_s)
                continue
            text = tok.decode(self.generated[i])
            cut = _stop_at(text, r.stop)
            self.texts[i] = text[:cut] if cut is not None else text
            if cut is not None:
                self._finish(i, "stop", now_s)
            elif len(self.generated[i]) >= r.max_tokens:
                self._finish(i, "length", now_s)
            else:
                self._emit(i, self.texts[i], final=False)

    def _emit(self, i: int, text: str, final: bool) -> None:
        """Stream what is safe to show: hold back a tail that may still become a stop
        string, and a partly decoded character (U+FFFD), until the request finishes."""
        self.texts[i] = text
        end = len(text) if final else _safe_end(text, self.requests[i].stop)
        piece = text[self.sent[i] : end]
        if self.on_token is not None:
            self.on_token(self.index[i], piece)
        self.sent[i] = max(self.sent[i], end)

    def _finish(self, i: int, reason: str, now_s: float) -> None:
        self.done[i], self.reason[i], self.finish_s[i] = True, reason, now_s
        r = self.requests[i]
        if r.stop or self.on_token is not None:
            self._emit(i, self.texts[i], final=True)
        else:
            self.texts[i] = self.e.tokenizer.decode(self.generated[i])


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


def _cache_of(result: Any) -> Any:
    cache = getattr(result, "cache", None)
    return cache if cache is not None else result.past_key_values


def _stop_at(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None


def _generator(seed: int | None) -> Any:
    import torch

    g = torch.Generator()
    g.manual_seed(seed if seed is not None else int(time.time_ns() % 2**31))
    return g


def _load_dir(directory: Path, device: str, decoder: str) -> tuple[Any, ChatTokenizer]:
    from safetensors import SafetensorError

    check_hf_dir(directory)
    tokenizer = ChatTokenizer(directory)
    try:
        model = _load_model(directory, decoder).to(device).eval()
    except InputError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot load checkpoint {directory}: {first}") from None
    return model, tokenizer


def _load_model(directory: Path, decoder: str) -> Any:
    """The network: the native decoder where it runs the checkpoint (``auto``, or asked
    for by name), else ``transformers``' model class; weights in their stored dtype."""
    import json

    from starcompute.compute.decoder import Decoder, unsupported

    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    if decoder == "native" or (decoder == "auto" and unsupported(config) is None):
        return Decoder.load(directory)
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return AutoModelForCausalLM.from_pretrained(directory, dtype="auto")


def _convert_gguf(gguf: Path, directory: Path) -> None:
    """Dequantise a GGUF file once into a Hugging Face directory (atomic rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=directory.name + ".tmp-"))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"cannot read GGUF file {gguf}: {first}") from None
        model.hf_quantizer = None  # type: ignore[assignment]  # dequantised fp32 from here on
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, directory)  # atomic; another process may have finished first
        except OSError:
            if not (directory / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
