"""The testbed as real processes on 127.0.0.1: `starcompute testbed --serve` with node
processes running SmolLM2, the link emulator, the ground segment and the gateway; the
official openai client; causality with a pass to wait for; a serving node SIGKILLed and
restarted; status; no process left behind.

One ground station (AWS's in Alaska) sees the single-plane Three-Body constellation in
clusters of passes (the plane's ground track sweeping over it); the run starts 10 orbit
minutes before a five-hour cluster that follows a seven-hour gap, so the first query must
wait for the pass and the others find the satellites in view (at x60 the cluster lasts
five minutes of wall time, room enough on a loaded machine)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from servers import free_port
from starcompute import load_constellation, load_stations, parse_utc
from starcompute.links.contacts import contact_plan
from starcompute.times import format_utc, offsets_s

BASE = parse_utc("2025-11-20T00:00:00Z")
SCALE = 60.0
MODEL = "smollm2-135m-instruct"
STATION = (
    "name,lat_deg,lon_deg,alt_m,min_elevation_deg,source\n"
    "AWS-Alaska,64.8400,-147.7200,140,10,as in the aws preset\n"
)


def _first_pass_after_a_gap(stations: str) -> np.datetime64:
    """The first AOS that follows at least three hours without a contact."""
    plan = contact_plan(load_constellation("three-body-12"), load_stations(stations), BASE, 86400.0)
    passes = sorted(zip(plan.ground.aos_s.tolist(), plan.ground.los_s.tolist(), strict=True))
    end = -1e9
    for aos, los in passes:
        if aos - end >= 3 * 3600.0 and aos > 3600.0:
            return BASE + np.timedelta64(round(aos * 1e3), "ms")
        end = max(end, los)
    raise AssertionError("no pass after a three-hour gap in the day")


class RunningTestbed:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "station.csv").write_text(STATION, encoding="utf-8")
        self.stations = str(folder / "station.csv")
        self.pass_start = _first_pass_after_a_gap(self.stations)
        self.start = self.pass_start - np.timedelta64(10 * 60, "s")
        self.run, self.port = folder / "run", free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.nodes = ["TB500-P00-S00", "TB500-P00-S04", "TB500-P00-S08"]
        self.extra: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> RunningTestbed:
        cmd = [
            sys.executable,
            "-m",
            "starcompute",
            "testbed",
            "--serve",
            "--port",
            str(self.port),
            "--stations",
            self.stations,
            "--start",
            str(format_utc(self.start)),
            "--hours",
            "24",
            "--time-scale",
            str(SCALE),
            "--dir",
            str(self.run),
            "--satellites",
            ",".join(self.nodes),
            "--silence-s",
            "86400",
        ]
        self.log = (self.folder / "launcher.log").open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while True:
            assert self.proc.poll() is None, (self.folder / "launcher.log").read_text()
            assert time.monotonic() < deadline, "the testbed did not come up in 300 s"
            try:
                if httpx.get(self.url + "/healthz", timeout=2).json().get("status") == "ok":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.epoch = json.loads((self.run / "clock.json").read_text())["epoch_unix_s"]
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.extra:
            p.terminate()
            p.wait(30)
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()

    def wall_at(self, orbit: str) -> float:
        """The Unix time at which the orbit clock reads ``orbit``."""
        return self.epoch + float(offsets_s(parse_utc(orbit), self.start)) / SCALE

    def restart(self, name: str, args: list[str]) -> None:
        """Start a process of the testbed again, as an operator would (stopped at exit)."""
        log = (self.folder / f"restart-{name}.log").open("wb")
        cmd = [sys.executable, "-m", "starcompute", *args]
        self.extra.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.run / "state.json").read_text()))


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTestbed]:
    with RunningTestbed(tmp_path_factory.mktemp("testbed")) as tb:
        yield tb


def _client(tb: RunningTestbed) -> Any:
    import openai

    return openai.OpenAI(base_url=tb.url + "/v1", api_key="none", max_retries=0, timeout=240)


CAP_TOKENS = 4  # set on every node by telecommand while out of contact (the next tests)


def test_set_config_out_of_contact_is_refused_or_waits_for_the_next_contact(
    testbed: RunningTestbed,
) -> None:
    """Issue 19: before the pass no station reaches the nodes; a set-config is refused
    with the next contact, or (``wait``) queued for it; the nodes carry it out when it
    arrives (checked after the first query, which must wait for that pass)."""
    url = testbed.url + "/api/telecommands"
    for sat in testbed.nodes:
        cmd = {"satellite": sat, "command": "set-config", "args": {"max_tokens": CAP_TOKENS}}
        refused = httpx.post(url, json=cmd, timeout=30)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "out_of_contact"
        queued = httpx.post(url, json={**cmd, "wait": True}, timeout=30).json()
        assert queued["state"] == "queued", queued
        assert parse_utc(queued["arrives"]) >= testbed.pass_start - np.timedelta64(1, "s")


def test_a_query_waiting_for_a_pass_reveals_nothing_before_its_planned_delivery(
    testbed: RunningTestbed,
) -> None:
    """Issue 16 (a): the first query goes up only when the pass opens; no byte of the
    answer reaches the client before the plan's delivery (on the wall clock)."""
    t_sent = time.time()
    stream = _client(testbed).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name a planet."}],
        max_tokens=24,
        temperature=0,
        stream=True,
    )
    first_byte, pieces, trace = None, [], None
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                first_byte = first_byte or time.time()
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                trace = (chunk.model_extra or {})["starcompute"]["trace"]
    assert trace is not None and "".join(pieces).strip()
    assert trace["timings_s"]["wait_for_contact"] > 300  # it had to wait for the pass
    assert parse_utc(trace["uplink_at"]) >= testbed.pass_start - np.timedelta64(1, "s")
    assert first_byte is not None and first_byte > t_sent
    # the clock and the event loops resolve to ~50 ms of wall time (3 orbit s at x60)
    assert first_byte >= testbed.wall_at(trace["delivered"]) - 0.05
    observed = trace["observed"]
    assert observed["link"] == "testbed" and observed["serving_satellite"] in testbed.nodes
    first = parse_utc(observed["chunks"][0]["delivered"])
    assert first >= parse_utc(trace["uplink_at"])  # nothing came down before it went up


