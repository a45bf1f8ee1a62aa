"""The operations API's request shapes (failures, telecommands, telemetry), validated,
and OpenAI-style error bodies (the OpenAI requests themselves: ``openai_requests``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from starcompute.mission.failures import OutageKind
from starcompute.security.telecommand import CommandKind


class FailureRequest(BaseModel):
    """An injected failure (``POST /api/failures``): from ``start`` (default: orbit now)
    for ``minutes`` (default: for good)."""

    model_config = ConfigDict(extra="forbid")

    kind: OutageKind
    target: str = Field(min_length=1, max_length=200)
    start: str | None = None
    minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)
    cause: str = Field(default="outage", max_length=40)


class TelecommandRequest(BaseModel):
    """``POST /api/telecommands``: a command for mission control to seal and send, or a
    raw packet (hex) as any transmitter could send it."""

    model_config = ConfigDict(extra="forbid")

    satellite: str = Field(min_length=1, max_length=200)
    command: CommandKind | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    packet_hex: str | None = Field(
        default=None, max_length=2 * 65542, pattern=r"^([0-9a-fA-F]{2})*$"
    )  # whole bytes in hexadecimal
    wait: bool = False  # out of contact: queue it for the next contact instead of a 503

    @model_validator(mode="after")
    def one_of(self) -> TelecommandRequest:
        if (self.command is None) == (self.packet_hex is None):
            raise ValueError("give either command (and args) or packet_hex")
        return self

    def packet(self) -> bytes | None:
        return bytes.fromhex(self.packet_hex) if self.packet_hex is not None else None


def error_body(
    message: str,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class TelemetryInjection(BaseModel):
    """``POST /api/telemetry``: values held in a satellite's telemetry for ``minutes`` of
    orbit time (a fault driven on purpose, e.g. a battery below its floor, to exercise
    limits and alarms); the records they touch say ``injected``."""

    model_config = ConfigDict(extra="forbid")

    satellite: str = Field(min_length=1, max_length=200)
    values: dict[str, float] = Field(min_length=1, max_length=32)
    minutes: float = Field(default=10.0, gt=0, le=1440)
