"""Continuous batching: requests join and leave the running batch at every decode step.

What servers such as vLLM, SGLang and llama.cpp's server do, on the native decoder
(``compute.decoder``) and its row cache (``SlotCache``: each sequence has a row of keys
and values, reused when it finishes; positions grow on demand, rows too, within a memory
budget). One worker thread loops:

1. **admit** waiting requests into free rows while the key/value memory stays within
   ``kv_mb`` (one request always runs, whatever it needs, if its prompt fits the
   context window); a request whose prompt starts with the chat template's shared
   prefix (e.g. the default system prompt) gets that prefix's keys and values copied into
   its row instead of computing them again (prefix caching);
2. one forward pass (``Decoder.forward_groups``: all tokens share each layer's
   projections and MLP) that both **prefills** one chunk of the arrivals' prompts (at
   most ``prefill_tokens`` tokens, several requests), so running streams keep flowing
   while long prompts are read, and **decodes** one step of every running request
   (rows ``0..n-1``, a view of the cache: no copy);
3. a request whose prompt is done samples its first token and joins the running rows;
   one that finishes (EOS, stop string, ``max_tokens``, cancelled) leaves at once and
   its row is reused (the last running row moves into it).

Sampling is per request with its own seeded generator (``compute.streams``), so a seed
gives the same tokens at any batch size, up to floating-point differences between
batch shapes (none seen in the tests). Engines without a row cache (``transformers``'
model classes, llama.cpp) keep the static batcher (``compute.batcher``).
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starcompute.compute.batcher import EngineWorker, PieceCallback
from starcompute.compute.engine import Completion, GenerationRequest
from starcompute.compute.streams import Stream, sample
from starcompute.errors import InputError, StarcomputeError

if TYPE_CHECKING:
    from starcompute.compute.real import TransformersEngine

PREFILL_TOKENS = 512  # prompt tokens per prefill pass (a chunk): ~0.8 s on 2 cores
KV_MB = 1024  # key/value memory the rows may take (SmolLM2-135M: 45 KiB a position)


@dataclass(slots=True, eq=False)
class _Seq:
    stream: Stream
    future: Future[Completion] = field(default_factory=Future)
    row: int = -1
    filled: int = 0  # prompt positions in the cache
    length: int = 0  # positions in the cache (prompt, then fed tokens)
    token: int = 0  # the token to feed at the next decode step

    @property
    def need(self) -> int:
        """Positions it may take: its prompt and every token it may generate."""
        return len(self.stream.prompt) + self.stream.request.max_tokens


class ContinuousBatcher(EngineWorker):
    """Runs a native-decoder engine on a worker thread, batching at every decode step."""

    def __init__(
        self,
        engine: TransformersEngine,
        max_batch: int = 64,
        prefill_tokens: int = PREFILL_TOKENS,
        kv_mb: float = KV_MB,
        prefix_cache: bool = True,
    ) -> None:
        from starcompute.compute.decoder import SlotCache

        if max_batch < 1:
            raise InputError(f"max batch must be >= 1, got {max_batch}")
        if prefill_tokens < 1:
            raise InputError(f"prefill tokens must be >= 1, got {prefill_tokens}")
        self.engine, self.max_batch, self.prefill_tokens = engine, max_batch, prefill_tokens
        self.cache = SlotCache(engine.model)
        self._idle_bytes = self.cache.nbytes
        self.budget_bytes = kv_mb * 2**20
        self.prefix = engine.template_prefix() if prefix_cache else []
        super().__init__()
        self._prefix_kv: tuple[list[Any], list[Any]] | None = None
        self.filling: list[_Seq] = []
        self.running: list[_Seq] = []  # running[i].row == i
        self._rows: list[_Seq | None] = [None]  # who holds each allocated row
        self.steps = 0  # decode steps run (passes with running requests)
        self.prefills = 0  # passes with prompt chunks
        self.prefix_hits = 0  # requests that reused the cached prefix
        self.history: deque[tuple[float, float, int]] = deque(maxlen=1000)  # pass: start, end, rows
        self._start("engine-continuous")

    # ---------------------------------------------------------------- callers
    def submit(
        self, request: GenerationRequest, on_piece: PieceCallback | None = None
    ) -> Future[Completion]:
        """Queue ``request``; its pieces go to ``on_piece`` (on the worker thread). A
        request the engine refuses (empty, past the context window) fails its future."""
        e = self.engine
        try:
            prompt = e.encode(request)
        except InputError as exc:
            failed: Future[Completion] = Future()
            failed.set_exception(exc)
            return failed
        seq = _Seq(Stream(request, prompt, e.tokenizer, e.eos_ids, on_piece, time.perf_counter()))
        self._enqueue(seq)
        return seq.future

    # ----------------------------------------------------------------- worker
    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            self._cache_prefix()
            while self._wait():
                try:
                    self._admit()
                    self._step(self._chunk())
                except Exception as exc:  # the engine failed: every active caller hears
                    self._fail_all(exc)

    def _wait(self) -> bool:
        """Block until there is work; False once closed and drained."""
        with self._cv:
            while not (self._queue or self.filling or self.running or self._closed):
                if self._rows_in_use() == 0:
                    self._shrink()
                self._cv.wait()
            return bool(self._queue or self.filling or self.running)

    def _admit(self) -> None:
        placed: list[_Seq] = []
        with self._cv:
            while self._queue and self._rows_in_use() < self.max_batch:
                seq = self._queue[0]
                if seq.stream.cancelled():
                    self._queue.popleft()
                    self._complete(seq, "cancelled")
                    continue
                if not self._fits(seq):
                    break
                self._queue.popleft()
                seq.row = self._free_row()
                self._rows[seq.row] = seq
                self.filling.append(seq)
                placed.append(seq)
        if not placed:
            return
        self.cache.reserve(len(self._rows), max(s.need for s in placed))
        hits = [s for s in placed if _starts_with(s.stream.prompt, self.prefix)]
        if self._prefix_kv is not None and hits:
            self.cache.load_prefix([s.row for s in hits], *self._prefix_kv)
            for s in hits:
                s.filled = len(self.prefix)
            self.prefix_hits += len(hits)

    def _fits(self, seq: _Seq) -> bool:
        """Within the key/value budget with ``seq`` (always, if nothing else runs)."""
        active = self._rows_in_use()
        if active == 0:
            return True
        need = max([seq.need] + [s.need for s in self.running + self.filling])
        return (active + 1) * need * self.cache.bytes_per_position <= self.budget_bytes

    def _free_row(self) -> int:
        n = len(self.running)  # prefer the row right after the running ones
        order = [n, *range(n + 1, len(self._rows)), *range(n)]
        for r in order:
            if r < len(self._rows) and self._rows[r] is None:
                return int(r)
        self._rows.append(None)
        return len(self._rows) - 1

    def _rows_in_use(self) -> int:
        return len(self.running) + len(self.filling)

    def _shrink(self) -> None:
        """Idle: give back the rows and positions a burst grew."""
        from starcompute.compute.decoder import SlotCache

        if self.cache.nbytes > self._idle_bytes:
            self.cache = SlotCache(self.engine.model)
            self._rows = [None]

    def _chunk(self) -> list[tuple[_Seq, int]]:
        """The arrivals' prompt tokens for this pass: (request, tokens), at most
        ``prefill_tokens`` in all (cancelled arrivals leave first)."""
        for seq in [s for s in self.filling if s.stream.cancelled()]:
            self.filling.remove(seq)
            self._release(seq.row)
            self._complete(seq, "cancelled")
        budget, chunk = self.prefill_tokens, []
        for seq in self.filling:
            if budget <= 0:
                break
            take = min(len(seq.stream.prompt) - seq.filled, budget)
            chunk.append((seq, take))
            budget -= take
        return chunk

    def _step(self, chunk: list[tuple[_Seq, int]]) -> None:
        """One pass: a decode step of every running request and the arrivals' prompt
        chunk together (their tokens share each layer's projections and MLP)."""
        import torch

        from starcompute.compute.decoder import Rows

        groups, n = [], len(self.running)
        if n:
            ids = torch.tensor([[s.token] for s in self.running])
            positions = torch.tensor([[s.length] for s in self.running])
            groups.append(Rows(slice(0, n), ids, positions))
        if chunk:
            width = max(take for _, take in chunk)
            ids = torch.full((len(chunk), width), self.engine.pad_id, dtype=torch.long)
            for i, (seq, take) in enumerate(chunk):
                ids[i, :take] = torch.tensor(seq.stream.prompt[seq.filled : seq.filled + take])
            starts = torch.tensor([seq.filled for seq, _ in chunk])
            positions = starts[:, None] + torch.arange(width)[None, :]
            rows = torch.tensor([seq.row for seq, _ in chunk])
            last = torch.tensor([take - 1 for _, take in chunk])
            groups.append(Rows(rows, ids, positions, last))
        if not groups:
            return
        reach = max(int(g.positions.max()) + 1 for g in groups)
        self.cache.reserve(len(self._rows), reach)
        started = time.perf_counter()
        logits = [x.float() for x in self.engine.model.forward_groups(groups, self.cache)]
        self.history.append((started, time.perf_counter(), n + len(chunk)))
        if n:
            self._decoded(logits[0])
        if chunk:
            self._prefilled(chunk, logits[-1])

    def _prefilled(self, chunk: list[tuple[_Seq, int]], logits: Any) -> None:
        """Prompts done: each samples its first token and joins the running rows."""
        self.prefills += 1
        done = []
        for i, (seq, take) in enumerate(chunk):
            seq.filled += take
            if seq.filled == len(seq.stream.prompt):
                done.append((i, seq))
        if not done:
            return
        first = sample(logits[[i for i, _ in done]], [s.stream for _, s in done], 0)
        now = time.perf_counter()
        from starcompute.compute.real import score_prompt

        for (_, seq), token in zip(done, first, strict=True):
            score_prompt(self.engine, seq.stream)
            self.filling.remove(seq)
            seq.length = seq.filled
            if self._accept(seq, token, now):
                self._release(seq.row)
                self._finish(seq)
            else:
                seq.token = token
                self._start_running(seq)

    def _cache_prefix(self) -> None:
        """Compute the shared prefix's keys and values once (in row 0, then cleared)."""
        import torch

        n = len(self.prefix)
        if not n:
            return
        self.cache.reserve(1, n)
        ids = torch.tensor([self.prefix])
        self.engine.model.forward_rows(ids, torch.arange(n)[None, :], self.cache, slice(0, 1))
        self._prefix_kv = self.cache.read_prefix(0, n)

    def _start_running(self, seq: _Seq) -> None:
        """Move ``seq`` to the row right after the running ones."""
        target = len(self.running)
        if seq.row != target:
            other = self._rows[target]
            if other is None:
                self.cache.copy_row(seq.row, target, seq.length)
                self._rows[seq.row] = None
            else:  # a request still filling holds it: trade rows
                self.cache.swap_rows(seq.row, target, max(seq.length, other.filled))
                other.row, self._rows[seq.row] = seq.row, other
            seq.row, self._rows[target] = target, seq
        self.running.append(seq)

    def _decoded(self, logits: Any) -> None:
        """The running requests' next tokens; those that finish leave at once."""
        tokens = sample(logits, [s.stream for s in self.running], self.engine.pad_id)
        now = time.perf_counter()
        self.steps += 1
        finished = []
        for i, (seq, token) in enumerate(zip(self.running, tokens, strict=True)):
            seq.length += 1
            if self._accept(seq, token, now):
                finished.append(i)
            else:
                seq.token = token
        for i in reversed(finished):
            self._leave(i)

    @staticmethod
    def _accept(seq: _Seq, token: int, now: float) -> bool:
        """``seq`` takes its token; True once it is done. A request whose own answer
        fails (e.g. its grammar) fails alone: its caller hears the error."""
        try:
            return seq.stream.accept(token, now)
        except StarcomputeError as exc:
            seq.stream.done = True
            if not seq.future.done():
                seq.future.set_exception(exc)
            return True

    def _leave(self, i: int) -> None:
        """Running request ``i`` is done: the last running row moves into its row."""
        seq, last = self.running[i], self.running[-1]
        if last is not seq:
            self.cache.copy_row(last.row, i, last.length)
            self._rows[last.row] = None
            last.row, self.running[i], self._rows[i] = i, last, last
        else:
            self._rows[seq.row] = None
        self.running.pop()
        self._finish(seq)

    def _release(self, row: int) -> None:
        self._rows[row] = None

    def _complete(self, seq: _Seq, reason: str) -> None:
        seq.stream.finish(reason, time.perf_counter() - seq.stream.started_s)
        self._finish(seq)

    @staticmethod
    def _finish(seq: _Seq) -> None:
        if not seq.future.done():
            seq.future.set_result(seq.stream.completion())

    def _fail_all(self, exc: Exception) -> None:
        with self._cv:  # also one between the lists (a prompt done, not yet running)
            held = [s for s in self._rows if s is not None]
            seqs = list(dict.fromkeys(self.running + self.filling + held))
            self.running, self.filling = [], []
            self._rows = [None] * len(self._rows)
        for seq in seqs:
            if not seq.future.done():
                seq.future.set_exception(exc)


def _starts_with(ids: list[int], prefix: list[int]) -> bool:
    return bool(prefix) and len(ids) > len(prefix) and ids[: len(prefix)] == prefix
