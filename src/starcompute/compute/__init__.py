"""Compute: the engine interface (no torch), the real engine, model cards, the
performance model of space hardware and pipeline splits across satellites."""
