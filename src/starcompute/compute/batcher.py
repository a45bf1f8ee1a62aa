"""A batching front for an engine: many callers, one model, batches formed on the fly.

Callers on any thread (or an asyncio loop) ``submit`` a request with a callback for its
text pieces and get a ``concurrent.futures.Future`` of its :class:`Completion`. One worker
thread takes whatever is waiting and runs it as one static batch on the engine; after
the first request it keeps gathering while requests keep coming or callers say more are
on their way (a quiet gap of ``gather_s`` ends it, ``max_gather_s`` caps it), so a burst
becomes full batches rather than a small one and then a long wait. Requests that
arrive while a batch runs form the next one. A request the engine rejects (e.g. past the
context window) fails alone: the batch is retried without it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starcompute.compute.engine import Completion, Engine, GenerationRequest
from starcompute.errors import InputError, UnavailableError

PieceCallback = Callable[[str], None]
T = TypeVar("T")


def off_main_thread(factory: Callable[[], T]) -> T:
    """Run ``factory`` (e.g. loading a torch model) on a short-lived thread.

    PyTorch's OpenMP pool belongs to the thread that first runs a parallel operation and
    keeps spinning while that thread lives: a model loaded on the main thread and then run
    on the batcher's thread competes with the main thread's idle pool (measured here:
    6.9 s instead of 5.1 s for a batch of 16 x 64 tokens of SmolLM2 on 2 cores). Loading
    on a thread that ends leaves no pool behind."""
    with ThreadPoolExecutor(1, thread_name_prefix="engine-load") as pool:
        return pool.submit(factory).result()


class EngineWorker:
    """What both batchers share: one worker thread that owns the engine, a queue that
    callers on any thread fill, and a close that lets the worker finish what was queued."""

    def __init__(self) -> None:
        self._queue: deque[Any] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def _start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def _enqueue(self, item: Any) -> None:
        with self._cv:
            if self._closed:
                raise UnavailableError("the engine batcher is closed")
            self._queue.append(item)
            self._cv.notify()

    @property
    def waiting(self) -> int:
        with self._cv:
            return len(self._queue)

    def close(self) -> None:
        """Finish what was submitted, then stop the worker."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout=60)


@dataclass(slots=True)
class _Job:
    request: GenerationRequest
    on_piece: PieceCallback | None
    future: Future[Completion] = field(default_factory=Future)


class Batcher(EngineWorker):
    """Runs an engine on a worker thread, batching concurrent requests."""

    def __init__(
        self,
        engine: Engine,
        max_batch: int = 16,
        gather_s: float = 0.02,
        max_gather_s: float = 0.5,
        coming: Callable[[], int] | None = None,
    ) -> None:
        """``coming()``: how many requests callers have accepted but not yet submitted
        (e.g. still being planned); gathering waits for them, up to ``max_gather_s``."""
        if max_batch < 1:
            raise InputError(f"max batch must be >= 1, got {max_batch}")
        self.engine = engine
        self.max_batch = max_batch
        self.gather_s, self.max_gather_s = gather_s, max_gather_s
        self.coming = coming or (lambda: 0)
        super().__init__()
        self.batches = 0  # batches run so far
        self.history: deque[tuple[float, float, int]] = deque(maxlen=1000)  # start, end, size
        self._start("engine-batcher")

    def submit(
        self, request: GenerationRequest, on_piece: PieceCallback | None = None
    ) -> Future[Completion]:
        job = _Job(request, on_piece)
        self._enqueue(job)
        return job.future

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
            # gather a burst: until the batch is full, no request came for gather_s, or
            # max_gather_s passed since the first one
            give_up = time.monotonic() + self.max_gather_s
            while len(self._queue) < self.max_batch and not self._closed:
                seen = len(self._queue)
                left = min(self.gather_s, give_up - time.monotonic())
                if left <= 0:
                    break
                arrived = self._cv.wait(left) or len(self._queue) > seen
                if not arrived and self.coming() == 0:
                    break
            n = min(self.max_batch, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _run_batch(self, jobs: list[_Job]) -> None:
        def on_token(i: int, piece: str) -> None:
            callback = jobs[i].on_piece
            if callback is not None:
                callback(piece)

        started = time.monotonic()
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
        self.history.append((started, time.monotonic(), len(jobs)))
        for job, completion in zip(jobs, done, strict=True):
            job.future.set_result(completion)
