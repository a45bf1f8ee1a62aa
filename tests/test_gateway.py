"""The gateway on 127.0.0.1: the official openai client, streaming, errors, the queue,
API keys, the orbital trace, the request log and metrics; schemathesis over the schema."""

from __future__ import annotations

import concurrent.futures
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from servers import AppServer
from starcompute import load_constellation, load_stations, parse_utc
from starcompute.mission.control import Mission
from starcompute.mission.requestlog import RequestLog
from starcompute.mission.twin import twin_segment
from starcompute.times import OrbitClock

START = parse_utc("2025-11-20T00:00:00Z")
KEY = "sk-test-0123456789abcdef"


@pytest.fixture(scope="module")
def engine() -> Any:
    from starcompute.compute.real import TransformersEngine

    return TransformersEngine(max_batch=8)


@pytest.fixture(scope="module")
def mission() -> Mission:
    const = load_constellation("three-body-12")
    return Mission.build(const, load_stations("china,ksat,aws"), START, 6 * 3600.0)


def _app(mission: Mission, engine: Any, queue: int = 16, keys: bool = False, **kw: Any) -> Any:
    from starcompute.gateway.app import create_app
    from starcompute.links.czml import czml_document

    segment = twin_segment(
        mission, engine, OrbitClock(START, 60.0), RequestLog(), queue, max_batch=8, model="smollm2"
    )
    app = create_app(
        segment,
        "smollm2",
        {KEY: "tester"} if keys else None,
        default_max_tokens=16,
        max_tokens_limit=64,
        czml=lambda m: czml_document(m.const, m.stations, m.plan, m.eph),
        **kw,
    )
    app.state.segment = segment
    return app


@pytest.fixture(scope="module")
def server(mission: Mission, engine: Any) -> Iterator[str]:
    with AppServer(_app(mission, engine, keys=True)) as url:
        yield url


def _client(url: str, key: str = KEY) -> Any:
    import openai

    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=120)


def test_openai_client_completion(server: str) -> None:
    client = _client(server)
    assert [m.id for m in client.models.list().data] == ["smollm2"]
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16,
        temperature=0,
    )
    r = raw.parse()
    assert r.object == "chat.completion" and r.model == "smollm2"
    assert "Paris" in (r.choices[0].message.content or "")
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage is not None and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    extra = r.model_extra["starcompute"]
    timings = extra["trace"]["timings_s"]
    parts = sum(v for k, v in timings.items() if k != "total")
    assert parts == pytest.approx(timings["total"], abs=1e-5)
    assert raw.headers["x-starcompute-serving-satellite"] == extra["trace"]["serving_satellite"]
    assert raw.headers["x-starcompute-request-id"] == r.id
    # the request log has it, with its trace
    row = httpx.get(f"{server}/api/requests/{r.id}").json()
    assert row["status"] == "completed" and row["key_id"] == "tester"
    assert row["trace"]["serving_satellite"] == extra["trace"]["serving_satellite"]
    assert row["completion_tokens"] == r.usage.completion_tokens


def test_openai_client_streaming(server: str) -> None:
    client = _client(server)
    stream = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Name a planet in our solar system."}],
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage, trace = [], None, None, None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
                trace = (chunk.model_extra or {}).get("starcompute", {}).get("trace")
    assert len(pieces) > 1 and "".join(pieces).strip()
    assert finish in ("stop", "length")
    assert usage is not None and usage.completion_tokens >= 1
    assert trace is not None and trace["timings_s"]["total"] > 0
    # greedy: the streamed text equals the non-streamed answer
    whole = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Name a planet in our solar system."}],
        max_tokens=24,
        temperature=0,
    )
    assert "".join(pieces) == whole.choices[0].message.content


def test_auth_rejects_missing_and_wrong_keys(server: str) -> None:
    import openai

    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(f"{server}/v1/chat/completions", json=body)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.get(f"{server}/v1/models", headers={"Authorization": "Bearer wrong-key-000000000"})
    assert r.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        _client(server, "sk-wrong-wrong-wrong-wrong").models.list()


