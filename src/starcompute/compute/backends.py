"""One way to get an engine: ``load_engine(backend, model, **options)``.

Every command that runs a model (``infer``, ``ask``, ``demo``, ``serve``, ``node``) loads
it here, with ``--backend transformers|llamacpp``:

* ``transformers`` (default): PyTorch on the native decoder (or ``transformers``' model
  class), continuous batching for concurrent callers (``compute.continuous``); options
  ``max_batch``, ``threads``, ``decoder``, ``device``;
* ``llamacpp``: llama.cpp on a GGUF file through ``llama-cpp-python`` (extra
  ``[llamacpp]``), one request at a time; options ``threads``, ``context_window``.

The model is loaded on a short-lived thread (``compute.batcher.off_main_thread``: the
thread that first runs PyTorch keeps an OpenMP pool spinning).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starcompute.compute.engine import Engine
from starcompute.errors import InputError

BACKENDS = ("transformers", "llamacpp")
DEFAULT_BACKEND = "transformers"
_OPTIONS = {
    "transformers": ("max_batch", "threads", "decoder", "device"),
    "llamacpp": ("threads", "context_window"),
}


def load_engine(
    backend: str = DEFAULT_BACKEND, model: str | Path | None = None, **options: Any
) -> Engine:
    """The engine of ``backend`` running ``model`` (None: the embedded default);
    InputError for an unknown backend, or an option it does not take (None values are
    left out, so callers can pass what the user did not set)."""
    from starcompute.compute.batcher import off_main_thread

    if backend not in BACKENDS:
        raise InputError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(_OPTIONS[backend]))
    if unknown:
        raise InputError(
            f"backend {backend} does not take {', '.join(unknown)} "
            f"(it takes {', '.join(_OPTIONS[backend])})"
        )
    if backend == "llamacpp":
        from starcompute.compute.llamacpp import LlamaCppEngine

        return off_main_thread(lambda: LlamaCppEngine(model, **given))
    from starcompute.compute.real import TransformersEngine

    return off_main_thread(lambda: TransformersEngine(model, **given))
