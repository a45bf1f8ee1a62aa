"""The OpenAI-compatible endpoints: ``/v1/chat/completions``, ``/v1/completions`` and
``/v1/responses``, one path for all three.

Thin: each parses its request (``openai_requests``: every OpenAI field honoured or
refused with a 400 naming it), runs its prompts through the ground segment
(``mission.live``: admission, planning, the trip to orbit and back, the log) and shapes
the answers (``openai_replies``). ``Idempotency-Key`` retries replay the stored answer,
streamed again if the retry streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from starcompute.errors import (
    HttpError,
    IdempotencyError,
    InputError,
    QueueFullError,
    StarcomputeError,
)
from starcompute.gateway.idempotency import Idempotency
from starcompute.gateway.metrics import GatewayMetrics
from starcompute.gateway.openai_replies import (
    Answer,
    ChatStream,
    CompletionStream,
    ResponseStream,
    chat_body,
    completion_body,
    response_body,
    sse,
)
from starcompute.gateway.openai_requests import (
    Asked,
    ChatCompletionRequest,
    CompletionRequest,
    ResponsesRequest,
)
from starcompute.gateway.schemas import error_body
from starcompute.mission.control import Trace
from starcompute.mission.live import Event, GroundSegment

Authorise = Callable[[Request], Any]
Remember = Callable[[dict[str, Any], dict[str, str]], None]
DONE = "data: [DONE]\n\n"


@dataclass(slots=True)
class Limits:
    model_id: str
    default_max_tokens: int = 128
    max_tokens_limit: int = 1024


def openai_api(
    segment: GroundSegment,
    authorise: Authorise,
    metrics: GatewayMetrics,
    idem: Idempotency,
    limits: Limits,
) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatCompletionRequest, request: Request) -> Response:
        """Chat completions: messages in, an assistant message (or tool calls) out."""
        return await run("chat", body, request)

    @router.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Response:
        """Legacy text completions: a prompt (or up to 16) continued; ``echo`` and
        ``logprobs`` score the prompt's tokens too."""
        return await run("completions", body, request)

    @router.post("/v1/responses", response_model=None)
    async def responses(body: ResponsesRequest, request: Request) -> Response:
        """The Responses API: ``input`` (text or items) and ``instructions`` in, output
        items out; streamed as typed events."""
        return await run("responses", body, request)

    async def run(api: str, body: Any, request: Request) -> Response:
        key_id = authorise(request)
        if body.model != limits.model_id:
            raise HttpError(
                400,
                f"The model {body.model!r} does not exist; available: {limits.model_id}",
                param="model",
                code="model_not_found",
            )
        asked: Asked = body.asked(limits.default_max_tokens)
        if asked.max_tokens > limits.max_tokens_limit:
            param = "max_output_tokens" if api == "responses" else "max_tokens"
            raise HttpError(
                400,
                f"{param} must be within 1..{limits.max_tokens_limit}, got {asked.max_tokens}",
                param=param,
                code="max_tokens_out_of_range",
            )
        idem_key, owner = request.headers.get("idempotency-key"), key_id or ""
        if idem_key is not None:
            try:
                fields = body.model_dump(mode="json", exclude={"stream", "stream_options"})
                fingerprint = Idempotency.fingerprint({"api": api, **fields})
                replay = await idem.claim(owner, Idempotency.check_key(idem_key), fingerprint)
            except IdempotencyError as exc:
                raise HttpError.of(exc, param="Idempotency-Key") from None
            if replay is not None and replay.body is not None:
                metrics.requests.labels("replayed").inc()
                return _replay(api, replay.body, replay.headers, asked)

        def remember(answer: dict[str, Any], headers: dict[str, str]) -> None:
            if idem_key is not None:
                idem.complete(owner, idem_key, answer, headers)

        def forget() -> None:  # the run ended without an answer: a retry runs again
            if idem_key is not None:
                idem.abandon(owner, idem_key)

        try:
            return await start(api, body, asked, key_id, remember, forget)
        except BaseException:
            forget()
            raise

    async def start(
        api: str,
        body: Any,
        asked: Asked,
        key_id: str | None,
        remember: Remember,
        forget: Callable[[], None],
    ) -> Response:
        runs: list[AsyncIterator[Event]] = []
        firsts: list[Event] = []
        try:
            for gen in asked.requests:
                runs.append(_counted(metrics, segment.request(gen, key_id, asked.stream), forget))
                firsts.append(await _first(runs[-1]))
        except BaseException:
            for events in runs:
                await _close(events)
            raise
        shaper = _Shaper(api, body, asked, limits.model_id, firsts, metrics, remember)
        headers = _headers(firsts[0].request_id, firsts[0].planned(), planned=True)
        if asked.stream:
            return StreamingResponse(
                shaper.stream(runs), media_type="text/event-stream", headers=headers
            )
        try:
            answers = await asyncio.gather(*(shaper.collect(i, ev) for i, ev in enumerate(runs)))
        except StarcomputeError as exc:  # e.g. a failure left no way to re-plan it
            raise HttpError.of(exc) from None
        body_out = shaper.body(list(answers))
        done_headers = _headers(answers[0].request_id, firsts[0].planned(), planned=False)
        remember(body_out, done_headers)
        return JSONResponse(body_out, headers=done_headers)

    return router


