"""The ground gateway: an OpenAI-compatible API into the constellation, and the dashboard.

Thin by design: it parses HTTP, checks the API key and turns the ground segment's events
(``mission.live``: admission, planning, the trip, the log all live there) into OpenAI's
response shapes. Each
response also carries the orbital trace (``starcompute`` field, ``X-Starcompute-*``
headers), which plain clients ignore.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from starcompute.errors import (
    HttpError,
    IdempotencyError,
    InputError,
    QueueFullError,
    StarcomputeError,
    TelecommandError,
)
from starcompute.gateway.idempotency import Idempotency
from starcompute.gateway.metrics import GatewayMetrics
from starcompute.gateway.operations import TelemetryCollector, operations
from starcompute.gateway.schemas import (
    ChatCompletionRequest,
    FailureRequest,
    TelecommandRequest,
    error_body,
)
from starcompute.mission.control import Mission, Trace
from starcompute.mission.failures import Outage
from starcompute.mission.live import Event, GroundSegment
from starcompute.times import parse_utc

STATIC = Path(__file__).parent / "static"
# after SIGTERM, open responses get this long to finish; streams waiting for a pass are
# then cut (their clients retry with the same Idempotency-Key) rather than holding the stop
SHUTDOWN_GRACE_S = 5


def create_app(
    segment: GroundSegment,
    model_id: str,
    api_keys: dict[str, str] | None = None,
    default_max_tokens: int = 128,
    max_tokens_limit: int = 1024,
    czml: Callable[[Mission], list[dict[str, Any]]] | None = None,
    idempotency: Idempotency | None = None,
) -> FastAPI:
    """``api_keys``: key -> key id (None: no authentication). ``czml(mission)``: the
    dashboard's CZML document of a mission plan (made once per plan). ``idempotency``:
    the answers kept for clients' retries (``Idempotency-Key`` header)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sampler = asyncio.create_task(segment.run_telemetry())  # the twin's telemetry
        try:
            yield
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler

    app = FastAPI(title="starcompute gateway", version="0.1.0", lifespan=lifespan)
    metrics = GatewayMetrics()
    metrics.registry.register(TelemetryCollector(segment))
    metrics.in_flight.set_function(lambda: segment.in_flight)
    idem = idempotency if idempotency is not None else Idempotency()  # (an empty one is falsy)
    app.state.idempotency = idem
    created = int(time.time())
    czml_cache: dict[str, Any] = {}
    _errors(app)

    def authorise(request: Request) -> str | None:
        if not api_keys:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        for known, key_id in api_keys.items():
            if scheme.lower() == "bearer" and hmac.compare_digest(key.encode(), known.encode()):
                return key_id
        raise HttpError(
            401, "Incorrect or missing API key.", "invalid_request_error", None, "invalid_api_key"
        )

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatCompletionRequest, request: Request) -> Response:
        key_id = authorise(request)
        if body.model != model_id:
            raise HttpError(
                400,
                f"The model {body.model!r} does not exist; available: {model_id}",
                param="model",
                code="model_not_found",
            )
        asked = body.max_completion_tokens or body.max_tokens or default_max_tokens
        if asked > max_tokens_limit:
            raise HttpError(
                400,
                f"max_tokens must be within 1..{max_tokens_limit}, got {asked}",
                param="max_tokens",
                code="max_tokens_out_of_range",
            )
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        idem_key = request.headers.get("idempotency-key")
        owner = key_id or ""
        if idem_key is not None:
            try:
                asked_for = body.model_dump(mode="json", exclude={"stream", "stream_options"})
                fingerprint = Idempotency.fingerprint(asked_for)
                replay = await idem.claim(owner, Idempotency.check_key(idem_key), fingerprint)
            except IdempotencyError as exc:
                raise HttpError.of(exc, param="Idempotency-Key") from None
            if replay is not None and replay.body is not None:
                metrics.requests.labels("replayed").inc()
                return _replay(replay.body, replay.headers, body.stream, include_usage)

        def remember(answer: dict[str, Any], headers: dict[str, str]) -> None:
            if idem_key is not None:
                idem.complete(owner, idem_key, answer, headers)

        def forget() -> None:  # the run ended without an answer: a retry runs again
            if idem_key is not None:
                idem.abandon(owner, idem_key)

        try:
            return await _start(body, key_id, remember, forget, include_usage)
        except BaseException:
            forget()
            raise

    async def _start(
        body: ChatCompletionRequest,
        key_id: str | None,
        remember: Callable[[dict[str, Any], dict[str, str]], None],
        forget: Callable[[], None],
        include_usage: bool,
    ) -> Response:
        try:
            gen = body.generation(default_max_tokens)
        except InputError as exc:
            raise HttpError.of(exc, param="messages") from None
        events = _counted(metrics, segment.request(gen, key_id, body.stream), forget)
        try:
            first = await anext(events)
        except InputError as exc:  # past the context window
            raise HttpError.of(exc, param="max_tokens", code="context_length_exceeded") from None
        except StarcomputeError as exc:  # queue full, no path to orbit, ...
            raise HttpError.of(exc) from None
        request_id = first.request_id
        headers = _headers(request_id, first.planned(), planned=True)
        if body.stream:
            chunks = _sse(metrics, events, request_id, model_id, include_usage, remember)
            return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)
        try:
            return await _complete(metrics, events, request_id, model_id, remember)
        except StarcomputeError as exc:  # e.g. a failure left no way to re-plan it
            raise HttpError.of(exc) from None

    @app.post("/api/failures")
    async def inject_failure(body: FailureRequest, request: Request) -> dict[str, Any]:
        """Fail a satellite, station or link (mission control plans around it and
        re-plans the requests it strikes); needs an API key when keys are set."""
        authorise(request)
        try:
            start = parse_utc(body.start) if body.start else segment.clock.now()
            outage = Outage.lasting(body.kind, body.target, start, body.minutes, body.cause)
            struck = await segment.fail(outage)
        except InputError as exc:
            raise HttpError.of(exc, param="target") from None
        return {"outage": outage.to_dict(), "replanned": struck}

    @app.post("/api/telecommands")
    async def telecommand(body: TelecommandRequest, request: Request) -> dict[str, Any]:
        """Operator: seal a command for a satellite and send it (keyed). Anyone's
        transmitter: ``packet_hex``, a raw packet the satellite authenticates (403 with
        the reason when it refuses it: tampered, forged, replayed, stale, ...). A
        satellite out of contact: 503 with its next contact, or with ``wait`` the command
        is queued for that contact (``state: queued`` and when it ``arrives``)."""
        authorise(request)
        try:
            return segment.command(
                body.satellite, body.command, body.args, body.packet(), body.wait
            )
        except TelecommandError as exc:  # refused on board: 403 with the reason
            raise HttpError.of(exc) from None
        except InputError as exc:
            raise HttpError.of(exc, param="satellite") from None
        except StarcomputeError as exc:  # out of contact now: 503 with the next contact
            raise HttpError.of(exc) from None

    @app.get("/api/failures")
    async def failures() -> dict[str, Any]:
        return {"outages": [o.to_dict() for o in segment.mission.outages]}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authorise(request)
        return {
            "object": "list",
            "data": [
                {"id": model_id, "object": "model", "created": created, "owned_by": "starcompute"}
            ],
        }

    @app.get("/api/requests/{request_id}")
    async def request_trace(request_id: str) -> dict[str, Any]:
        row = segment.log.get(request_id)
        if row is None:
            raise HttpError(404, f"no request {request_id!r}", code="not_found")
        return row

    @app.get("/api/requests")
    async def recent(limit: int = 20) -> dict[str, Any]:
        if not 1 <= limit <= 500:
            raise HttpError(400, f"limit must be within 1..500, got {limit}", param="limit")
        return {"requests": segment.log.recent(limit)}

    @app.get("/api/constellation")
    async def constellation() -> dict[str, Any]:
        return segment.positions()

    @app.get("/api/contacts")
    async def contacts(minutes: float = 60.0) -> dict[str, Any]:
        if not 0 < minutes <= 24 * 60:
            raise HttpError(400, f"minutes must be within 0..1440, got {minutes}", param="minutes")
        return segment.contacts(minutes * 60.0)

    @app.get("/api/czml")
    async def czml_doc() -> Response:
        if czml is None:
            raise HttpError(404, "no CZML for this gateway", code="not_found")
        mission = await segment.current()  # the plan for now: rolled on if it nears its end
        if czml_cache.get("mission") is not mission:
            czml_cache["mission"] = mission
            czml_cache["text"] = json.dumps(czml(mission))
        return Response(czml_cache["text"], media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return segment.health()

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False, response_model=None)
    async def dashboard() -> Response:
        index = STATIC / "index.html"
        if index.is_file():
            return FileResponse(index)
        return HTMLResponse(
            "<h1>starcompute gateway</h1>"
            "<p>The dashboard is not built: run <code>make web</code>.</p>"
        )

    app.include_router(operations(segment, authorise))
    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(HttpError)
    async def http_error(request: Request, exc: HttpError) -> JSONResponse:
        body = error_body(exc.message, exc.kind, exc.param, exc.code)
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        types = {"str", "int", "float", "bool", "dict", "list", "none"}
        loc = [
            str(p)
            for p in first.get("loc", ())
            if p != "body" and (isinstance(p, int) or (str(p).isidentifier() and p not in types))
        ]
        param = ".".join(loc) or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        return JSONResponse(error_body(message, param=param), status_code=400)


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