def _telemetry(testbed: RunningTestbed, sat: str) -> dict[str, Any]:
    """The latest housekeeping from ``sat`` as it reached the ground (the console's API)."""
    latest = httpx.get(testbed.url + "/api/telemetry", timeout=30).json()["satellites"]
    return dict(latest.get(sat, {}))


def test_the_queued_set_config_changed_the_nodes_then_a_new_one_undoes_it(
    testbed: RunningTestbed,
) -> None:
    """The set-config queued before the pass reached the nodes with it: each reports it
    applied, and an answer is cut at the commanded cap; another (in contact now, no wait
    needed) lifts the cap."""
    r = _client(testbed).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Tell me about Mars."}],
        max_tokens=40, temperature=0,
    )  # fmt: skip
    assert r.usage.completion_tokens == CAP_TOKENS and r.choices[0].finish_reason == "length"
    url = testbed.url + "/api/telecommands"
    history = httpx.get(url, timeout=30).json()["commands"]
    for sat in testbed.nodes:
        hk = _telemetry(testbed, sat)
        assert hk["config"]["max_tokens"] == CAP_TOKENS and hk["commands"]["applied"]
        assert hk["received"] >= hk["orbit_time"]  # received on the ground after it was measured
        # the console's history: verified by the satellite's own report of the command
        mine = [c for c in history if c["satellite"] == sat and c["command"] == "set-config"]
        assert [c["state"] for c in mine] == ["applied"], mine
        assert mine[0]["command_id"] in {e["id"] for e in hk["commands"]["recent"]}
        lift = {"satellite": sat, "command": "set-config", "args": {"max_tokens": 0}, "wait": True}
        assert httpx.post(url, json=lift, timeout=30).status_code == 200
    deadline = time.monotonic() + 120
    while any(_telemetry(testbed, s)["config"]["max_tokens"] for s in testbed.nodes):
        assert time.monotonic() < deadline, "the nodes did not report the lifted cap"
        time.sleep(0.5)


def test_openai_client_answers_with_the_trace_of_the_node_that_ran_it(
    testbed: RunningTestbed,
) -> None:
    client = _client(testbed)
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16,
        temperature=0,
    )
    assert r.choices[0].message.content.strip() and r.choices[0].finish_reason in ("stop", "length")
    trace = r.model_extra["starcompute"]["trace"]
    sat = trace["serving_satellite"]
    assert trace["observed"]["serving_satellite"] == sat and sat in testbed.nodes
    # the node process that ran it has the job in its own journal
    db = sqlite3.connect(f"file:{testbed.run / 'nodes' / sat / 'node.sqlite'}?mode=ro", uri=True)
    ids = [row[0] for row in db.execute("SELECT query_id FROM jobs")]
    assert f"{r.id}.0" in ids
    streamed = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16,
        temperature=0,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == r.choices[0].message.content  # greedy: the same answer, streamed


