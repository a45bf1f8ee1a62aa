"""Model cards against published sizes; the roofline reproduced by hand; pipeline splits;
the simulated engine; the infer and hardware commands."""

from __future__ import annotations

import json

import pytest

from starcompute import InputError
from starcompute.cli.main import main
from starcompute.compute.cards import load_card, model_cards
from starcompute.compute.engine import GenerationRequest
from starcompute.compute.perf import ComputeTarget, PerformanceModel, SimulatedEngine
from starcompute.compute.split import plan_split
from starcompute.spacecraft.hardware import load_hardware


@pytest.mark.parametrize("name", model_cards())
def test_architecture_reproduces_published_parameter_counts(name: str) -> None:
    """Totals from the architecture vs the published totals (Qwen3 Technical Report
    tables 1-2, model cards): within 2 %; MoE activated parameters within 10 %."""
    card = load_card(name)
    assert card.params_total() / 1e9 == pytest.approx(card.params_total_b, rel=0.02)
    if card.params_active_b:
        active = card.matmul_params_per_token() + card.vocab * card.hidden  # + embedding
        assert active / 1e9 == pytest.approx(card.params_active_b, rel=0.10)


def test_qwen3_8b_non_embedding_parameters() -> None:
    """Qwen3-8B: 6.95 B non-embedding parameters (model card)."""
    c = load_card("qwen3-8b")
    assert (c.params_total() - c.embedding_params()) / 1e9 == pytest.approx(6.95, abs=0.01)


def test_roofline_by_hand() -> None:
    """Qwen3-8B int8 on an H100 PCIe-class profile, worked out by hand:

    decode (batch 1, context 1,000): weights 8.191e9 B (int8) + KV 1,000 x 147,456 B
    = 8.338e9 B at 2,000 GB/s x 0.5 = 8.338 ms; compute 2 x 7.568e9 + attention
    4 x 36 x 32 x 128 x 1,000 = 1.5726e10 FLOP at 1,513e12 x 0.5 = 0.0208 ms -> memory-bound.
    prefill (1,000 tokens): 2 x 7.568e9 x 1,000 + attention at 500 of context
    = 1.5431e13 FLOP at 7.565e14 FLOP/s = 20.40 ms.
    """
    c = load_card("qwen3-8b")
    target = ComputeTarget("h", {"int8": 1513e12}, 2000.0, 80.0, 0.5, 0.5, 0.0, 350.0)
    m = PerformanceModel(c, target, "int8")
    weights = c.params_total() * 1.0
    kv = 1000 * 2 * 36 * 8 * 128 * 2.0
    assert kv == 1000 * 147456
    assert m.decode_step_s(1000) == pytest.approx((weights + kv) / (2000e9 * 0.5), rel=1e-12)
    flops = 2 * c.matmul_params_per_token() * 1000 + 4 * 36 * 32 * 128 * 1000 * 500
    assert m.prefill_s(1000) == pytest.approx(flops / (1513e12 * 0.5), rel=1e-12)
    assert m.prefill_s(1000) * 1e3 == pytest.approx(20.40, abs=0.01)
    # energy: peak power over the busy time
    e = m.estimate(1000, 11)
    assert e.energy_j == pytest.approx(350.0 * (e.prefill_s + e.decode_s))


def test_moe_decode_reads_only_the_experts_it_routes_to() -> None:
    c = load_card("qwen3-30b-a3b")
    target = ComputeTarget("t", {"int8": 1e15}, 1000.0, 200.0, 0.5, 1.0)
    m = PerformanceModel(c, target, "int8")
    one = m.decode_step_s(1)  # 8 of 128 experts per layer
    many = m.decode_step_s(1, batch=256)  # nearly all experts hit
    assert one < 0.2 * many
    dense_bytes = c.params_total() - c.layers * c.mlp_params()
    routed = c.layers * c.mlp_params(8)
    assert one == pytest.approx((dense_bytes + routed) / 1e12, rel=1e-2)


