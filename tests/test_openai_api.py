"""The OpenAI API as clients really use it (issue 22), with the official ``openai``
client against the gateway on 127.0.0.1 and the real engine (SmolLM2): structured
outputs under a JSON schema (validated with ``jsonschema``), tool calls, log-
probabilities (checked against ``transformers``' own forward pass), ``/v1/completions``
with ``echo``, ``/v1/responses``, and a 400 naming every field that is not honoured."""

from __future__ import annotations

import concurrent.futures
import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from servers import AppServer
from starcompute import load_constellation, load_stations, parse_utc
from starcompute.mission.control import Mission
from starcompute.mission.requestlog import RequestLog
from starcompute.mission.twin import twin_segment
from starcompute.times import OrbitClock

START = parse_utc("2025-11-20T00:00:00Z")
MODEL = "smollm2"

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "count": {"type": "integer", "minimum": 0, "maximum": 999},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    },
    "required": ["name", "count", "ok", "tags"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": WEATHER,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers",
            "parameters": {
                "type": "object",
                "properties": {
                    "a": {"type": "integer", "minimum": -99, "maximum": 99},
                    "b": {"type": "integer", "minimum": -99, "maximum": 99},
                },
                "required": ["a", "b"],
                "additionalProperties": False,
            },
        },
    },
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


@pytest.fixture(scope="module")
def server(engine: Any) -> Iterator[str]:
    from starcompute.gateway.app import create_app

    const, stations = load_constellation("three-body-12"), load_stations("china,ksat,aws")
    segment = twin_segment(
        Mission.build(const, stations, START, 6 * 3600.0),
        engine,
        OrbitClock(START, 120.0),
        RequestLog(),
        64,
        max_batch=16,
        model=MODEL,
        replan=lambda t: Mission.build(const, stations, t, 6 * 3600.0),
    )
    app = create_app(segment, MODEL, None, default_max_tokens=32, max_tokens_limit=256)
    with AppServer(app) as url:
        yield url


@pytest.fixture(scope="module")
def engine() -> Any:
    from starcompute.compute.real import TransformersEngine

    return TransformersEngine(max_batch=16)


def _client(url: str) -> Any:
    import openai

    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=300)


TOPICS = [
    "a cat", "the Moon", "a red car", "tea", "Paris", "a violin", "rain", "a robot",
    "the sea", "a book", "Mars", "bread", "a satellite", "snow", "a river", "coffee",
    "a forest", "a clock", "the Sun", "a bridge",
]  # fmt: skip


def _structured(client: Any, topic: str, stream: bool) -> str:
    args: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Describe {topic} as a JSON record."}],
        "max_tokens": 200,
        "temperature": 0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "record", "schema": SCHEMA, "strict": True},
        },
    }
    if not stream:
        r = client.chat.completions.create(**args)
        assert r.choices[0].finish_reason == "stop"
        return str(r.choices[0].message.content)
    text, finish = "", None
    for chunk in client.chat.completions.create(**args, stream=True):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert finish == "stop"
    return text


def test_json_schema_answers_validate_for_twenty_prompts(server: str) -> None:
    """20 prompts, half streamed: every answer parses and validates against the schema
    (``jsonschema``, an independent validator), none is cut short."""
    client = _client(server)
    jobs = [(t, i % 2 == 1) for i, t in enumerate(TOPICS)]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        texts = list(pool.map(lambda job: _structured(client, *job), jobs))
    for text in texts:
        jsonschema.validate(json.loads(text), SCHEMA)
    assert len(set(texts)) > 1  # the prompts shaped the answers