_ASK = {"model": "smollm2", "messages": [{"role": "user", "content": "x"}]}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "smollm2"}, "messages"),
        ({"model": "smollm2", "messages": []}, "messages"),
        ({"model": "smollm2", "messages": "hi"}, "messages"),
        ({"model": "smollm2", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({**_ASK, "max_tokens": 0}, "max_tokens"),
        ({**_ASK, "max_tokens": 10**6}, "max_tokens"),
        ({**_ASK, "max_tokens": "ten"}, "max_tokens"),
        ({**_ASK, "temperature": 9}, "temperature"),
        ({**_ASK, "top_p": 0}, "top_p"),
        ({**_ASK, "n": 3}, "n"),
        ({**_ASK, "stop": 5}, "stop"),
    ],
)  # fmt: skip
def test_bad_input_gets_openai_style_400(server: str, body: dict[str, Any], param: str) -> None:
    r = httpx.post(
        f"{server}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param


def test_not_json_and_unknown_request(server: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    r = httpx.post(f"{server}/v1/chat/completions", content=b"{not json", headers=headers)
    assert r.status_code == 400 and "error" in r.json()
    assert httpx.get(f"{server}/api/requests/chatcmpl-nope").status_code == 404


def test_flood_beyond_the_queue_gets_429_with_retry_after(mission: Mission, engine: Any) -> None:
    """Queue of 2: of 10 simultaneous requests, some are refused with 429 and a
    Retry-After header; every admitted one completes; none is lost or left hanging."""
    with AppServer(_app(mission, engine, queue=2)) as url:
        body = {
            "model": "smollm2",
            "messages": [{"role": "user", "content": "Count to twenty."}],
            "max_tokens": 48,
        }

        def post(_: int) -> httpx.Response:
            return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)

        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            replies = list(pool.map(post, range(10)))
        codes = sorted(r.status_code for r in replies)
        assert codes.count(429) >= 1 and codes.count(200) >= 2
        assert set(codes) <= {200, 429}
        busy = next(r for r in replies if r.status_code == 429)
        assert int(busy.headers["retry-after"]) >= 1
        assert busy.json()["error"]["type"] == "rate_limit_error"
        health = httpx.get(f"{url}/healthz").json()
        assert health["in_flight"] == 0  # every place given back
        metrics = httpx.get(f"{url}/metrics").text
        assert 'starcompute_requests_total{status="rejected_busy"}' in metrics


def test_operator_endpoints(server: str) -> None:
    sats = httpx.get(f"{server}/api/constellation").json()["satellites"]
    assert len(sats) == 12 and all(-90 <= s["lat_deg"] <= 90 for s in sats)
    assert all(0.0 <= s["battery_soc"] <= 1.0 for s in sats)
    contacts = httpx.get(f"{server}/api/contacts?minutes=120").json()
    assert contacts["ground"] or contacts["isl"]
    assert httpx.get(f"{server}/api/contacts?minutes=-1").status_code == 400
    czml = httpx.get(f"{server}/api/czml").json()
    assert czml[0]["id"] == "document"
    assert sum(1 for p in czml if p["id"].startswith("sat/")) == 12
    health = httpx.get(f"{server}/healthz").json()
    assert health["status"] == "ok" and health["orbit_time"].endswith("Z")
    assert "starcompute_in_flight" in httpx.get(f"{server}/metrics").text


def test_schemathesis_finds_no_server_error(mission: Mission, engine: Any) -> None:
    """Property-based requests from the OpenAPI schema (schemathesis): no 5xx on any."""
    import schemathesis
    from hypothesis import HealthCheck, settings

    app = _app(mission, engine)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    calls: dict[str, int] = {}

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        response = case.call()
        calls[case.path] = calls.get(case.path, 0) + 1
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.path}: {response.status_code} {response.text}")

    for op in schema.get_all_operations():
        operation = op.ok()
        schemathesis_test = operation.as_strategy()
        from hypothesis import given

        given(schemathesis_test)(check)()
    assert not failures, failures[:3]
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses"):
        assert calls.get(path, 0) >= 20, calls


