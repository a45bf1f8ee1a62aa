"""One engine factory (``compute.backends.load_engine``), the timing card a command uses,
and the engine interface's defaults (``compute.engine.EngineBase``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from starcompute.compute.backends import BACKENDS, load_engine
from starcompute.compute.cards import FALLBACK_CARD, card_for_model, model_cards, timing_card
from starcompute.compute.engine import EngineBase, GenerationRequest, Message
from starcompute.errors import InputError

SRC = Path(__file__).resolve().parents[1] / "src"


def test_unknown_backend_and_options_are_refused() -> None:
    with pytest.raises(InputError, match="--backend must be one of transformers, llamacpp"):
        load_engine("onnx")
    with pytest.raises(InputError, match="does not take decoder"):
        load_engine("llamacpp", None, decoder="native")


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is not None, reason="installed")
def test_llamacpp_without_its_package_says_how_to_install_it() -> None:
    with pytest.raises(InputError, match=r"pip install 'starcompute\[llamacpp\]'"):
        load_engine("llamacpp")


@pytest.mark.parametrize(
    ("model", "card"),
    [
        ("smollm2-135m-instruct", "smollm2-135m"),
        ("/cache/models/SmolLM2-135M-Instruct.Q4_1-0a1b", "smollm2-135m"),
        ("Qwen/Qwen3-0.6B", "qwen3-0.6b"),
        ("qwen3-30b-a3b-instruct-2507", "qwen3-30b-a3b"),  # not qwen3-30b... nor qwen3-3...
        ("Qwen3-32B-AWQ", "qwen3-32b"),
        ("llama-2-7b", None),
    ],
)
def test_the_served_model_finds_its_own_card(model: str, card: str | None) -> None:
    assert card_for_model(model) == card
    assert card is None or card in model_cards()


def test_timing_card_asked_else_own_else_fallback() -> None:
    assert timing_card("qwen3-8b", "smollm2-135m-instruct") == "qwen3-8b"
    assert timing_card(None, "smollm2-135m-instruct") == "smollm2-135m"
    assert timing_card(None, "my-own-model") == FALLBACK_CARD
    with pytest.raises(InputError, match="model card"):
        timing_card("gpt-5", "smollm2-135m-instruct")


def test_engine_base_defaults() -> None:
    class Tiny(EngineBase):
        name = "tiny"

    e = Tiny()
    request = GenerationRequest(messages=(Message("user", "one two three"),))
    assert e.count_tokens(request) == round(1.3 * 3) + 4  # the word estimate
    assert e.stats() == {} and e.weights() is None and e.load_s == 0.0
    with pytest.raises(NotImplementedError):
        e.generate([request])


def test_no_command_constructs_an_engine_class_and_none_probes_one() -> None:
    """Issue 18: engines come from load_engine; what callers use is declared."""
    engines = ("TransformersEngine(", "LlamaCppEngine(")
    for path in (SRC / "starcompute").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name not in ("backends.py", "real.py", "llamacpp.py"):
            assert not any(e in text for e in engines), path
        for probe in ('"encode"', '"stats"', '"load_s"'):
            assert f"getattr(engine, {probe}" not in text.replace("self.", ""), path
            assert f"hasattr(engine, {probe}" not in text, path


@pytest.mark.parametrize("command", ["infer", "ask", "demo", "serve", "node"])
def test_every_model_command_takes_backend_and_the_others_timing_model(command: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "starcompute.cli.main", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--backend" in out
    if command != "infer":
        assert "--timing-model" in out
    assert set(BACKENDS) <= set(out.replace(",", " ").replace("{", " ").replace("}", " ").split())
