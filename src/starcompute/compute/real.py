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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from starcompute.compute import tools
from starcompute.compute.checkpoints import DEFAULT_MODEL, check_hf_dir, offline, resolve
from starcompute.compute.engine import (
    Completion,
    EngineBase,
    GenerationRequest,
    Message,
    Scheduler,
    TokenCallback,
)
from starcompute.compute.streams import PieceFn, Stream, prompt_logprobs, sample
from starcompute.compute.tokenizer import ChatTokenizer
from starcompute.errors import InputError

DECODERS = ("auto", "native", "transformers")  # which implementation runs the network
CHATML_FALLBACK = "<|im_start|>{role}\n{content}<|im_end|>\n"


class TransformersEngine(EngineBase):
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

    def count_tokens(self, request: GenerationRequest) -> int:
        return len(self.encode(request))

    def weights(self) -> Any:
        return self.model

    def scheduler(
        self, max_batch: int, coming: Callable[[], int] | None = None, continuous: bool = True
    ) -> Scheduler:
        """Continuous batching on the native decoder; static batches when not
        ``continuous`` or on ``transformers``' model classes (no row cache there)."""
        from starcompute.compute.decoder import Decoder

        if continuous and isinstance(self.model, Decoder):
            from starcompute.compute.continuous import ContinuousBatcher

            return ContinuousBatcher(self, max_batch)
        return super().scheduler(max_batch, coming, continuous)

    def template_prefix(self) -> list[int]:
        """The tokens every chat prompt starts with (e.g. the chat template's default
        system prompt): the common start of two conversations that differ in their user
        message; empty without a chat template."""
        if not self.tokenizer.chat_template:
            return []
        a, b = (
            self.encode(GenerationRequest(messages=(Message("user", text),))) for text in ("a", "b")
        )
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return a[:n]

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
        signatures = None
        if request.tools is not None:
            offered = tools.parse_tools(request.tools)
            if tokenizer.renders_tools:
                signatures = [t.signature() for t in offered]
            else:
                msgs = tools.with_system_text(msgs, offered)
        if tokenizer.chat_template:
            ids = tokenizer.encode_chat(msgs, signatures)
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
        self.e, self.prompts = engine, prompts
        t0 = time.perf_counter()
        self.streams = [
            Stream(r, p, engine.tokenizer, engine.eos_ids, _emitter(on_token, i), t0)
            for r, p, i in zip(requests, prompts, index, strict=True)
        ]

    def run(self) -> list[Completion]:
        import torch

        e, n = self.e, len(self.streams)
        width = max(len(p) for p in self.prompts)
        ids = torch.full((n, width), e.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, p in enumerate(self.prompts):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        t0 = time.perf_counter()
        for s in self.streams:
            s.started_s = t0  # one batch: one start, one time to first token
        with torch.inference_mode():
            for s in self.streams:
                score_prompt(e, s)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            res = e.model(
                input_ids=ids.to(e.device),
                attention_mask=mask.to(e.device),
                position_ids=pos.to(e.device),
                use_cache=True,
            )
            cache, logits = _cache_of(res), res.logits[:, -1, :].float()
            for _ in range(max(s.request.max_tokens for s in self.streams)):
                nxt = sample(logits, self.streams, e.pad_id)
                now = time.perf_counter()
                for s, t in zip(self.streams, nxt, strict=True):
                    if not s.done:
                        s.accept(t, now)
                if all(s.done for s in self.streams):
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
        return [s.completion() for s in self.streams]


def score_prompt(engine: TransformersEngine, stream: Stream) -> None:
    """The prompt's log-probabilities, for a request that echoes its prompt."""
    k = stream.request.logprobs
    if stream.request.echo and k is not None:
        stream.prompt_logprobs = prompt_logprobs(engine.model, stream.prompt, k, engine.tokenizer)


def _emitter(on_token: TokenCallback | None, index: int) -> PieceFn | None:
    if on_token is None:
        return None
    return lambda piece: on_token(index, piece)


def _cache_of(result: Any) -> Any:
    cache = getattr(result, "cache", None)
    return cache if cache is not None else result.past_key_values


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