def test_split_plan_for_a_model_larger_than_one_satellite() -> None:
    """Qwen3-235B-A22B int4 (~150 GB) on 64 GB Three-Body satellites: split over 3."""
    m = PerformanceModel(
        load_card("qwen3-235b-a22b"),
        ComputeTarget.from_profile(load_hardware("three-body-sat")),
        "int4",
    )
    assert not m.estimate(512, 256).fits
    plan = plan_split(m, 512, 256)
    assert plan.satellites >= 3 and sum(plan.layers_per_satellite) == 94
    assert not plan.single_fits and plan.single_decode_token_s is None
    # each hop: 4096 x 2 B at 100 Gbps + 1,000 km / c + 0.1 ms
    assert plan.hop_s == pytest.approx(4096 * 2 * 8 / 100e9 + 1000 / 299792.458 + 1e-4)
    assert plan.decode_token_s > m.decode_step_s(640)  # the hops add latency
    small = PerformanceModel(load_card("qwen3-8b"), m.target, "int8")
    assert plan_split(small, 512, 256).satellites == 1


def test_simulated_engine_predicts_without_a_model() -> None:
    target = ComputeTarget.from_profile(load_hardware("h100-sat"))
    engine = SimulatedEngine(PerformanceModel(load_card("qwen3-8b"), target, "fp16"))
    out = engine.generate(
        [GenerationRequest(prompt="hello there", max_tokens=100)] * 3, prompt_tokens=[200, 200, 200]
    )
    assert len(out) == 3 and all(c.completion_tokens == 100 for c in out)
    assert out[0].time_to_first_token_s > 0 and out[0].total_s > out[0].time_to_first_token_s
    with pytest.raises(InputError, match="context window"):
        engine.generate([GenerationRequest(prompt="x", max_tokens=200_000)], prompt_tokens=[10])


def test_hardware_estimate_cli(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "hardware",
            "estimate",
            "--model",
            "qwen3-8b",
            "--profile",
            "three-body-sat",
            "--prompt-tokens",
            "256",
            "--output-tokens",
            "64",
            "--json",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["fits"] is True and doc["tokens_per_s"] > 0
    for key in ("prefill_s", "decode_s", "decode_ms_per_token", "energy_j", "memory_need_gb"):
        assert doc[key] > 0
    code = main(
        [
            "hardware",
            "estimate",
            "--model",
            "qwen3-235b-a22b",
            "--profile",
            "three-body-sat",
            "--quant",
            "int4",
            "--json",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["fits"] is False and doc["split"]["satellites"] >= 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["hardware", "estimate", "--model", "qwen9", "--profile", "three-body-sat"],
            "unknown model card",
        ),
        (
            ["hardware", "estimate", "--model", "qwen3-8b", "--profile", "nope-sat"],
            "unknown hardware profile",
        ),
        (
            [
                "hardware",
                "estimate",
                "--model",
                "qwen3-8b",
                "--profile",
                "three-body-sat",
                "--prompt-tokens",
                "0",
            ],
            "prompt tokens",
        ),
        (["infer", "hi", "--max-tokens", "0"], "max tokens"),
        (["infer", "hi", "--model", "/no/such/model"], "no model at"),
    ],
)
def test_bad_input_exits_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_infer_cli_answers(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["infer", "What is the capital of France?", "--max-tokens", "16", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and "Paris" in doc["text"]
    assert doc["completion_tokens"] > 0 and doc["time_to_first_token_s"] > 0


def test_llamacpp_backend_explains_how_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    """llama-cpp-python is an optional extra (not installed in CI): one clear line."""
    pytest.importorskip("starcompute.compute.llamacpp")
    try:
        import llama_cpp  # noqa: F401

        pytest.skip("llama-cpp-python is installed here")
    except ImportError:
        pass
    code = main(["infer", "hi", "--backend", "llamacpp"])
    err = capsys.readouterr().err
    assert code == 2 and "starcompute[llamacpp]" in err
