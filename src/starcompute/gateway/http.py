"""Errors as HTTP responses: OpenAI's error body, the status and type ``errors.HTTP``
gives each error of the one tree."""

from __future__ import annotations

from starcompute.errors import QueueFullError, StarcomputeError, http_error
from starcompute.gateway.schemas import error_body


class HttpError(Exception):
    """An error response in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.body = status, error_body(message, kind, param, code)
        self.headers = {"Retry-After": str(int(retry_after))} if retry_after else None


def mapped(exc: StarcomputeError, param: str | None = None, code: str | None = None) -> HttpError:
    """The error response of ``exc`` (status, type and code from ``errors.HTTP``)."""
    http = http_error(exc)
    retry = exc.retry_after_s if isinstance(exc, QueueFullError) else None
    return HttpError(http.status, str(exc), http.type, param, code or http.code, retry)