def _usage(event: Event) -> dict[str, int]:
    done = event.answer()
    total = done.prompt_tokens + done.completion_tokens
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": total,
    }


def _extra(request_id: str, event: Event) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "trace": event.planned().to_dict(),
        "wall": {"time_to_first_token_s": event.wall_ttft_s, "total_s": round(event.wall_s, 4)},
    }


def _finish(
    metrics: GatewayMetrics,
    request_id: str,
    model_id: str,
    event: Event,
    remember: Callable[[dict[str, Any], dict[str, str]], None],
) -> dict[str, Any]:
    """Count a delivered answer; its chat.completion body (kept for retries)."""
    done, trace = event.answer(), event.planned()
    metrics.tokens.inc(done.completion_tokens)
    metrics.orbit_latency.observe(trace.total_s)
    if event.wall_ttft_s is not None:
        metrics.wall_ttft.observe(event.wall_ttft_s)
    body = {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": done.text},
                "logprobs": None,
                "finish_reason": done.finish_reason,
            }
        ],
        "usage": _usage(event),
        "starcompute": _extra(request_id, event),
    }
    remember(body, _headers(request_id, trace, planned=False))
    return body


async def _complete(
    metrics: GatewayMetrics,
    events: AsyncIterator[Event],
    request_id: str,
    model_id: str,
    remember: Callable[[dict[str, Any], dict[str, str]], None],
) -> JSONResponse:
    final: tuple[Event, dict[str, Any]] | None = None
    try:
        async for event in events:
            if event.kind == "done":
                final = event, _finish(metrics, request_id, model_id, event, remember)
    finally:
        await _close(events)
    if final is None:
        raise StarcomputeError(f"request {request_id} ended without an answer")
    event, body = final
    return JSONResponse(body, headers=_headers(request_id, event.planned(), planned=False))


