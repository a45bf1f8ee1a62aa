"""Radiation faults on the real engine, and what catches them.

``WeightGuard`` keeps a CRC-32 per 64 KiB block of every weight tensor (parameters and
buffers) and the golden copy the satellite holds in storage. ``scrub`` recomputes every
checksum, restores each corrupted block from the golden copy and reports it.
``SeuInjector`` flips random bits in the loaded weights - uniformly over all weight bits,
as single-event upsets strike - at a rate from the radiation model (per bit per day, higher
in the South Atlantic Anomaly) times an acceleration factor for tests.
``ProtectedEngine`` serves through any engine: it scrubs before a batch (a transit of the
SAA, or idle time, may have flipped bits), runs it, scrubs again, and when a flip landed
while the batch ran it repairs the weights and runs the batch again, so no answer computed
on corrupted weights leaves the satellite. Tokens are released to ``on_token`` only after
the batch's weights verified. Activations are not covered (their upsets last one step).
"""

from __future__ import annotations

import secrets
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from starcompute.compute.engine import (
    Completion,
    Engine,
    GenerationRequest,
    Scheduler,
    TokenCallback,
)
from starcompute.errors import InputError, StarcomputeError

BLOCK_BYTES = 65536
MAX_ATTEMPTS = 10
SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Flip:
    tensor: str
    byte: int
    bit: int
    scrub: int  # scrubs completed when the flip happened

    @property
    def block(self) -> int:
        return self.byte // BLOCK_BYTES


def _byte_view(tensor: Any) -> np.ndarray:
    """The tensor's memory as writable bytes (shared, not copied)."""
    import torch

    view: np.ndarray = tensor.detach().reshape(-1).view(torch.uint8).numpy()
    return view


def _crcs(data: np.ndarray) -> np.ndarray:
    return np.array(
        [zlib.crc32(data[i : i + BLOCK_BYTES].data) for i in range(0, len(data), BLOCK_BYTES)],
        dtype=np.uint32,
    )


@dataclass(slots=True)
class WeightGuard:
    """Checksums and the golden copy of a model's weights; the scrubber."""

    model: Any  # a torch.nn.Module
    views: dict[str, np.ndarray] = field(init=False)
    golden: dict[str, np.ndarray] = field(init=False)
    checksums: dict[str, np.ndarray] = field(init=False)
    scrubs: int = 0
    blocks_corrected: int = 0
    history: list[tuple[int, str, int]] = field(default_factory=list)  # (scrub, tensor, block)

    def __post_init__(self) -> None:
        self.views, seen = {}, set()
        tensors = list(self.model.named_parameters()) + list(self.model.named_buffers())
        for name, tensor in tensors:
            if tensor.data_ptr() in seen or tensor.numel() == 0:
                continue  # tied weights are one tensor
            seen.add(tensor.data_ptr())
            self.views[name] = _byte_view(tensor)
        self.golden = {name: view.copy() for name, view in self.views.items()}
        self.checksums = {name: _crcs(view) for name, view in self.views.items()}

    @property
    def bits(self) -> int:
        return 8 * sum(len(v) for v in self.views.values())

    def scrub(self) -> list[tuple[str, int]]:
        """Verify every block; restore the corrupted ones from the golden copy."""
        bad = []
        for name, view in self.views.items():
            now = _crcs(view)
            for block in np.flatnonzero(now != self.checksums[name]).tolist():
                lo, hi = block * BLOCK_BYTES, (block + 1) * BLOCK_BYTES
                view[lo:hi] = self.golden[name][lo:hi]
                if zlib.crc32(view[lo:hi].data) != self.checksums[name][block]:
                    raise StarcomputeError(f"{name} block {block}: the golden copy is corrupt")
                bad.append((name, block))
        self.history += [(self.scrubs, name, block) for name, block in bad]
        self.scrubs += 1
        self.blocks_corrected += len(bad)
        return bad