def test_structured_output_and_logprobs_come_down_from_the_node(testbed: RunningTestbed) -> None:
    """Issue 22 on the testbed: the grammar and the log-probabilities travel in the job
    bundle to the node process, which decodes under the schema; the log-probabilities
    come down in the answer's chunks."""
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
        "additionalProperties": False,
    }
    r = _client(testbed).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name the capital of France as JSON."}],
        max_tokens=40,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert r.choices[0].finish_reason == "stop"
    assert set(json.loads(r.choices[0].message.content)) == {"city"}
    entries = r.choices[0].logprobs.content
    assert len(entries) == r.usage.completion_tokens
    assert all(len(e.top_logprobs) == 2 for e in entries)
    assert r.model_extra["starcompute"]["trace"]["observed"]["serving_satellite"] in testbed.nodes


def test_serving_node_killed_while_holding_the_query_then_restarted_gives_one_answer(
    testbed: RunningTestbed,
) -> None:
    """Issue 16 (c): SIGKILL the node process once it has accepted the job; start it
    again from its data directory; the client gets one complete answer."""
    import concurrent.futures

    client = _client(testbed)
    ask = {
        "model": MODEL,
        "max_tokens": 64,
        "temperature": 0,
        "messages": [{"role": "user", "content": "Count from one to forty in words."}],
    }
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(lambda: client.chat.completions.with_raw_response.create(**ask))
        sat, pid = _wait_for_a_job(testbed)
        os.kill(pid, signal.SIGKILL)
        data = testbed.run / "nodes" / sat
        testbed.restart(sat, ["node", "--data", str(data)])
        raw = future.result(timeout=240)
    r = raw.parse()
    assert raw.headers["x-starcompute-serving-satellite"] == sat
    assert r.choices[0].finish_reason in ("stop", "length") and r.choices[0].message.content
    trace = r.model_extra["starcompute"]["trace"]
    seqs = [c["seq"] for c in trace["observed"]["chunks"]]
    assert seqs == list(range(len(seqs)))  # every chunk once, in order
    db = sqlite3.connect(f"file:{data / 'node.sqlite'}?mode=ro", uri=True)
    states = dict(db.execute("SELECT query_id, state FROM jobs"))
    assert states[f"{r.id}.0"] == "answered"  # the restarted node finished the same job
    replays = db.execute("SELECT value FROM counters WHERE name = 'rejected-jobs:replay'")
    assert replays.fetchone() is None  # it did not ask the telecommand again


def _wait_for_a_job(testbed: RunningTestbed, timeout_s: float = 120.0) -> tuple[str, int]:
    """The node that has just accepted a job that is not answered yet, and its pid."""
    pids = {p["name"]: p["pid"] for p in testbed.state()["processes"]}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for sat in testbed.nodes:
            path = testbed.run / "nodes" / sat / "node.sqlite"
            try:
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
                rows = db.execute("SELECT state FROM jobs WHERE state != 'answered'").fetchall()
            except sqlite3.Error:
                continue
            if rows:
                return sat, int(pids[sat])
        time.sleep(0.02)
    raise AssertionError("no node accepted the job")


def test_status_lists_every_process_and_the_links_up(testbed: RunningTestbed) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "starcompute",
            "testbed",
            "status",
            "--dir",
            str(testbed.run),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    doc = json.loads(out.stdout)
    roles = sorted(p["role"] for p in doc["processes"])
    assert roles == ["emulator", "ground", "node", "node", "node", "relays"]
    assert all(p["pid"] and p["address"] for p in doc["processes"])
    assert doc["total"]["pss_mb"] > 0 and isinstance(doc["links_up"], list)
    lasers = [link for link in doc["links_up"] if link["kind"] == "laser"]
    assert len(lasers) == 12  # the ring of one plane: every satellite has two neighbours


def test_the_emulator_killed_and_restarted_loses_no_bundle(testbed: RunningTestbed) -> None:
    """SIGKILL the link emulator while a query is on its way; start it again: the
    agents dial it again and the answer arrives, once."""
    import concurrent.futures

    client = _client(testbed)
    emulator = next(p for p in testbed.state()["processes"] if p["role"] == "emulator")
    ask = {
        "model": MODEL,
        "max_tokens": 24,
        "temperature": 0,
        "messages": [{"role": "user", "content": "Name two colours."}],
    }
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(lambda: client.chat.completions.create(**ask))
        time.sleep(0.3)
        os.kill(int(emulator["pid"]), signal.SIGKILL)
        time.sleep(1.0)  # links are down: senders back off and keep their bundles
        testbed.restart("emulator", ["testbed", "emulator", "--dir", str(testbed.run)])
        r = future.result(timeout=240)
    assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")
    seqs = [c["seq"] for c in r.model_extra["starcompute"]["trace"]["observed"]["chunks"]]
    assert seqs == list(range(len(seqs)))