async def _first(events: AsyncIterator[Event]) -> Event:
    """A run's ``planned`` event (its admission and plan), errors as HTTP errors."""
    try:
        return await anext(events)
    except InputError as exc:  # past the context window
        raise HttpError.of(exc, param="max_tokens", code="context_length_exceeded") from None
    except StarcomputeError as exc:  # queue full, no path to orbit, ...
        raise HttpError.of(exc) from None


class _Shaper:
    """One HTTP request's answers in its API's shape."""

    def __init__(
        self,
        api: str,
        body: Any,
        asked: Asked,
        model_id: str,
        firsts: list[Event],
        metrics: GatewayMetrics,
        remember: Remember,
    ) -> None:
        self.api, self.request, self.asked, self.model_id = api, body, asked, model_id
        self.ids = [e.request_id for e in firsts]
        self.metrics, self.remember = metrics, remember
        self.created = int(time.time())
        self.prompts = [r.prompt or "" for r in asked.requests]

    def answer(self, event: Event) -> Answer:
        """A delivered answer, counted."""
        done, trace = event.answer(), event.planned()
        self.metrics.tokens.inc(done.completion_tokens)
        self.metrics.orbit_latency.observe(trace.total_s)
        if event.wall_ttft_s is not None:
            self.metrics.wall_ttft.observe(event.wall_ttft_s)
        extra = {
            "request_id": event.request_id,
            "trace": trace.to_dict(),
            "wall": {"time_to_first_token_s": event.wall_ttft_s, "total_s": round(event.wall_s, 4)},
        }
        return Answer(event.request_id, done, extra, self.asked.reads_tool_calls)

    async def collect(self, index: int, events: AsyncIterator[Event]) -> Answer:
        try:
            async for event in events:
                if event.kind == "done":
                    return self.answer(event)
        finally:
            await _close(events)
        raise StarcomputeError(f"request {self.ids[index]} ended without an answer")

    def body(self, answers: list[Answer]) -> dict[str, Any]:
        if self.api == "chat":
            return chat_body(answers[0], self.model_id, self.created, self.asked)
        if self.api == "completions":
            return completion_body(answers, self.prompts, self.model_id, self.created, self.asked)
        return response_body(self.ids[0], self.model_id, self.created, self.request, answers[0])

    async def stream(self, runs: list[AsyncIterator[Event]]) -> AsyncIterator[str]:
        """The answers' events as they come (several prompts interleave), then the end."""
        shapes = [self._stream_of(i) for i in range(len(runs))]
        answers: list[Answer | None] = [None] * len(runs)
        for line in shapes[0].opening() if self.api != "completions" else []:
            yield line
        try:
            async for i, event in _merged(runs):
                if event.kind == "piece":
                    for line in self._piece(shapes[i], event):
                        yield line
                elif event.kind == "done":
                    answers[i] = self.answer(event)
                    if all(a is not None for a in answers):
                        done = [a for a in answers if a is not None]
                        body = self.body(done)
                        planned = _headers(self.ids[0], event.planned(), planned=False)
                        self.remember(body, planned)
                        for line in self._closing(shapes, done, body):
                            yield line
        except Exception as exc:  # headers are gone: the error travels in the stream
            yield sse(error_body(str(exc), "server_error"))
        finally:
            for events in runs:
                await _close(events)  # also when the client went away mid-stream
        if self.api != "responses":
            yield DONE

    def _stream_of(self, i: int) -> Any:
        if self.api == "chat":
            return ChatStream(self.ids[0], self.model_id, self.created, self.asked)
        if self.api == "completions":
            rid = self.ids[0].replace("chatcmpl", "cmpl", 1)
            return CompletionStream(
                rid, self.model_id, self.created, self.asked, i, self.prompts[i]
            )
        return ResponseStream(self.ids[0], self.model_id, self.created, self.asked, self.request)

    def _piece(self, shape: Any, event: Event) -> list[str]:
        if self.api == "chat":
            return list(shape.piece(event.text, event.logprobs))
        if self.api == "completions":
            return list(shape.piece(event.text, event.logprobs, event.prompt_logprobs))
        return list(shape.piece(event.text))

    def _closing(self, shapes: list[Any], answers: list[Answer], body: dict[str, Any]) -> list[str]:
        if self.api == "chat":
            return list(shapes[0].closing(answers[0], body))
        if self.api == "responses":
            return list(shapes[0].closing(answers[0]))
        lines = [line for s, a in zip(shapes, answers, strict=True) for line in s.closing(a)]
        if self.asked.include_usage:
            usage = {
                k: v for k, v in body.items() if k in ("id", "object", "created", "model", "usage")
            }
            lines.append(sse({**usage, "choices": []}))
        return lines


