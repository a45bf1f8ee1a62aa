"""Tool calls in the Hermes format (compute/tools.py): the grammar compiles (llguidance),
calls parse back with the arguments as written, streaming gives the same calls in
pieces, and ``auto``'s plain-text branch is exactly the texts not opening a call."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from starcompute.compute import tools
from starcompute.errors import InputError

TOOLS = tools.parse_tools(
    json.dumps(
        [
            {"name": "get_weather", "description": "weather",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"name": "add",
             "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}},
        ]
    )
)  # fmt: skip
TEXT = (
    '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris }"}}\n</tool_call>'
)


def test_calls_parse_with_the_arguments_as_written() -> None:
    calls = tools.parse_calls(TEXT)
    assert [(c.name, c.arguments) for c in calls] == [
        ("add", '{"a": 1}'),
        ("get_weather", '{"city": "Paris }"}'),
    ]
    assert tools.parse_calls("Just text.") == []
    assert tools.parse_calls(TEXT[:60]) == []  # a call cut off by max_tokens is left out


@pytest.mark.parametrize("size", [1, 2, 3, 7, 500])
def test_streamed_calls_are_the_parsed_calls(size: int) -> None:
    reader, names, args = tools.CallStream(), {}, {}
    pieces = [TEXT[i : i + size] for i in range(0, len(TEXT), size)]
    for n, piece in enumerate(pieces):
        content, deltas = reader.feed(piece, final=n == len(pieces) - 1)
        assert content == ""
        for d in deltas:
            if "name" in d:
                names[d["index"]] = d["name"]
            args[d["index"]] = args.get(d["index"], "") + d["arguments"]
    parsed = tools.parse_calls(TEXT)
    assert [names[i] for i in range(2)] == [c.name for c in parsed]
    assert [args[i] for i in range(2)] == [c.arguments for c in parsed]


def test_plain_text_streams_as_content_once_it_cannot_be_a_call() -> None:
    reader = tools.CallStream()
    assert reader.feed("<to") == ("", [])  # may still become a call: held back
    assert reader.feed("day") == ("<today", [])
    assert reader.feed(" is fine", final=True) == (" is fine", [])
    short = tools.CallStream()
    assert short.feed("<", final=True) == ("<", [])


@given(st.text(alphabet="<>tool_cagx\n ", max_size=16))
def test_auto_text_branch_is_everything_not_opening_a_call(text: str) -> None:
    pattern = re.compile(tools._not_starting_with("<tool_call>"))
    assert bool(pattern.fullmatch(text)) == (not text.startswith("<tool_call>"))


def test_grammars_compile_and_names_are_checked() -> None:
    for choice in ("auto", "required", "add"):
        assert tools.grammar(TOOLS, choice, parallel=True)
    assert tools.grammar(TOOLS, "none", parallel=True) is None
    with pytest.raises(InputError, match="not among the tools"):
        tools.grammar(TOOLS, "multiply", parallel=False)
    with pytest.raises(InputError, match="same name"):
        tools.parse_tools(json.dumps([{"name": "a", "parameters": {}}] * 2))


def test_tools_go_into_the_system_message_when_the_template_cannot() -> None:
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    out = tools.with_system_text(chat, TOOLS)
    assert out[0]["content"].startswith("Be brief.") and "<tools>" in out[0]["content"]
    assert '"name": "get_weather"' in out[0]["content"] and out[1] == chat[1]
    assert tools.with_system_text(chat[1:], TOOLS)[0]["role"] == "system"