@dataclass(slots=True)
class SeuInjector:
    """Flips random weight bits: ``rate_fn()`` gives upsets per bit per day now (e.g. from
    ``seu_rate_per_bit_per_day`` at the satellite's position), ``acceleration`` scales it."""

    guard: WeightGuard
    seed: int = 0
    acceleration: float = 1.0
    flips: list[Flip] = field(default_factory=list)
    _rng: np.random.Generator = field(init=False)
    _names: list[str] = field(init=False)
    _weights: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if not self.acceleration > 0:
            raise InputError(f"acceleration must be > 0, got {self.acceleration}")
        self._rng = np.random.default_rng(self.seed)
        self._names = list(self.guard.views)
        sizes = np.array([len(self.guard.views[n]) for n in self._names], dtype=np.float64)
        self._weights = sizes / sizes.sum()

    def flip(self, n: int, exponent_msb: bool = False) -> list[Flip]:
        """Flip ``n`` bits, each a uniformly drawn bit of all the weights; with
        ``exponent_msb`` the most significant exponent bit of a uniformly drawn float32
        weight instead (the worst case: the weight becomes ~1e38 or ~1e-38)."""
        new = []
        for k in self._rng.choice(len(self._names), size=n, p=self._weights):
            name = self._names[int(k)]
            view = self.guard.views[name]
            byte, bit = int(self._rng.integers(len(view))), int(self._rng.integers(8))
            if exponent_msb:  # little-endian float32: bit 30 is bit 6 of byte 3
                byte, bit = byte - byte % 4 + 3, 6
            view[byte] ^= np.uint8(1 << bit)
            new.append(Flip(name, byte, bit, self.guard.scrubs))
        self.flips += new
        return new

    def expose(self, rate_per_bit_per_day: float, dt_s: float) -> list[Flip]:
        """The upsets of ``dt_s`` seconds at a rate (Poisson), accelerated."""
        mean = rate_per_bit_per_day * self.guard.bits * dt_s / SECONDS_PER_DAY * self.acceleration
        return self.flip(int(self._rng.poisson(mean)))

    def detection(self) -> dict[str, int]:
        """Each flip against the scrubs: detected at the first scrub after it (or later)."""
        found: dict[tuple[str, int], list[int]] = {}
        for scrub, name, block in self.guard.history:
            found.setdefault((name, block), []).append(scrub)
        late = missed = 0
        for f in self.flips:
            after = [s for s in found.get((f.tensor, f.block), []) if s >= f.scrub]
            if not after:
                missed += 1
            elif after[0] > f.scrub:
                late += 1
        return {"injected": len(self.flips), "missed": missed, "late": late}


@dataclass(slots=True)
class ActivationUpsets:
    """Transient upsets in activations: each call of a linear layer flips, with
    probability ``p_per_call``, the most significant exponent bit of one random element of
    its output (the worst case; the next pass is clean). Checksums cannot see these:
    ``ProtectedEngine(dual=True)`` does, by running each batch twice."""

    model: Any  # a torch.nn.Module
    p_per_call: float
    seed: int = 0
    flips: int = 0
    _rng: np.random.Generator = field(init=False)
    _handles: list[Any] = field(init=False)

    def __post_init__(self) -> None:
        import torch

        if not 0.0 <= self.p_per_call <= 1.0:
            raise InputError(f"p_per_call must be within 0..1, got {self.p_per_call}")
        self._rng = np.random.default_rng(self.seed)
        layers = [m for m in self.model.modules() if isinstance(m, torch.nn.Linear)]
        self._handles = [m.register_forward_hook(self._strike) for m in layers]

    def _strike(self, module: Any, inputs: Any, output: Any) -> Any:
        if self._rng.random() >= self.p_per_call:
            return None
        flat = output.detach().reshape(-1)
        k = int(self._rng.integers(flat.numel()))
        bits = flat[k : k + 1].float().numpy().view(np.uint32) ^ np.uint32(1 << 30)
        flat[k] = float(bits.view(np.float32)[0])
        self.flips += 1
        return output

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


@dataclass(slots=True)
class Exposure:
    """Upsets as orbit time passes: called often (e.g. per token step), it exposes the
    weights for the orbit seconds since its last call at ``rate_now()`` (per bit per day,
    e.g. from the radiation model at the satellites' positions now)."""

    injector: SeuInjector
    rate_now: Callable[[], float]
    orbit_now_s: Callable[[], float]
    _last_s: float | None = None

    def __call__(self) -> None:
        now_s = self.orbit_now_s()
        if self._last_s is not None and now_s > self._last_s:
            self.injector.expose(self.rate_now(), now_s - self._last_s)
        self._last_s = now_s