async def _merged(runs: list[AsyncIterator[Event]]) -> AsyncIterator[tuple[int, Event]]:
    """The events of several runs as they come, each with its run's index."""
    if len(runs) == 1:
        async for event in runs[0]:
            yield 0, event
        return
    queue: asyncio.Queue[tuple[int, Event | BaseException | None]] = asyncio.Queue()

    async def pump(i: int, events: AsyncIterator[Event]) -> None:
        try:
            async for event in events:
                await queue.put((i, event))
            await queue.put((i, None))
        except BaseException as exc:
            await queue.put((i, exc))

    tasks = [asyncio.create_task(pump(i, ev)) for i, ev in enumerate(runs)]
    try:
        open_runs = len(runs)
        while open_runs:
            i, item = await queue.get()
            if item is None:
                open_runs -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def _counted(
    metrics: GatewayMetrics, events: AsyncIterator[Event], forget: Callable[[], None]
) -> AsyncIterator[Event]:
    """The segment's events, counted by outcome (``forget()``: an idempotency key whose
    run delivered nothing is released)."""
    status = "failed"
    try:
        async for event in events:
            if event.kind == "done":
                status = "completed"
            yield event
    except QueueFullError:
        status = "rejected_busy"
        raise
    finally:
        await _close(events)  # the request's own clean-up runs now, not at collection
        if status != "completed":
            forget()
        metrics.requests.labels(status).inc()


async def _close(events: AsyncIterator[Any]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


def _headers(request_id: str, trace: Trace, planned: bool) -> dict[str, str]:
    prefix = "X-Starcompute-"
    return {
        prefix + "Request-Id": request_id,
        prefix + "Uplink-Station": trace.uplink_station,
        prefix + "Serving-Satellite": trace.serving_satellite,
        prefix + "Downlink-Station": trace.downlink_station,
        prefix + ("Planned-Latency-S" if planned else "Orbit-Latency-S"): f"{trace.total_s:.3f}",
    }


def _replay(api: str, body: dict[str, Any], headers: dict[str, str], asked: Asked) -> Response:
    """A stored answer again, to a client's retry (as a stream if it asks for one)."""
    headers = {**headers, "Idempotent-Replayed": "true"}
    if not asked.stream:
        return JSONResponse(body, headers=headers)
    lines = _replayed_lines(api, body, asked)

    async def chunks() -> AsyncIterator[str]:
        for line in lines:
            yield line

    return StreamingResponse(chunks(), media_type="text/event-stream", headers=headers)


def _replayed_lines(api: str, body: dict[str, Any], asked: Asked) -> list[str]:
    rid, model_id = body["id"], body["model"]
    if api == "responses":
        started = {**body, "status": "in_progress", "output": []}
        end = "response.completed" if body["status"] == "completed" else "response.incomplete"
        seq = [("response.created", started), (end, body)]
        return [
            sse({"type": kind, "sequence_number": n, "response": r}, kind)
            for n, (kind, r) in enumerate(seq)
        ]
    created = body["created"]
    if api == "completions":
        lines = [
            sse(
                {
                    "id": rid,
                    "object": "text_completion",
                    "created": created,
                    "model": model_id,
                    "choices": [c],
                }
            )
            for c in body["choices"]
        ]
        return [*lines, DONE]
    stream = ChatStream(rid, model_id, created, asked)
    message = body["choices"][0]["message"]
    delta: dict[str, Any] = (
        {"content": message["content"]} if message.get("content") is not None else {}
    )
    if message.get("tool_calls"):
        delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]
    finish = body["choices"][0]["finish_reason"]
    lines = [*stream.opening(), stream.chunk(delta, logprobs=body["choices"][0].get("logprobs"))]
    lines.append(stream.chunk({}, finish, starcompute=body["starcompute"]))
    if asked.include_usage:
        lines.append(stream.chunk(None, usage=body["usage"]))
    return [*lines, DONE]