def _tiny_checkpoint(folder: Path, like: Path) -> Path:
    """A one-layer random model of SmolLM2's architecture and tokenizer (~7 MB)."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = json.loads((like / "config.json").read_text())
    config.update(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1, head_dim=16)  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**config)).to(torch.bfloat16)
    model.save_pretrained(folder)
    for f in like.iterdir():
        if f.name not in ("config.json", "model.safetensors") and f.is_file():
            shutil.copy2(f, folder / f.name)
    return folder


def test_upload_model_installs_weights_that_the_node_then_serves(
    testbed: RunningTestbed, tmp_path: Path
) -> None:
    """Issue 19: upload-model sends a checkpoint up in parts and the command naming its
    digest; each node installs it and answers with it from then on (a random one-layer
    model answers differently from SmolLM2), and reports it in its housekeeping."""
    ask = {"model": MODEL, "max_tokens": 8, "temperature": 0,
           "messages": [{"role": "user", "content": "What is the capital of France?"}]}  # fmt: skip
    before = _client(testbed).chat.completions.create(**ask).choices[0].message.content
    tiny = _tiny_checkpoint(tmp_path / "tiny", testbed.run / "nodes" / testbed.nodes[0] / "model")
    url = testbed.url + "/api/telecommands"
    for sat in testbed.nodes:
        cmd = {"satellite": sat, "command": "upload-model", "wait": True,
               "args": {"path": str(tiny), "name": "tiny-random"}}  # fmt: skip
        sent = httpx.post(url, json=cmd, timeout=60)
        assert sent.status_code == 200, sent.text
        assert sent.json()["parts"] >= 2 and sent.json()["name"] == "tiny-random"
    deadline = time.monotonic() + 180
    while any(
        _telemetry(testbed, s).get("model", {}).get("name") != "tiny-random" for s in testbed.nodes
    ):
        assert time.monotonic() < deadline, "the nodes did not report the uploaded model"
        time.sleep(0.5)
    after = _client(testbed).chat.completions.create(**ask)
    assert after.choices[0].message.content != before
    sat = after.model_extra["starcompute"]["trace"]["serving_satellite"]
    model_dir = testbed.run / "nodes" / sat / "model"
    assert json.loads((model_dir / "config.json").read_text())["hidden_size"] == 32
    bad = {"satellite": sat, "command": "upload-model", "args": {"path": str(tmp_path / "nope")}}
    r = httpx.post(url, json={**bad, "wait": True}, timeout=30)
    assert r.status_code == 400 and "checkpoint" in r.json()["error"]["message"]


def test_stopping_the_launcher_leaves_no_process_behind(tmp_path: Path) -> None:
    """SIGKILL the launcher itself: every child follows it."""
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "starcompute",
        "testbed",
        "--satellites",
        "TB500-P00-S01",
        "--stations",
        "ksat",
        "--hours",
        "2",
        "--dir",
        str(run),
    ]
    err = tmp_path / "launcher.err"
    with err.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=sink)
    deadline = time.monotonic() + 240
    while not (run / "ready.json").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-2000:]
        time.sleep(0.3)
    pids = [p["pid"] for p in json.loads((run / "state.json").read_text())["processes"]]
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 30
    import psutil

    while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids):
        assert time.monotonic() < deadline, "children outlived their launcher"
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--satellites", "NOPE-1"], "'NOPE-1' is not in"),
        (["--time-scale", "0"], "--time-scale must be"),
        (["--hours", "100"], "--hours must be within"),
        (["--dtype", "int8"], "argument --dtype: invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "starcompute", "testbed", "--dir", str(tmp_path / "r"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_manifest_naming_an_unknown_node_or_a_port_in_use_is_refused(tmp_path: Path) -> None:
    import socket

    manifest = tmp_path / "m.toml"
    manifest.write_text('[endpoints]\n"NOT-A-SAT" = "127.0.0.1:7000"\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "starcompute",
            "testbed",
            "--dir",
            str(tmp_path / "a"),
            "--manifest",
            str(manifest),
            "--stations",
            "ksat",
            "--hours",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        done.returncode == 2 and "'NOT-A-SAT' is neither a satellite nor a station" in done.stderr
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        manifest.write_text(f'emulator = "127.0.0.1:{port}"\n')
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "starcompute",
                "testbed",
                "--dir",
                str(tmp_path / "b"),
                "--manifest",
                str(manifest),
                "--stations",
                "ksat",
                "--hours",
                "1",
                "--satellites",
                "TB500-P00-S01",
            ],
            capture_output=True,
            text=True,
            timeout=240,
        )
    assert (
        done.returncode == 2 and f"port {port} on 127.0.0.1 (emulator) is not free" in done.stderr
    )