def _chunk(
    request_id: str, created: int, model_id: str, delta: dict[str, Any] | None,
    finish: str | None = None, **extra: Any,
) -> str:  # fmt: skip
    """One server-sent event in OpenAI's chunk shape (``delta=None``: no choices)."""
    choices = [] if delta is None else [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    ]  # fmt: skip
    body = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model_id,
        "choices": choices,
        **extra,
    }
    return f"data: {json.dumps(body)}\n\n"


async def _sse(
    metrics: GatewayMetrics,
    events: AsyncIterator[Event],
    request_id: str,
    model_id: str,
    include_usage: bool,
    remember: Callable[[dict[str, Any], dict[str, str]], None],
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk shape, then ``data: [DONE]``."""
    created = int(time.time())
    yield _chunk(request_id, created, model_id, {"role": "assistant", "content": ""})
    try:
        async for event in events:
            if event.kind == "piece":
                yield _chunk(request_id, created, model_id, {"content": event.text})
            elif event.kind == "done":
                body = _finish(metrics, request_id, model_id, event, remember)
                for line in _closing(body, created, include_usage):
                    yield line
    except Exception as exc:  # headers are gone: the error travels in the stream
        yield f"data: {json.dumps(error_body(str(exc), 'server_error'))}\n\n"
    finally:
        await _close(events)  # also when the client went away mid-stream
    yield "data: [DONE]\n\n"


def _closing(body: dict[str, Any], created: int, include_usage: bool) -> list[str]:
    """The last chunks of a stream: the finish reason (and the trace), then the usage."""
    rid, model_id = body["id"], body["model"]
    finish = body["choices"][0]["finish_reason"]
    lines = [_chunk(rid, created, model_id, {}, finish, starcompute=body["starcompute"])]
    if include_usage:
        lines.append(_chunk(rid, created, model_id, None, usage=body["usage"]))
    return lines


def _replay(
    body: dict[str, Any], headers: dict[str, str], stream: bool, include_usage: bool
) -> Response:
    """A stored answer again, to a client's retry (as a stream if it asks for one)."""
    headers = {**headers, "Idempotent-Replayed": "true"}
    if not stream:
        return JSONResponse(body, headers=headers)
    rid, model_id, created = body["id"], body["model"], body["created"]
    text = body["choices"][0]["message"]["content"]
    lines = [
        _chunk(rid, created, model_id, {"role": "assistant", "content": ""}),
        _chunk(rid, created, model_id, {"content": text}),
        *_closing(body, created, include_usage),
        "data: [DONE]\n\n",
    ]

    async def chunks() -> AsyncIterator[str]:
        for line in lines:
            yield line

    return StreamingResponse(chunks(), media_type="text/event-stream", headers=headers)