def test_json_object_answer_parses(server: str) -> None:
    client = _client(server)
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Give the capital of France as JSON."}],
        max_tokens=120,
        temperature=0.7,
        seed=5,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(r.choices[0].message.content), dict)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_required_gives_calls_that_validate(server: str, stream: bool) -> None:
    client = _client(server)
    args: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the weather like in Lisbon?"}],
        "max_tokens": 160,
        "temperature": 0,
        "tools": TOOLS,
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }
    if not stream:
        r = client.chat.completions.create(**args)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls]
    else:
        parts: dict[int, dict[str, str]] = {}
        finish = None
        for chunk in client.chat.completions.create(**args, stream=True):
            if not chunk.choices:
                continue
            finish = chunk.choices[0].finish_reason or finish
            for d in chunk.choices[0].delta.tool_calls or []:
                slot = parts.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] = d.id or slot["id"]
                slot["name"] = (d.function.name if d.function else None) or slot["name"]
                slot["arguments"] += (d.function.arguments if d.function else None) or ""
        assert finish == "tool_calls"
        calls = [(p["id"], p["name"], p["arguments"]) for p in parts.values()]
    assert len(calls) == 1
    call_id, name, arguments = calls[0]
    assert call_id.startswith("call_") and name in SCHEMAS
    jsonschema.validate(json.loads(arguments), SCHEMAS[name])


def test_named_tool_choice_and_a_tool_result_in_the_conversation(server: str) -> None:
    """A named function is the one called; the next turn carries the assistant's call and
    the tool's result (``role: "tool"``) through the chat template."""
    client = _client(server)
    first = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Add 2 and 3."}],
        max_tokens=80,
        temperature=0,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "add"}},
    )
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "add"
    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS["add"])
    second = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Add 2 and 3."},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "5"},
        ],
        max_tokens=24,
        temperature=0,
        tools=TOOLS,
        tool_choice="none",
    )
    assert second.choices[0].message.content and not second.choices[0].message.tool_calls


def _check_top(entries: list[Any], k: int) -> None:
    assert entries
    for e in entries:
        top = [t.logprob for t in e.top_logprobs]
        assert len(top) == k and top == sorted(top, reverse=True)
        assert all(math.exp(p) <= 1.0 for p in top) and e.logprob <= 0.0
        assert e.logprob <= top[0] + 1e-6  # the chosen token is at most the likeliest
        assert bytes(e.bytes).decode("utf-8", errors="replace") == e.token or "\\x" in e.token


@pytest.mark.parametrize("stream", [False, True])
def test_top_logprobs_three_alternatives_sorted(server: str, stream: bool) -> None:
    client = _client(server)
    args: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 8,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 3,
    }
    if not stream:
        r = client.chat.completions.create(**args)
        entries = r.choices[0].logprobs.content
        assert len(entries) == r.usage.completion_tokens
        text = r.choices[0].message.content
    else:
        entries, text = [], ""
        for chunk in client.chat.completions.create(**args, stream=True):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                if chunk.choices[0].logprobs is not None:
                    entries += chunk.choices[0].logprobs.content or []
    _check_top(entries, 3)
    assert b"".join(bytes(e.bytes) for e in entries).decode() == text
    for e in entries:  # greedy: the chosen token is the likeliest one
        assert e.token == e.top_logprobs[0].token


def test_completions_echo_logprobs_match_transformers(server: str, engine: Any) -> None:
    """``/v1/completions`` with ``echo`` and ``logprobs`` returns the prompt's tokens and
    their log-probabilities; they agree with ``transformers``' own model class run on
    the same checkpoint (an independent forward pass) within 1e-3 nats."""
    import torch
    from transformers import AutoModelForCausalLM

    client = _client(server)
    prompt = "The capital of France is"
    r = client.completions.create(
        model=MODEL, prompt=prompt, max_tokens=4, temperature=0, echo=True, logprobs=2
    )
    choice = r.choices[0]
    lp = choice.logprobs
    assert choice.text.startswith(prompt)
    assert "".join(lp.tokens) == choice.text
    ids = engine.tokenizer.encode(prompt)
    n = len(ids)
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert len(lp.tokens) == n + r.usage.completion_tokens
    assert lp.text_offset == [len("".join(lp.tokens[:i])) for i in range(len(lp.tokens))]
    reference = AutoModelForCausalLM.from_pretrained(engine.path, dtype=torch.float32).eval()
    with torch.inference_mode():
        logits = reference(torch.tensor([ids])).logits[0].float()
    expected = torch.log_softmax(logits, -1)
    for i in range(1, n):
        assert lp.token_logprobs[i] == pytest.approx(float(expected[i - 1, ids[i]]), abs=1e-3)
        assert len(lp.top_logprobs[i]) == 2
    # a prompt scored alone (max_tokens 0), as evaluation harnesses do
    scored = client.completions.create(
        model=MODEL, prompt=prompt, max_tokens=0, echo=True, logprobs=0
    )
    assert scored.choices[0].text == prompt and scored.usage.completion_tokens == 0
    assert scored.choices[0].logprobs.token_logprobs[1:] == pytest.approx(
        lp.token_logprobs[1:n], abs=1e-4
    )


