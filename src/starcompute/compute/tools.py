"""Tool calling: the tools in the prompt, the calls as a grammar, the calls read back.

The format is the Hermes one that Qwen3 (and Qwen2.5) are trained on: the tools' JSON
signatures in the system prompt between ``<tools></tools>``, and each call the model
makes written as::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

A checkpoint whose chat template renders ``tools`` itself (Qwen3's) gets them through
its template; another (SmolLM2's) gets the same kind of system text from
:func:`system_text`. The calls are produced under a grammar (``compute.grammars``): the
wrapper is fixed text and each function's arguments follow its JSON schema, so every
call parses and its arguments validate. With ``tool_choice: "auto"`` the grammar also
allows a plain answer (any text that does not begin with ``<tool_call>``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starcompute.compute import grammars
from starcompute.errors import InputError

OPEN = "<tool_call>\n"
CLOSE = "}\n</tool_call>"  # the call's object closes, then the tag
MAX_TOOLS = 128


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]

    def signature(self) -> dict[str, Any]:
        function = {"name": self.name, "description": self.description}
        return {"type": "function", "function": {**function, "parameters": self.parameters}}


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str  # the arguments object as JSON text, as the model wrote it


def parse_tools(doc: str) -> list[Tool]:
    """The tools of a request (a JSON list of ``{name, description, parameters}``)."""
    tools = [Tool(t["name"], t.get("description", ""), t["parameters"]) for t in json.loads(doc)]
    if not 1 <= len(tools) <= MAX_TOOLS:
        raise InputError(f"give 1..{MAX_TOOLS} tools, got {len(tools)}")
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise InputError("two tools have the same name")
    return tools


def system_text(tools: list[Tool]) -> str:
    """The system prompt's tool section, for a chat template that does not render tools."""
    signatures = "\n".join(json.dumps(t.signature(), ensure_ascii=False) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to help with the user's request.\n\n"
        f"The functions' signatures are within <tools></tools> XML tags:\n<tools>\n"
        f"{signatures}\n</tools>\n\n"
        "For each call, write a JSON object with the function's name and arguments "
        "within <tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
        "</tool_call>"
    )


def with_system_text(messages: list[dict[str, str]], tools: list[Tool]) -> list[dict[str, str]]:
    """The chat with the tools' section at the end of its system message (a new one first
    if it has none)."""
    section = system_text(tools)
    if messages and messages[0]["role"] == "system":
        first = {**messages[0], "content": messages[0]["content"] + "\n\n" + section}
        return [first, *messages[1:]]
    return [{"role": "system", "content": section}, *messages]


def grammar(tools: list[Tool], choice: str, parallel: bool) -> str | None:
    """The grammar of an answer: ``choice`` "none" (no grammar: plain text), "auto"
    (text or calls), "required" (calls) or a tool's name (one call of it); ``parallel``:
    several calls may follow one another."""
    if choice == "none":
        return None
    chosen = tools if choice in ("auto", "required") else [t for t in tools if t.name == choice]
    if not chosen:
        raise InputError(f"tool_choice names {choice!r}, which is not among the tools")
    rules = []
    for i, tool in enumerate(chosen):
        head = OPEN + '{"name": ' + json.dumps(tool.name) + ', "arguments": '
        rules.append(f"call_{i}: {json.dumps(head)} args_{i} {json.dumps(CLOSE)}")
        schema = {**tool.parameters, "x-guidance": grammars.JSON_OPTIONS}
        rules.append(f"args_{i}: %json {json.dumps(schema)}")
    alternatives = " | ".join(f"call_{i}" for i in range(len(chosen)))
    calls = 'call ("\\n" call)*' if parallel and choice in ("auto", "required") else "call"
    start = f"start: TEXT | {calls}" if choice == "auto" else f"start: {calls}"
    lines = [start, f"call: {alternatives}", *rules]
    if choice == "auto":
        lines.append(f"TEXT: /{_not_starting_with(OPEN.strip())}/")
    return grammars.lark("\n".join(lines))


def _not_starting_with(prefix: str) -> str:
    """A regex for any text that does not begin with ``prefix`` (the empty text too): a
    proper prefix of it and nothing more, or text that leaves it at some character."""
    whole = [_escape(prefix[:i]) for i in range(len(prefix))]
    leave = [_escape(prefix[:i]) + f"[^{_escape(prefix[i])}]" for i in range(len(prefix))]
    return "(?s:" + "|".join([*whole, "(?:" + "|".join(leave) + ").*"]) + ")"


def _escape(text: str) -> str:
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


_REGEX_SPECIAL = set("\\.+*?()|[]{}^$#&-~/")


def parse_calls(text: str) -> list[ToolCall]:
    """The complete calls in an answer made under :func:`grammar` (empty: a plain answer;
    a call cut off by ``max_tokens`` is left out); arguments as the model wrote them."""
    calls, at = [], 0
    while text.startswith(OPEN, at):
        end = text.find(CLOSE, at)
        if end < 0:
            break
        doc = json.loads(text[at + len(OPEN) : end + 1])
        head = OPEN + '{"name": ' + json.dumps(doc["name"]) + ', "arguments": '
        calls.append(ToolCall(doc["name"], text[at + len(head) : end]))
        at = end + len(CLOSE) + 1  # and the newline between calls
    return calls


class CallStream:
    """Reads an answer as it streams: plain text, or calls as OpenAI streams them (a
    call's name first, then its arguments in pieces)."""

    def __init__(self) -> None:
        self.text = ""
        self.content_sent = 0
        self.calls: list[dict[str, Any]] = []  # per call: name, arguments sent so far
        self.mode = "unknown"  # "text" once it cannot be a call, "calls" once it is

    def feed(self, piece: str, final: bool = False) -> tuple[str, list[dict[str, Any]]]:
        """(text for ``content``, call deltas ``{index, name?, arguments}``) of a piece."""
        self.text += piece
        marker = OPEN.strip()
        if self.mode == "unknown":
            if self.text.startswith(marker):
                self.mode = "calls"
            elif final or not marker.startswith(self.text):
                self.mode = "text"
        if self.mode == "text":
            out, self.content_sent = self.text[self.content_sent :], len(self.text)
            return out, []
        if self.mode == "calls":
            return "", self._call_deltas(final)
        return "", []

    def _call_deltas(self, final: bool) -> list[dict[str, Any]]:
        deltas, at, i = [], 0, 0
        while self.text.startswith(OPEN, at):
            name_at = at + len(OPEN) + len('{"name": ')
            head_end = self.text.find(', "arguments": ', name_at)
            if head_end < 0:
                break
            if i == len(self.calls):
                self.calls.append({"name": json.loads(self.text[name_at:head_end]), "sent": 0})
                deltas.append({"index": i, "name": self.calls[i]["name"], "arguments": ""})
            args_at = head_end + len(', "arguments": ')
            end = self.text.find(CLOSE, args_at)
            held = 0 if final else len(CLOSE)  # the tail may be where the call closes
            args = self.text[args_at:end] if end >= 0 else self.text[args_at:][: -held or None]
            new = args[self.calls[i]["sent"] :]
            if new:
                deltas.append({"index": i, "arguments": new})
                self.calls[i]["sent"] = len(args)
            if end < 0:
                break
            at, i = end + len(CLOSE) + 1, i + 1
        return deltas
