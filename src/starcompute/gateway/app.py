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
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from starcompute.errors import (
    HttpError,
    InputError,
    StarcomputeError,
    TelecommandError,
)
from starcompute.gateway.idempotency import Idempotency
from starcompute.gateway.metrics import GatewayMetrics
from starcompute.gateway.openai_api import Limits, openai_api
from starcompute.gateway.operations import TelemetryCollector, operations
from starcompute.gateway.schemas import (
    FailureRequest,
    TelecommandRequest,
    error_body,
)
from starcompute.mission.control import Mission
from starcompute.mission.failures import Outage
from starcompute.mission.live import GroundSegment
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

    app.include_router(
        openai_api(
            segment,
            authorise,
            metrics,
            idem,
            Limits(model_id, default_max_tokens, max_tokens_limit),
        )
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
        if first.get("type") == "json_invalid":
            ctx = first.get("ctx")
            why = ctx.get("error", "") if isinstance(ctx, dict) else ""
            message = f"the body is not valid JSON: {why}"
            return JSONResponse(error_body(message.rstrip(": ")), status_code=400)
        types = {"str", "int", "float", "bool", "dict", "list", "none"}
        loc = [
            str(p)
            for p in first.get("loc", ())
            if p != "body" and (isinstance(p, int) or (str(p).isidentifier() and p not in types))
        ]
        param = ".".join(loc) or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        if first.get("type") == "extra_forbidden":
            message = f"{param} is not a field of this request (docs/openai-api.md lists them)"
        return JSONResponse(error_body(message, param=param), status_code=400)
