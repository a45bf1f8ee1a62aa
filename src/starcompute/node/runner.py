"""The node's engine behind its own batch queue, on the satellite's time.

Verified jobs queue here; one worker takes up to ``max_batch`` of them (what arrives
within a short gather window) and runs them as one batch on the node's own engine, in
a thread of its own. In orbit time the batch starts when the satellite is free (with
``hardware`` pace: after the previous batch's predicted end) and each answer chunk is
released at its pace (``node.pace``); chunks of one answer leave in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from starcompute.compute.engine import Completion, Engine, GenerationRequest
from starcompute.dtn.bundle import dtn_ms, from_dtn_ms
from starcompute.errors import InputError
from starcompute.node.jobs import Chunk, Query
from starcompute.node.pace import ChunkBuilder, Pace
from starcompute.times import OrbitClock

log = logging.getLogger(__name__)
GATHER_S = 0.02  # wall seconds the worker waits for more jobs before starting a batch


@dataclass(slots=True)
class _Job:
    query: Query
    received_ms: int
    skip_below: int
    emit: Callable[[Chunk], None]
    done: asyncio.Future[None]
    chunks: asyncio.Queue[Chunk] = field(default_factory=asyncio.Queue)


class JobRunner:
    def __init__(
        self,
        engine: Engine,
        satellite: str,
        clock: OrbitClock,
        pace: Pace,
        max_batch: int = 8,
        on_batch: Callable[[int, int, int], None] | None = None,
    ) -> None:
        """``on_batch(jobs, start_ms, end_ms)``: a batch ran over that orbit interval."""
        self.engine, self.satellite, self.clock, self.pace = engine, satellite, clock, pace
        self.max_batch = max_batch
        self.max_tokens = 0  # a cap on each job's tokens (set-config); 0: the query's own
        self.on_batch = on_batch
        self.busy_until_ms = 0
        self.waiting: list[_Job] = []
        self._arrived = asyncio.Event()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"engine-{satellite}")
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.jobs_run = 0

    def start(self) -> None:
        """Start the worker; the engine warms up first (its weights paged in, its kernels
        initialised) on its own thread, so the first job does not pay for it."""
        loop = asyncio.get_running_loop()
        warm = GenerationRequest(prompt="warm-up", max_tokens=1)
        self._warm = loop.run_in_executor(self._thread, lambda: self.engine.generate([warm]))
        self._worker = asyncio.create_task(self._work())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
        self._thread.shutdown(wait=False, cancel_futures=True)

    def now_ms(self) -> int:
        return dtn_ms(self.clock.now())

    async def run(
        self, query: Query, received_ms: int, emit: Callable[[Chunk], None], skip_below: int = 0
    ) -> None:
        """Queue one verified job; returns once its last chunk was emitted."""
        job = _Job(query, received_ms, skip_below, emit, asyncio.get_running_loop().create_future())
        self.waiting.append(job)
        self._arrived.set()
        releaser = asyncio.create_task(self._release(job))
        try:
            await job.done
        finally:
            releaser.cancel()

    async def _release(self, job: _Job) -> None:
        """Emit the job's chunks in order, each at its release time (orbit clock)."""
        while True:
            chunk = await job.chunks.get()
            if chunk.seq >= job.skip_below:
                await asyncio.sleep(self.clock.wall_until(from_dtn_ms(chunk.released_ms)))
                job.emit(chunk)
            if chunk.final:
                if not job.done.done():
                    job.done.set_result(None)
                return

    async def _work(self) -> None:
        while True:
            await self._arrived.wait()
            await asyncio.sleep(GATHER_S)
            batch, self.waiting = self.waiting[: self.max_batch], self.waiting[self.max_batch :]
            if not self.waiting:
                self._arrived.clear()
            if batch:
                try:
                    await self._run_batch(batch)
                except Exception as exc:  # the engine failed: each job ends with the error
                    log.exception("%s: batch failed", self.satellite)
                    for job in batch:
                        self._fail(job, f"engine error: {exc}")

    def _fail(self, job: _Job, message: str) -> None:
        now = self.now_ms()
        builder = self._builder(job, now, 0, 1)
        done = Completion(message, 0, 0, "error", 0.0, 0.0)
        job.chunks.put_nowait(builder.finish(done, now))

    def _builder(self, job: _Job, start_ms: int, prompt_tokens: int, batch: int) -> ChunkBuilder:
        return ChunkBuilder(
            job.query, self.satellite, self.pace, job.received_ms, start_ms, prompt_tokens, batch
        )

    def _prompt_tokens(self, request: GenerationRequest) -> int:
        return self.engine.count_tokens(request)  # InputError past the window

    async def _run_batch(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        runnable: list[tuple[_Job, GenerationRequest, int]] = []
        for job in batch:
            try:
                request = job.query.request()
                if 0 < self.max_tokens < request.max_tokens:
                    request = dataclasses.replace(request, max_tokens=self.max_tokens)
                runnable.append((job, request, self._prompt_tokens(request)))
            except InputError as exc:
                self._fail(job, str(exc))
        if not runnable:
            return
        now = self.now_ms()
        start = max(now, self.busy_until_ms) if self.pace.mode == "hardware" else now
        builders = [self._builder(j, start, n, len(runnable)) for j, _, n in runnable]

        def on_token(i: int, piece: str) -> None:  # on the engine's thread
            chunk = builders[i].step(piece, self.now_ms())
            if chunk is not None:
                loop.call_soon_threadsafe(runnable[i][0].chunks.put_nowait, chunk)

        requests = [r for _, r, _ in runnable]
        done: list[Completion] = await loop.run_in_executor(
            self._thread, lambda: self.engine.generate(requests, on_token)
        )
        end = start
        for (job, _, _), builder, completion in zip(runnable, builders, done, strict=True):
            last = builder.finish(completion, self.now_ms())
            end = max(end, last.predicted_ms if self.pace.mode == "hardware" else last.computed_ms)
            job.chunks.put_nowait(last)
        self.busy_until_ms = end
        self.batches += 1
        self.jobs_run += len(runnable)
        if self.on_batch is not None:
            self.on_batch(len(runnable), start, end)
