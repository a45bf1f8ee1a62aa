"""What clients of the OpenAI API receive: bodies and server-sent events of chat
completions, completions and responses, in OpenAI's shapes.

An :class:`Answer` gathers one request's answer as it comes down (text, tool calls read
by ``compute.tools.CallStream``, log-probabilities); each API turns answers into its
body (:func:`chat_body`, :func:`completion_body`, :func:`response_body`) or its stream
(:class:`ChatStream`, :class:`CompletionStream`, :class:`ResponseStream`: one per
request, fed the segment's events in order). Each answer also carries the orbital trace
(the ``starcompute`` field), which plain clients ignore.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from starcompute.compute.engine import Completion, TokenLogprob
from starcompute.compute.tools import CallStream
from starcompute.gateway.openai_requests import Asked


def sse(body: dict[str, Any], event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(body)}\n\n"


# ----------------------------------------------------------------- log-probabilities
def _token(text: bytes) -> str:
    return text.decode("utf-8", errors="backslashreplace")


def chat_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """``choices[].logprobs`` of a chat completion (or one chunk of it)."""
    return {
        "content": [
            {
                "token": _token(t.text),
                "logprob": t.logprob,
                "bytes": list(t.text),
                "top_logprobs": [
                    {"token": _token(b), "logprob": p, "bytes": list(b)} for _, b, p in t.top
                ],
            }
            for t in entries
        ],
        "refusal": None,
    }


def completion_logprobs(entries: Sequence[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    """The legacy completions' ``logprobs``: parallel lists, offsets into the text."""
    tokens, offsets, at = [], [], offset
    for t in entries:
        tokens.append(_token(t.text))
        offsets.append(at)
        at += len(_token(t.text))
    return {
        "tokens": tokens,
        "token_logprobs": [t.logprob for t in entries],
        "top_logprobs": [
            None if t.logprob is None else {_token(b): p for _, b, p in t.top} for t in entries
        ],
        "text_offset": offsets,
    }


# ---------------------------------------------------------------------- answers
@dataclass(slots=True)
class Answer:
    """One request's answer on the ground: its completion and how to read it."""

    request_id: str
    completion: Completion
    extra: dict[str, Any]  # the trace and wall times (the ``starcompute`` field)
    reads_tool_calls: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments)

    def __post_init__(self) -> None:
        if self.reads_tool_calls:
            from starcompute.compute.tools import parse_calls

            self.calls = [(c.name, c.arguments) for c in parse_calls(self.completion.text)]

    @property
    def finish_reason(self) -> str:
        reason = self.completion.finish_reason
        return "tool_calls" if self.calls and reason == "stop" else reason

    def call_id(self, i: int) -> str:
        return f"call_{self.request_id.split('-')[-1][:16]}_{i}"

    def usage(self) -> dict[str, int]:
        c = self.completion
        return {
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "total_tokens": c.prompt_tokens + c.completion_tokens,
        }


def _usage(answers: Sequence[Answer]) -> dict[str, int]:
    totals = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for a in answers:
        for k, v in a.usage().items():
            totals[k] += v
    return totals


def _extra(answers: Sequence[Answer]) -> dict[str, Any]:
    return answers[0].extra if len(answers) == 1 else {"requests": [a.extra for a in answers]}


# ------------------------------------------------------------------------- chat
def chat_message(answer: Answer) -> dict[str, Any]:
    if answer.calls:
        calls = [
            {
                "id": answer.call_id(i),
                "type": "function",
                "function": {"name": name, "arguments": args},
            }
            for i, (name, args) in enumerate(answer.calls)
        ]
        return {"role": "assistant", "content": None, "tool_calls": calls, "refusal": None}
    return {"role": "assistant", "content": answer.completion.text, "refusal": None}


def chat_body(answer: Answer, model_id: str, created: int, asked: Asked) -> dict[str, Any]:
    logprobs = None
    if asked.logprobs is not None:
        logprobs = chat_logprobs(answer.completion.logprobs or [])
    return {
        "id": answer.request_id,
        "object": "chat.completion",
        "created": created,
        "model": model_id,
        "choices": [
            {
                "index": 0,
                "message": chat_message(answer),
                "logprobs": logprobs,
                "finish_reason": answer.finish_reason,
            }
        ],
        "usage": answer.usage(),
        "starcompute": answer.extra,
    }