def seeded(requests: Sequence[GenerationRequest]) -> list[GenerationRequest]:
    """The requests, each sampled one without a seed given one: a dual run and a re-run
    after an upset then draw the same tokens as the first run."""
    return [
        r if r.temperature == 0.0 or r.seed is not None else replace(r, seed=secrets.randbits(31))
        for r in requests
    ]


@dataclass(slots=True)
class ProtectedEngine:
    """An engine whose answers are computed only on verified weights."""

    engine: Engine
    guard: WeightGuard
    during_batch: Callable[[], None] | None = None  # called per token event: faults hit here
    dual: bool = False  # run every batch twice and compare (catches activation upsets)
    batches: int = 0
    reruns: int = 0
    answers_affected: int = 0
    disagreements: int = 0  # dual runs whose answers differed

    @classmethod
    def of(cls, engine: Engine, **options: Any) -> ProtectedEngine:
        """Protect ``engine``'s weights (InputError if it does not expose them)."""
        weights = engine.weights()
        if weights is None:
            raise InputError(f"engine {engine.name} does not expose its weights to guard")
        return cls(engine, WeightGuard(weights), **options)

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def load_s(self) -> float:
        return self.engine.load_s

    def count_tokens(self, request: GenerationRequest) -> int:
        return self.engine.count_tokens(request)

    def weights(self) -> Any:
        return self.guard.model

    def scheduler(
        self, max_batch: int, coming: Callable[[], int] | None = None, continuous: bool = True
    ) -> Scheduler:
        """Static batches: a batch's answers are released only once its weights verified
        after it (a continuous batch never ends to be verified)."""
        from starcompute.compute.batcher import Batcher

        return Batcher(self, max_batch, coming=coming)

    def stats(self) -> dict[str, int]:
        """Upsets injected (if an ``Exposure`` injects them), scrubs, blocks corrected,
        batches run and re-run, answers recomputed."""
        injected = {}
        if isinstance(self.during_batch, Exposure):
            found = self.during_batch.injector.detection()
            injected["upsets_injected"] = found["injected"]
            injected["found_within_one_scrub"] = found["injected"] - found["missed"] - found["late"]
        return {
            **injected,
            "scrubs": self.guard.scrubs,
            "blocks_corrected": self.guard.blocks_corrected,
            "batches": self.batches,
            "batches_rerun": self.reruns,
            "answers_recomputed": self.answers_affected,
            "dual_disagreements": self.disagreements,
        }

    @property
    def context_window(self) -> int:
        return self.engine.context_window

    def generate(
        self, requests: Sequence[GenerationRequest], on_token: TokenCallback | None = None
    ) -> list[Completion]:
        if not requests:
            return []
        requests = seeded(requests)  # both runs (and any re-run) draw the same tokens
        events: list[tuple[Any, ...]] = []

        def hook(*args: Any) -> None:
            events.append(args)
            if self.during_batch is not None:
                self.during_batch()

        self.guard.scrub()  # before serving: whatever struck since the last batch
        for _ in range(MAX_ATTEMPTS):
            events.clear()
            out = self._run_verified(requests, hook)
            if out is not None:
                if on_token is not None:
                    for args in events:
                        on_token(*args)
                return out
            self.reruns += 1
            self.answers_affected += len(requests)
        raise StarcomputeError(
            f"weights corrupted in {MAX_ATTEMPTS} runs in a row: too many upsets"
        )

    def _run_verified(
        self, requests: Sequence[GenerationRequest], hook: TokenCallback
    ) -> list[Completion] | None:
        """One run whose weights verified after it (and, ``dual``, whose answers a second
        run repeated exactly); None: struck, run it again."""
        try:
            out = self.engine.generate(requests, hook)
            again = self.engine.generate(requests) if self.dual else out
        except (ArithmeticError, RuntimeError, ValueError):
            if not self.guard.scrub():
                raise  # not an upset: a real error
            return None
        self.batches += 1 + self.dual
        if self.guard.scrub():
            return None
        if [c.text for c in out] != [c.text for c in again]:
            self.disagreements += 1
            return None
        return out
