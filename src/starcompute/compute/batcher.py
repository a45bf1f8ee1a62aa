"""A batching front for an engine: many callers, one model, batches formed on the fly.

Callers on any thread (or an asyncio loop) ``submit`` a request with a callback for its
text pieces and get a ``concurrent.futures.Future`` of its :class:`Completion`. One worker
thread takes whatever is waiting (up to ``max_batch``, after a short gathering window
once the first request arrives) and runs it as one static batch on the engine; requests
that arrive meanwhile form the next batch. A request the engine rejects (e.g. past the
context window) fails alone: the batch is retried without it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from starcompute.compute.engine import Completion, Engine, GenerationRequest
from starcompute.errors import InputError, StarcomputeError

PieceCallback = Callable[[str], None]


@dataclass(slots=True)
class _Job:
    request: GenerationRequest
    on_piece: PieceCallback | None
    future: Future[Completion] = field(default_factory=Future)


class Batcher:
    """Runs an engine on a worker thread, batching concurrent requests."""

    def __init__(self, engine: Engine, max_batch: int = 16, gather_s: float = 0.005) -> None:
        if max_batch < 1:
            raise InputError(f"max batch must be >= 1, got {max_batch}")
        self.engine = engine
        self.max_batch = max_batch
        self.gather_s = gather_s
        self._queue: deque[_Job] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self.batches = 0  # batches run so far
        self._thread = threading.Thread(target=self._run, name="engine-batcher", daemon=True)
        self._thread.start()

    def submit(
        self, request: GenerationRequest, on_piece: PieceCallback | None = None
    ) -> Future[Completion]:
        job = _Job(request, on_piece)
        with self._cv:
            if self._closed:
                raise StarcomputeError("the engine batcher is closed")
            self._queue.append(job)
            self._cv.notify()
        return job.future

    @property
    def waiting(self) -> int:
        with self._cv:
            return len(self._queue)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            self._run_batch(jobs)

    def _take(self) -> list[_Job] | None:
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if self._closed and not self._queue:
                return None
        time.sleep(self.gather_s)  # let a burst arrive together
        with self._cv:
            n = min(self.max_batch, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _run_batch(self, jobs: list[_Job]) -> None:
        def on_token(i: int, piece: str) -> None:
            callback = jobs[i].on_piece
            if callback is not None:
                callback(piece)

        try:
            done = self.engine.generate([j.request for j in jobs], on_token)
        except InputError as exc:
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
                return
            for job in jobs:  # isolate the bad request(s)
                self._run_batch([job])
            return
        except Exception as exc:  # the engine failed: every caller hears of it
            for job in jobs:
                job.future.set_exception(exc)
            return
        self.batches += 1
        for job, completion in zip(jobs, done, strict=True):
            job.future.set_result(completion)
