"""``starcompute train`` / ``train estimate`` from the command line, the corpus, the
outer-update compression and the scale estimate against closed forms."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import pytest
import torch

from starcompute.cli.main import main
from starcompute.compute.cards import load_card
from starcompute.train.corpus import load_corpus
from starcompute.train.model import quantise

TINY = ["--steps", "10", "--inner-steps", "5", "--pretrain-steps", "0", "--hidden", "16",
        "--batch", "2", "--window", "16", "--constellation", "three-body-12"]  # fmt: skip


def test_train_cli_writes_curves_plot_and_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "train",
            *TINY,
            "--method",
            "diloco,sync,fedavg",
            "--no-eclipse-pause",
            "--out",
            str(tmp_path),
            "--json",
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert [m["method"] for m in doc["methods"]] == ["diloco", "sync", "fedavg"]
    assert doc["diloco_vs_sync"]["bytes_ratio"] == pytest.approx(5 * 32 / 8)  # H x fp32/int8
    for m in ("diloco", "sync", "fedavg"):
        rows = (tmp_path / m / "loss.csv").read_text().splitlines()
        assert rows[0].startswith("method,step,orbit_s,train_loss,eval_loss")
        assert len(rows) == 1 + 3  # start, step 5, step 10
        assert (tmp_path / m / "syncs.csv").exists()
        assert list((tmp_path / m / "checkpoints").glob("step-000010/run.pt"))
    assert (tmp_path / "loss.png").stat().st_size > 10_000
    assert (tmp_path / "comparison.json").exists()


def test_train_cli_resume_continues_the_run_in_its_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", *TINY, "--method", "sync", "--out", str(tmp_path), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["methods"][0]
    (tmp_path / "summary.json").unlink()
    assert main(["train", "--resume", str(tmp_path / "checkpoints"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["methods"][0]
    assert again["final_eval_loss"] == first["final_eval_loss"]
    assert again["bytes_sent"] == first["bytes_sent"]
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 10


def test_train_cli_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", *TINY, "--method", "fedavg", "--drop", "3@6"]) == 0
    out = capsys.readouterr().out
    assert "fedavg" in out and "worker 3 lost at step 6; training went on" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--inner-steps", "0"], "inner steps must be a positive whole number"),
        (["--inner-steps", "-3"], "inner steps must be a positive whole number"),
        (["--workers", "500", "--constellation", "star-compute-2800"],
         "500 workers but star-compute-2800 has 400 training satellites"),
        (["--workers", "13"], "13 workers but three-body-12 has 12 training satellites"),
        (["--corpus", "/no/such/corpus"], "corpus '/no/such/corpus' not found"),
        (["--method", "adam"], "method 'adam' is unknown: choose diloco, sync, fedavg"),
        (["--drop", "7"], "expected WORKER@STEP"),
        (["--drop", "9@2"], "drop 9@2: worker must be within 0..3"),
        (["--compress", "int3"], "invalid choice"),
        (["--resume", "/no/such/run"], "no checkpoint under /no/such/run"),
    ],
)  # fmt: skip
def test_train_bad_input_exits_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--steps", "10", "--constellation", "three-body-12"]
    with pytest.raises(SystemExit) if "invalid choice" in message else contextlib.nullcontext():
        code = main(["train", *base, *argv])
        assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_corpus_shards_are_plays_and_held_out_text_is_separate() -> None:
    c = load_corpus("shakespeare", 4, 100 * 1024, 128)
    assert c.documents == ("hamlet", "macbeth", "othello", "king-lear")
    assert [len(s) for s in c.shards] == [102_400, 90_448, 102_400, 102_400]  # Macbeth is short
    assert b"BERNARDO:\nWho's there?" in c.shards[0][:200]  # Hamlet, act I scene 1
    # the held-out text is the end of each play: none of it is in a training shard
    probe = c.held_out[1000:1200]
    assert all(probe not in s for s in c.shards)


def test_corpus_from_a_folder_and_too_small(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("to be or not to be " * 200)
    c = load_corpus(str(tmp_path), 3, 4096, 16)  # one document, dealt to 3 workers
    assert len(c.shards) == 3 and all(c.shards)
    from starcompute.errors import InputError

    with pytest.raises(InputError, match="too small"):
        load_corpus(str(tmp_path), 3, 4096, 4000)


def test_int8_compression_error_is_within_half_a_step() -> None:
    torch.manual_seed(0)
    d = torch.randn(10_000) * 1e-3
    for bits in (8, 4):
        q = quantise(d, bits)
        step = float(d.abs().max()) / (2 ** (bits - 1) - 1)
        assert float((q - d).abs().max()) <= step / 2 + 1e-12
        assert len(torch.unique(q)) <= 2**bits - 1
    assert torch.equal(quantise(d, 32), d)


def test_estimate_against_closed_forms(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "estimate", "--tokens", "1e11", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    card = load_card("qwen3-0.6b")
    # 6 N T FLOPs per step (Kaplan et al. 2020) at the three-body-sat's fp16 peak x MFU
    flops = 6 * card.matmul_params_per_token() * 8192
    assert doc["compute_s_per_step"] == pytest.approx(flops / (186e12 * 0.4), rel=1e-9)
    assert doc["steps"] == math.ceil(1e11 / (8192 * 400))
    assert doc["satellites"] == 400 and doc["allreduce_rings"] == [50, 8]
    # bf16 both ways, H = 100: 100x fewer bytes; every all-reduce moves ~2 x payload each
    assert doc["bytes_ratio"] == pytest.approx(doc["steps"] / math.ceil(doc["steps"] / 100))
    payload = card.params_total() * 2
    assert doc["sync"]["bytes_per_satellite"] == pytest.approx(doc["steps"] * 2 * payload)
    assert doc["diloco"]["wall_s"] < doc["sync"]["wall_s"]
    assert 0.9 <= doc["compute_fraction"] <= 1.0  # dawn-dusk SSO in January: ~always sunlit


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--satellites", "401"], "401 satellites but star-compute-2800 has 400 training"),
        (["--model", "gpt-9"], "gpt-9"),
        (["--tokens", "-1"], "tokens must be positive"),
    ],
)
def test_estimate_bad_input(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "estimate", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