def test_completions_several_prompts_streamed(server: str) -> None:
    client = _client(server)
    texts: dict[int, str] = {0: "", 1: ""}
    finishes: dict[int, str] = {}
    for chunk in client.completions.create(
        model=MODEL, prompt=["Once upon a time", "The sky is"], max_tokens=6, temperature=0,
        stream=True,
    ):  # fmt: skip
        for c in chunk.choices:
            texts[c.index] += c.text
            if c.finish_reason:
                finishes[c.index] = c.finish_reason
    assert all(texts.values()) and set(finishes) == {0, 1}
    whole = client.completions.create(
        model=MODEL, prompt=["Once upon a time", "The sky is"], max_tokens=6, temperature=0
    )
    assert [c.text for c in whole.choices] == [texts[0], texts[1]]


def test_responses_output_text_plain_and_streamed(server: str) -> None:
    client = _client(server)
    r = client.responses.create(
        model=MODEL,
        instructions="Answer in a few words.",
        input="What is the capital of France?",
        max_output_tokens=16,
        temperature=0,
    )
    assert r.object == "response" and r.status in ("completed", "incomplete")
    assert r.output_text and r.usage.output_tokens > 0
    kinds, deltas, final = [], "", None
    for event in client.responses.create(
        model=MODEL, input="What is the capital of France?", instructions="Answer in a few words.",
        max_output_tokens=16, temperature=0, stream=True,
    ):  # fmt: skip
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas += event.delta
        if event.type in ("response.completed", "response.incomplete"):
            final = event.response
    assert kinds[0] == "response.created" and final is not None
    assert "response.output_text.delta" in kinds and deltas == final.output_text == r.output_text


def test_responses_structured_and_tools(server: str) -> None:
    client = _client(server)
    r = client.responses.create(
        model=MODEL,
        input="Describe a cat as a JSON record.",
        max_output_tokens=200,
        temperature=0,
        text={"format": {"type": "json_schema", "name": "record", "schema": SCHEMA}},
    )
    jsonschema.validate(json.loads(r.output_text), SCHEMA)
    tools = [{"type": "function", **t["function"]} for t in TOOLS]
    r = client.responses.create(
        model=MODEL,
        input="What is the weather in Oslo?",
        max_output_tokens=160,
        temperature=0,
        tools=tools,
        tool_choice="required",
        parallel_tool_calls=False,
    )
    call = r.output[0]
    assert call.type == "function_call" and call.name in SCHEMAS
    jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])
    # the call and its result go back as input items, as the Responses API chains them
    follow = client.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "What is the weather in Oslo?"},
            *[item.model_dump(exclude_none=True) for item in r.output],
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"},
        ],
        max_output_tokens=24,
        temperature=0,
        tools=tools,
        tool_choice="none",
    )
    assert follow.output_text