class ChatStream:
    """``chat.completion.chunk`` events of one answer as it streams."""

    def __init__(self, request_id: str, model_id: str, created: int, asked: Asked) -> None:
        self.rid, self.model_id, self.created, self.asked = request_id, model_id, created, asked
        self.reader = CallStream() if asked.reads_tool_calls else None
        self.call_ids: dict[int, str] = {}

    def chunk(self, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
        choices = [] if delta is None else [
            {"index": 0, "delta": delta, "logprobs": extra.pop("logprobs", None),
             "finish_reason": finish}
        ]  # fmt: skip
        body = {
            "id": self.rid,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_id,
            "choices": choices,
            **extra,
        }
        return sse(body)

    def opening(self) -> list[str]:
        return [self.chunk({"role": "assistant", "content": ""})]

    def piece(self, text: str, logprobs: Sequence[TokenLogprob], final: bool = False) -> list[str]:
        lp = chat_logprobs(logprobs) if self.asked.logprobs is not None and logprobs else None
        if self.reader is None:
            return [self.chunk({"content": text}, logprobs=lp)] if text or lp else []
        content, calls = self.reader.feed(text, final)
        out = [self.chunk({"content": content}, logprobs=lp)] if content or lp else []
        for d in calls:
            call: dict[str, Any] = {"index": d["index"], "function": {"arguments": d["arguments"]}}
            if "name" in d:
                rid = self.rid.split("-")[-1][:16]
                self.call_ids[d["index"]] = f"call_{rid}_{d['index']}"
                call.update(id=self.call_ids[d["index"]], type="function")
                call["function"]["name"] = d["name"]
            out.append(self.chunk({"tool_calls": [call]}))
        return out

    def closing(self, answer: Answer, body: dict[str, Any]) -> list[str]:
        lines = self.piece("", [], final=True) if self.reader is not None else []
        lines.append(self.chunk({}, answer.finish_reason, starcompute=body["starcompute"]))
        if self.asked.include_usage:
            lines.append(self.chunk(None, usage=body["usage"]))
        return lines


# ------------------------------------------------------------------ completions
def completion_choice(answer: Answer, index: int, prompt: str, asked: Asked) -> dict[str, Any]:
    c = answer.completion
    text = (prompt if asked.echo else "") + c.text
    logprobs = None
    if asked.logprobs is not None:
        entries = [*((c.prompt_logprobs or []) if asked.echo else []), *(c.logprobs or [])]
        logprobs = completion_logprobs(entries)
    return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": c.finish_reason}


def completion_body(
    answers: Sequence[Answer], prompts: Sequence[str], model_id: str, created: int, asked: Asked
) -> dict[str, Any]:
    return {
        "id": answers[0].request_id.replace("chatcmpl", "cmpl", 1),
        "object": "text_completion",
        "created": created,
        "model": model_id,
        "choices": [
            completion_choice(a, i, p, asked)
            for i, (a, p) in enumerate(zip(answers, prompts, strict=True))
        ],
        "usage": _usage(answers),
        "starcompute": _extra(answers),
    }


class CompletionStream:
    """``text_completion`` chunks of one prompt's answer (choice ``index``)."""

    def __init__(
        self, rid: str, model_id: str, created: int, asked: Asked, index: int, prompt: str
    ) -> None:
        self.rid, self.model_id, self.created = rid, model_id, created
        self.asked, self.index, self.prompt = asked, index, prompt
        self.offset = 0

    def chunk(self, text: str, entries: Sequence[TokenLogprob], finish: str | None = None) -> str:
        logprobs = None
        if self.asked.logprobs is not None:
            logprobs = completion_logprobs(entries, self.offset)
        self.offset += len(text)
        choice = {"text": text, "index": self.index, "logprobs": logprobs, "finish_reason": finish}
        body = {
            "id": self.rid,
            "object": "text_completion",
            "created": self.created,
            "model": self.model_id,
            "choices": [choice],
        }
        return sse(body)

    def piece(
        self, text: str, logprobs: Sequence[TokenLogprob], prompt: Sequence[TokenLogprob]
    ) -> list[str]:
        out = []
        if self.asked.echo and prompt:
            out.append(self.chunk(self.prompt, prompt))
        if text or logprobs:
            out.append(self.chunk(text, logprobs))
        return out

    def closing(self, answer: Answer) -> list[str]:
        return [self.chunk("", [], answer.finish_reason)]


# -------------------------------------------------------------------- responses
def response_output(answer: Answer) -> list[dict[str, Any]]:
    rid = answer.request_id.split("-")[-1]
    if answer.calls:
        return [
            {
                "type": "function_call",
                "id": f"fc_{rid}_{i}",
                "call_id": answer.call_id(i),
                "name": name,
                "arguments": args,
                "status": "completed",
            }
            for i, (name, args) in enumerate(answer.calls)
        ]
    text = {
        "type": "output_text",
        "text": answer.completion.text,
        "annotations": [],
        "logprobs": [],
    }
    return [
        {
            "type": "message",
            "id": f"msg_{rid}",
            "status": "completed",
            "role": "assistant",
            "content": [text],
        }
    ]


def response_body(
    request_id: str,
    model_id: str,
    created: int,
    request: Any,
    answer: Answer | None = None,
) -> dict[str, Any]:
    """A ``response`` object: in progress (no answer yet) or done."""
    done = answer is not None
    incomplete = done and answer.completion.finish_reason == "length"  # type: ignore[union-attr]
    body: dict[str, Any] = {
        "id": "resp_" + request_id.split("-")[-1],
        "object": "response",
        "created_at": created,
        "status": ("incomplete" if incomplete else "completed") if done else "in_progress",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "model": model_id,
        "output": response_output(answer) if answer is not None else [],
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "tool_choice": _dump(request.tool_choice) or "auto",
        "tools": [_dump(t) for t in request.tools or []],
        "text": {
            "format": _dump(request.text.format)
            if request.text and request.text.format
            else {"type": "text"}
        },
        "metadata": request.metadata or {},
        "store": False,
        "usage": None,
    }
    if answer is not None:
        u = answer.usage()
        body["usage"] = {
            "input_tokens": u["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": u["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": u["total_tokens"],
        }
        body["starcompute"] = answer.extra
    return body


def _dump(value: Any) -> Any:
    return (
        value.model_dump(by_alias=True, exclude_none=True)
        if hasattr(value, "model_dump")
        else value
    )


class ResponseStream:
    """The Responses API's typed events of one answer as it streams."""

    def __init__(
        self, request_id: str, model_id: str, created: int, asked: Asked, request: Any
    ) -> None:
        self.rid, self.model_id, self.created, self.request = request_id, model_id, created, request
        self.reader = CallStream() if asked.reads_tool_calls else None
        self.seq = 0
        self.text = ""
        self.item_open: str | None = None  # "message" or "calls"
        self.calls: dict[int, dict[str, Any]] = {}
        self.short = request_id.split("-")[-1]

    def event(self, kind: str, **fields: Any) -> str:
        body = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return sse(body, kind)

    def opening(self) -> list[str]:
        body = response_body(self.rid, self.model_id, self.created, self.request)
        return [
            self.event("response.created", response=body),
            self.event("response.in_progress", response=body),
        ]

    def _open_message(self) -> list[str]:
        self.item_open = "message"
        item = {
            "type": "message",
            "id": f"msg_{self.short}",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [
            self.event("response.output_item.added", output_index=0, item=item),
            self.event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=0,
                content_index=0,
                part=part,
            ),
        ]

    def piece(self, text: str, final: bool = False) -> list[str]:
        content, calls = (text, []) if self.reader is None else self.reader.feed(text, final)
        out: list[str] = []
        if content:
            if self.item_open is None:
                out += self._open_message()
            self.text += content
            out.append(
                self.event(
                    "response.output_text.delta",
                    item_id=f"msg_{self.short}",
                    output_index=0,
                    content_index=0,
                    delta=content,
                    logprobs=[],
                )
            )
        for d in calls:
            i = d["index"]
            if "name" in d:
                self.item_open = "calls"
                item = {
                    "type": "function_call",
                    "id": f"fc_{self.short}_{i}",
                    "call_id": f"call_{self.short[:16]}_{i}",
                    "name": d["name"],
                    "arguments": "",
                    "status": "in_progress",
                }
                self.calls[i] = item
                out.append(self.event("response.output_item.added", output_index=i, item=item))
            if d["arguments"]:
                self.calls[i]["arguments"] += d["arguments"]
                out.append(
                    self.event(
                        "response.function_call_arguments.delta",
                        item_id=f"fc_{self.short}_{i}",
                        output_index=i,
                        delta=d["arguments"],
                    )
                )
        return out

    def closing(self, answer: Answer) -> list[str]:
        out = self.piece("", final=True) if self.reader is not None else []
        if self.item_open is None and not answer.calls:
            out += self._open_message()  # an empty answer is still a message
        body = response_body(self.rid, self.model_id, self.created, self.request, answer)
        for i, item in enumerate(body["output"]):
            if item["type"] == "message":
                part = item["content"][0]
                out.append(
                    self.event(
                        "response.output_text.done",
                        item_id=item["id"],
                        output_index=i,
                        content_index=0,
                        text=part["text"],
                        logprobs=[],
                    )
                )
                out.append(
                    self.event(
                        "response.content_part.done",
                        item_id=item["id"],
                        output_index=i,
                        content_index=0,
                        part=part,
                    )
                )
            else:
                out.append(
                    self.event(
                        "response.function_call_arguments.done",
                        item_id=item["id"],
                        output_index=i,
                        name=item["name"],
                        arguments=item["arguments"],
                    )
                )
            out.append(self.event("response.output_item.done", output_index=i, item=item))
        kind = "response.incomplete" if body["status"] == "incomplete" else "response.completed"
        out.append(self.event(kind, response=body))
        return out