def test_czml_export_cli(tmp_path: Path) -> None:
    import json

    from starcompute.cli.main import main

    out = tmp_path / "tb.czml"
    code = main(
        ["export", "czml", "--constellation", "three-body-12", "--stations", "china",
         "--start", "2025-11-20T00:00:00Z", "--hours", "2", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out.read_text())
    sats = [p for p in doc if p["id"].startswith("sat/")]
    assert len(sats) == 12
    samples = np.array(sats[0]["position"]["cartesian"]).reshape(-1, 4)
    radius_km = np.linalg.norm(samples[:, 1:], axis=1) / 1000.0
    assert np.all((radius_km > 6700) & (radius_km < 7000))  # ~500 km up
    colours = sats[0]["point"]["color"]
    assert any(c["rgba"] == [110, 120, 170, 255] for c in colours)  # an umbra interval
    links = [p for p in doc if p["id"].startswith(("gl/", "isl/"))]
    assert links and all("/" in p["availability"] for p in links)


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def test_dashboard_in_headless_chromium(server: str) -> None:
    """Debian's Chromium (driven over the DevTools protocol) loads the dashboard, the
    globe's tiles load, all 12 satellites are drawn, a query's path appears; a screenshot
    goes to test-artifacts/; no request the page makes leaves 127.0.0.1."""
    import os

    from cdp import Browser, chromium_path

    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    if not (Path(__file__).resolve().parent.parent / "src/starcompute/gateway/static").is_dir():
        pytest.fail("the dashboard is not built: run `make web`")
    browser = Browser()
    try:
        browser.goto(server + "/")
        ready = "window.starcompute && (window.starcompute.ready || window.starcompute.error)"
        browser.wait_for(ready, 90)
        assert not browser.evaluate("window.starcompute.error || ''")
        browser.wait_for("window.starcompute.viewer.scene.globe.tilesLoaded", 90)
        assert browser.evaluate("window.starcompute.satellites") == 12
        drawn = "window.starcompute.source.entities.values.filter(e => e.isShowing).length"
        assert browser.evaluate(drawn) >= 12 + 18  # satellites, stations, open links

        # one clock: the globe's instant is the orbit clock's (x60: a minute of orbit time
        # is one wall second). It is read between two readings of the orbit clock, as of
        # the globe's last frame, so it is carried forward by the wall time since then.
        def orbit_s() -> float:
            orbit = parse_utc(httpx.get(server + "/healthz").json()["orbit_time"])
            return float((orbit - START) / np.timedelta64(1, "ms")) / 1000

        before_s = orbit_s()
        globe, frame_age_ms, trip_ms = browser.evaluate(
            "[Cesium.JulianDate.toIso8601(window.starcompute.viewer.clock.currentTime),"
            " Date.now() - window.starcompute.tickMs, window.starcompute.anchor.trip]"
        )
        after_s = orbit_s()
        globe_s = float((parse_utc(globe) - START) / np.timedelta64(1, "ms")) / 1000
        globe_s += 60.0 * frame_age_ms / 1000
        # the page knows the server's clock to half its shortest round trip
        slack_s = 10 + 60.0 * trip_ms / 2000
        assert before_s - slack_s < globe_s < after_s + slack_s, (
            before_s,
            globe_s,
            after_s,
            trip_ms,
        )
        # the panel counts the links the globe draws at its instant (counted here apart)
        drawn_links = (
            "(() => { const t = window.starcompute.linksAt;"
            " const v = window.starcompute.source.entities.values"
            "   .filter(e => e.polyline && e.isAvailable(t));"
            " return [v.filter(e => e.id.startsWith('gl/')).length,"
            "         v.filter(e => e.id.startsWith('isl/')).length]; })()"
        )
        time.sleep(2.5)  # a refresh of the panel
        panel, drawn_then = browser.evaluate(
            f"[document.getElementById('links').textContent, {drawn_links}]"
        )
        counts = [int(n) for n in re.findall(r"(\d+) (?:ground|laser) links", panel)]
        assert counts == drawn_then and sum(counts) > 0, panel
        # the console: a telemetry plot with points (the twin's housekeeping, sampled)
        console = "window.starcomputeConsole"
        browser.wait_for(f"{console}.ready && {console}.points >= 2", 60)
        assert "received" in browser.evaluate("document.getElementById('tm-last').textContent")
        # an alarm when a satellite's battery is driven below its floor (injected)
        sat = browser.evaluate(f"{console}.satellite")
        auth = {"Authorization": f"Bearer {KEY}"}
        body = {"satellite": sat, "values": {"battery_soc": 0.05}, "minutes": 120}
        assert httpx.post(server + "/api/telemetry", json=body, headers=auth).status_code == 200
        browser.wait_for("document.getElementById('alarms').textContent.includes('CRITICAL')", 30)
        # a query that must wait for a pass (every station out for 10 orbit minutes) is
        # drawn while it waits, before its answer is delivered
        for station in [g.name for g in load_stations("china,ksat,aws")]:
            body = {"kind": "station", "target": station, "minutes": 10}
            assert httpx.post(server + "/api/failures", json=body, headers=auth).status_code == 200
        # a command sent from the console while no station can reach the satellite: its
        # state changes from queued (or sent) to accepted, verified by its housekeeping
        browser.evaluate(
            f"document.getElementById('tc-key').value = '{KEY}';"
            "document.getElementById('tc-args').value = '{\"max_batch\": 4}';"
            "document.getElementById('tc-send').click(); true"
        )
        browser.wait_for(f"{console}.commands.length > 0", 30)
        first = browser.evaluate(f"{console}.commands[0].state")
        assert first in ("queued", "sent"), first
        body = {"model": "smollm2", "messages": [{"role": "user", "content": "Hello!"}],
                "max_tokens": 8, "stream": True}  # fmt: skip
        with httpx.stream("POST", server + "/v1/chat/completions", json=body, headers=auth,
                          timeout=120) as r:  # fmt: skip
            rid = r.headers["x-starcompute-request-id"]
            browser.wait_for(f"!!window.starcompute.viewer.entities.getById('query/{rid}')", 30)
            travelled = (
                f"(() => {{ const v = window.starcompute.viewer;"
                f" const e = v.entities.getById('query/{rid}/travelled');"
                f" return e.polyline.positions.getValue(v.clock.currentTime).length; }})()"
            )
            hops_drawn, globe = browser.evaluate(
                f"[{travelled}, Cesium.JulianDate.toIso8601("
                "window.starcompute.viewer.clock.currentTime)]"
            )
            row = httpx.get(f"{server}/api/requests/{rid}", headers=auth).json()
            assert row["status"] == "running"  # drawn, not delivered yet
            # nothing travelled before the first planned hop leaves (the pass up), then hop
            # by hop: the globe's instant decides
            first_hop = parse_utc(row["trace"]["hops"][0]["depart"])
            assert (hops_drawn == 0) == (parse_utc(globe) < first_hop), (hops_drawn, globe)
            browser.screenshot(ARTIFACTS / "console-waiting.png")
            assert "[DONE]" in r.read().decode()
        hops = httpx.get(f"{server}/api/requests/{rid}", headers=auth).json()["trace"]["hops"]
        # delivered: every hop travelled (by the globe's next frames: a frame is up to a
        # minute of orbit time at x60 on a loaded machine)
        browser.wait_for(f"{travelled} === {len(hops) + 1}", 20)
        browser.wait_for(f"{console}.commands[0].state === 'accepted'", 90)
        assert browser.evaluate(f"{console}.timeline.passes") > 0  # the pass timeline drew
        time.sleep(1.0)
        shot = browser.screenshot(ARTIFACTS / "dashboard.png")
        assert shot.stat().st_size > 50_000
        browser.evaluate("document.getElementById('panel').scrollTop = 10000; true")
        time.sleep(0.5)
        browser.screenshot(ARTIFACTS / "console-commands.png")
    finally:
        browser.close()
    assert browser.requests, "the page made no requests"
    local = server + "/"
    outside = [u for u in browser.requests if not u.startswith((local, "data:", "blob:"))]
    assert not outside, outside[:5]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--api-key-file", "/nonexistent/keys.txt"], "--api-key-file"),
        (["--port", "0"], "--port"),
        (["--hours", "1"], "--hours"),
        (["--queue", "0"], "--queue"),
        (["--time-scale", "-1", "--hours", "2"], "--time-scale"),
    ],
)
def test_serve_bad_input_exits_2_before_loading_anything(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from starcompute.cli.main import main

    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("starcompute: error:") and message in err
    assert "Traceback" not in err


def test_api_key_file_format(tmp_path: Path) -> None:
    from starcompute.cli.serve import read_api_keys
    from starcompute.errors import InputError

    keys = tmp_path / "keys"
    keys.write_text("# operators\nalice:sk-alice-0123456789abcdef\nsk-anonymous-0123456789\n")
    assert read_api_keys(keys) == {
        "sk-alice-0123456789abcdef": "alice",
        "sk-anonymous-0123456789": "key3",
    }
    keys.write_text("short\n")
    with pytest.raises(InputError, match="16 characters"):
        read_api_keys(keys)
    keys.write_text("# nothing\n")
    with pytest.raises(InputError, match="no keys"):
        read_api_keys(keys)


def test_engine_drops_a_cancelled_request(engine: Any) -> None:
    from starcompute.compute.engine import GenerationRequest, Message

    seen: list[str] = []
    keep = GenerationRequest(messages=(Message("user", "Count."),), max_tokens=24, ignore_eos=True)
    drop = GenerationRequest(
        messages=(Message("user", "Count."),),
        max_tokens=24,
        ignore_eos=True,
        cancelled=lambda: len(seen) >= 3,
    )
    done = engine.generate([keep, drop], lambda i, piece: seen.append(piece) if i == 1 else None)
    assert done[0].completion_tokens == 24 and done[0].finish_reason == "length"
    assert done[1].finish_reason == "cancelled" and done[1].completion_tokens < 24


def test_a_client_that_goes_away_frees_its_place_and_its_batch_row(server: str) -> None:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 64,
        "stream": True,
        "ignore_eos": True,
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream(
        "POST", f"{server}/v1/chat/completions", json=body, headers=headers, timeout=60
    ) as r:
        request_id = r.headers["x-starcompute-request-id"]
        for line in r.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break  # one piece of the answer, then hang up
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = httpx.get(f"{server}/api/requests/{request_id}").json()
        if row["status"] != "running":
            break
        time.sleep(0.2)
    assert row["status"] == "cancelled"
    assert httpx.get(f"{server}/healthz").json()["in_flight"] == 0


def test_failures_api_needs_a_key_and_checks_its_input(server: str) -> None:
    """Failures are commands to the constellation: keyed, validated, listed."""
    auth = {"Authorization": f"Bearer {KEY}"}
    past = {"kind": "satellite", "target": "TB500-P00-S05", "start": "2025-11-20T00:00:00Z",
            "minutes": 1, "cause": "battery"}  # fmt: skip
    assert httpx.post(f"{server}/api/failures", json=past).status_code == 401
    r = httpx.post(f"{server}/api/failures", json=past, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["outage"]["end"] == "2025-11-20T00:01:00.000Z"
    assert r.json()["replanned"] == []  # over before any request was in flight
    listed = httpx.get(f"{server}/api/failures").json()["outages"]
    assert {"kind": "satellite", "target": "TB500-P00-S05"}.items() <= listed[-1].items()
    for bad, status, words in (
        ({**past, "target": "TB999"}, 400, "unknown node"),
        ({**past, "kind": "station"}, 400, "is not a station"),
        ({**past, "kind": "meteor"}, 400, "kind"),
        ({**past, "minutes": -5}, 400, "minutes"),
        ({**past, "start": "yesterday"}, 400, "yesterday"),
    ):
        r = httpx.post(f"{server}/api/failures", json=bad, headers=auth)
        assert r.status_code == status and words in r.text, (bad, r.status_code, r.text)


def _chat_post(url: str, key: str | None, body: dict[str, Any], **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEY}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=120, **kw)


def test_idempotency_key_retries_get_the_first_answer_once(server: str) -> None:
    """A retry with the same Idempotency-Key (IETF draft-ietf-httpapi-idempotency-key-
    header) gets the first answer, replayed, and runs nothing again; concurrent retries
    wait for the one run; the same key with another body is refused."""
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
    before = len(httpx.get(f"{server}/api/requests?limit=500").json()["requests"])
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        first = list(pool.map(lambda _: _chat_post(server, "retry-me-1", body), range(4)))
    assert all(r.status_code == 200 for r in first), [r.text for r in first]
    ids = {r.json()["id"] for r in first}
    assert len(ids) == 1  # four concurrent sends, one request
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in first) == 3
    again = _chat_post(server, "retry-me-1", {**body, "stream": True})
    assert again.headers["idempotent-replayed"] == "true"
    chunks = [json.loads(x[6:]) for x in again.text.splitlines() if x.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == first[0].json()["choices"][0]["message"]["content"]
    assert {c["id"] for c in chunks} == ids and again.text.endswith("data: [DONE]\n\n")
    rows = httpx.get(f"{server}/api/requests?limit=500").json()["requests"]
    assert len(rows) == before + 1  # one run in the request log
    other = _chat_post(server, "retry-me-1", {**body, "max_tokens": 9})
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    bad = _chat_post(server, "x" * 300, body)
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["error"]["message"]
    fresh = _chat_post(server, "retry-me-2", body)
    assert fresh.json()["id"] not in ids and "idempotent-replayed" not in fresh.headers


def test_idempotency_key_of_a_cancelled_stream_runs_again(server: str) -> None:
    """A client that hangs up mid-stream got no answer: its retry runs, and is then kept."""
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "A long story."}],
            "max_tokens": 32, "ignore_eos": True, "stream": True}  # fmt: skip
    headers = {"Authorization": f"Bearer {KEY}", "Idempotency-Key": "hang-up-1"}
    url = f"{server}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as r:
        cut = r.headers["x-starcompute-request-id"]
        for line in r.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break
    deadline = time.monotonic() + 30
    while httpx.get(f"{server}/api/requests/{cut}").json()["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    retry = _chat_post(server, "hang-up-1", {**body, "stream": False})
    assert retry.status_code == 200 and "idempotent-replayed" not in retry.headers
    assert retry.json()["id"] != cut
    assert retry.json()["usage"]["completion_tokens"] == 32
    replay = _chat_post(server, "hang-up-1", body)
    assert replay.headers["idempotent-replayed"] == "true"


def test_idempotency_store_is_bounded() -> None:
    import asyncio

    from starcompute.gateway.idempotency import Idempotency

    async def go() -> Idempotency:
        idem = Idempotency(max_entries=3)
        for k in range(10):
            assert await idem.claim("o", f"k{k}", "f") is None
            idem.complete("o", f"k{k}", {"n": k}, {})
        assert await idem.claim("o", "k9", "f") is not None  # kept: replayed
        assert await idem.claim("o", "k0", "f") is None  # evicted: runs again
        idem.abandon("o", "k0")
        return idem

    idem = asyncio.run(go())
    assert len(idem) == 3 and idem.replayed == 1


def test_telecommands_authenticated_replays_and_tampering_refused(server: str) -> None:
    """Every job goes up as an authenticated telecommand (CCSDS SDLS-style AES-GCM);
    an operator's command is accepted once; its packet replayed, tampered or forged by
    another transmitter is refused (403 with the reason) and counted on board."""
    auth = {"Authorization": f"Bearer {KEY}"}
    url = f"{server}/api/telecommands"
    before = httpx.get(f"{server}/healthz").json()["telecommands"]
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    assert _chat_post(server, None, body).status_code == 200
    after = httpx.get(f"{server}/healthz").json()["telecommands"]
    assert after["accepted"] >= before["accepted"] + 1  # the job itself
    sat = "TB500-P00-S02"
    cmd = {"satellite": sat, "command": "set-config", "args": {"max_batch": 4}}
    assert httpx.post(url, json=cmd).status_code == 401  # operators only
    sent = httpx.post(url, json=cmd, headers=auth)
    assert sent.status_code == 200 and sent.json()["kind"] == "set-config", sent.text
    packet = bytes.fromhex(sent.json()["packet_hex"])
    tampered = bytearray(packet)
    tampered[6 + 2 + 7] ^= 0x40  # a new sequence number: fresh, but the MAC covers it
    for raw, reason in ((packet, "replay"), (bytes(tampered), "auth"), (packet[:10], "short")):
        r = httpx.post(url, json={"satellite": sat, "packet_hex": raw.hex()}, headers=auth)
        assert r.status_code == 403 and r.json()["error"]["code"] == reason, r.text
    rotated = httpx.post(url, json={"satellite": sat, "command": "rotate-key"}, headers=auth)
    assert rotated.status_code == 200
    r = httpx.post(url, json={"satellite": sat, "packet_hex": packet.hex()}, headers=auth)
    assert r.json()["error"]["code"] == "retired-key"
    assert httpx.post(url, json=cmd, headers=auth).status_code == 200  # under the new key
    for bad, status in (
        ({"satellite": "TB999", "command": "set-config"}, 400),
        ({"satellite": sat, "packet_hex": "zz"}, 400),
        ({"satellite": sat}, 400),
        ({"satellite": sat, "command": "self-destruct"}, 400),
    ):
        r = httpx.post(url, json=bad, headers=auth)
        assert r.status_code == status and "error" in r.json(), (bad, r.text)
    stats = httpx.get(f"{server}/healthz").json()["telecommands"]
    assert stats["rejected"]["replay"] >= 1 and stats["rejected"]["auth"] >= 1