@pytest.mark.parametrize(
    ("path", "extra", "param"),
    [
        ("/v1/chat/completions", {"presence_penalty": 0.5}, "presence_penalty"),
        ("/v1/chat/completions", {"frequency_penalty": 1}, "frequency_penalty"),
        ("/v1/chat/completions", {"reasoning_effort": "high"}, "reasoning_effort"),
        ("/v1/chat/completions", {"n": 2}, "n"),
        ("/v1/chat/completions", {"store": True}, "store"),
        ("/v1/chat/completions", {"modalities": ["text", "audio"]}, "modalities"),
        ("/v1/chat/completions", {"functions": [{"name": "f"}]}, "functions"),
        ("/v1/chat/completions", {"web_search_options": {}}, "web_search_options"),
        ("/v1/chat/completions", {"not_an_openai_field": 1}, "not_an_openai_field"),
        ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
        ("/v1/chat/completions", {"tool_choice": "auto"}, "tool_choice"),
        ("/v1/completions", {"suffix": "end"}, "suffix"),
        ("/v1/completions", {"best_of": 3}, "best_of"),
        ("/v1/completions", {"prompt": [1, 2, 3]}, "prompt"),
        ("/v1/completions", {"logprobs": 6}, "logprobs"),
        ("/v1/responses", {"previous_response_id": "resp_1"}, "previous_response_id"),
        ("/v1/responses", {"store": True}, "store"),
        ("/v1/responses", {"reasoning": {"effort": "low"}}, "reasoning"),
        ("/v1/responses", {"include": ["reasoning.encrypted_content"]}, "include"),
        ("/v1/responses", {"background": True}, "background"),
    ],
)
def test_a_field_not_honoured_gets_a_400_naming_it(
    server: str, path: str, extra: dict[str, Any], param: str
) -> None:
    base: dict[str, Any] = {"model": MODEL, "max_tokens": 4}
    if path == "/v1/chat/completions":
        base["messages"] = [{"role": "user", "content": "Hi"}]
    elif path == "/v1/completions":
        base["prompt"] = "Hi"
    else:
        base = {"model": MODEL, "input": "Hi", "max_output_tokens": 4}
    r = httpx.post(server + path, json={**base, **extra}, timeout=60)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"]


def test_unsupported_field_through_the_official_client(server: str) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        _client(server).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], presence_penalty=1.0
        )
    assert caught.value.body["param"] == "presence_penalty"  # type: ignore[index]


def test_a_body_that_is_not_json_is_a_400_without_a_bogus_param(server: str) -> None:
    r = httpx.post(
        server + "/v1/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400
    assert r.json()["error"]["param"] is None and "JSON" in r.json()["error"]["message"]


def test_a_bad_json_schema_is_a_400(server: str) -> None:
    r = httpx.post(
        server + "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "no-such-type"}},
            },
        },
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"


def test_completions_echo_and_logprobs_streamed(server: str) -> None:
    """Streamed, the echoed prompt comes first (with its tokens' log-probabilities, from
    the answer's first chunk), then the answer's tokens: the same as the whole reply."""
    client = _client(server)
    args: dict[str, Any] = {
        "model": MODEL, "prompt": "The sky is", "max_tokens": 5, "temperature": 0,
        "echo": True, "logprobs": 1,
    }  # fmt: skip
    whole = client.completions.create(**args).choices[0]
    text, tokens, values = "", [], []
    for chunk in client.completions.create(**args, stream=True):
        for c in chunk.choices:
            text += c.text
            if c.logprobs is not None:
                tokens += c.logprobs.tokens
                values += c.logprobs.token_logprobs
    assert text == whole.text and text.startswith("The sky is")
    assert tokens == whole.logprobs.tokens and values[0] is None
    assert values[1:] == pytest.approx(whole.logprobs.token_logprobs[1:], abs=1e-4)


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/responses"])
def test_a_keyed_retry_gets_the_same_answer_on_every_endpoint(server: str, path: str) -> None:
    body: dict[str, Any] = {"model": MODEL, "temperature": 1.0}
    if path == "/v1/completions":
        body.update(prompt="Once upon a time", max_tokens=6)
    else:
        body.update(input="Tell me a word.", max_output_tokens=6)
    headers = {"Idempotency-Key": f"retry-{path}"}
    first = httpx.post(server + path, json=body, headers=headers, timeout=120)
    again = httpx.post(server + path, json=body, headers=headers, timeout=120)
    assert first.status_code == again.status_code == 200, first.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    streamed = httpx.post(
        server + path, json={**body, "stream": True}, headers=headers, timeout=120
    )
    assert streamed.headers.get("Idempotent-Replayed") == "true"
    assert (
        first.json()["id"] in streamed.text
        or first.json()["id"].replace("resp_", "") in streamed.text
    )
    other = httpx.post(
        server + path, json={**body, "temperature": 0.5}, headers=headers, timeout=60
    )
    assert other.status_code == 422  # the same key with another body
