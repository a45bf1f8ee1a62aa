"""One exception tree for the whole package, and what each error means to a client.

::

    StarcomputeError                  base of everything starcompute raises on purpose
    │                                 (anything else reaching a client is a bug: HTTP 500)
    ├── InputError (ValueError)       bad input (from a user, a file, or the space link);
    │   │                             the message names what is wrong and what is allowed
    │   ├── UnknownPresetError        (also a KeyError) a preset name that does not exist
    │   ├── ElementSetError           a malformed TLE / OMM record
    │   ├── BundleError               a BPv7 bundle that cannot be accepted (``reason``)
    │   ├── JobError                  a job a satellite must not run (``reason``)
    │   ├── TelecommandError          a telecommand a satellite refuses (``reason``)
    │   ├── UploadError               a model upload a satellite refuses (``reason``)
    │   └── IdempotencyError          an Idempotency-Key that cannot be used
    ├── PropagationError              a satellite SGP4 cannot propagate (decayed, ...)
    ├── QueueFullError                too many requests in flight (``retry_after_s``)
    └── UnavailableError              nothing can serve the request now
        ├── DeadlineError             no delivery before the deadline (``earliest``)
        ├── PlanEndedError            the orbit clock ran past the mission plan
        ├── OutOfContactError         no way up to that satellite now (``next_contact``)
        ├── LinkDownError             no link to that neighbour now
        └── ClError                   a convergence-layer session failed

The gateway answers with :class:`HttpError` (``HttpError.of`` an error of the tree).

Two tables say what an error means outside: :data:`HTTP` (status, OpenAI error type,
code; the gateway's error bodies) and :data:`EXIT_CODES` (the CLI's exit status: 2 for
bad input, 1 for the rest). The most specific class in an error's MRO decides
(:func:`http_error`, :func:`exit_code`). Fuzzing treats the ``InputError`` family, and
nothing else, as the expected outcome of hostile input.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class StarcomputeError(Exception):
    """Base class of every error starcompute raises on purpose."""


class InputError(StarcomputeError, ValueError):
    """Bad input: the message says what is wrong and what is allowed."""


class UnknownPresetError(InputError, KeyError):
    """A preset name that does not exist; the message lists the presets that do."""

    def __init__(
        self, kind: str, name: str, available: list[str], files_allowed: bool = True
    ) -> None:
        self.kind = kind
        self.name = name
        self.available = available
        tail = " or give a file path" if files_allowed else ""
        super().__init__(f"unknown {kind} {name!r}: choose one of {', '.join(available)}{tail}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class ElementSetError(InputError):
    """A malformed orbital element set (TLE line, OMM record)."""


class _RefusedError(InputError):
    """Input refused for a ``reason`` (a short label that counters use)."""

    what = "input refused"

    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{self.what} ({reason}): {detail}")


class BundleError(_RefusedError):
    """A bundle that cannot be accepted."""

    what = "rejected bundle"


class JobError(_RefusedError):
    """A job that must not run."""

    what = "job refused"


class TelecommandError(_RefusedError):
    """A telecommand the satellite refuses (tampered, forged, replayed, stale, ...)."""

    what = "telecommand rejected"


class UploadError(_RefusedError):
    """A model upload (a part, or the command naming it) the satellite refuses."""

    what = "model upload refused"


class IdempotencyError(InputError):
    """A key that cannot be used: ``status`` 400 (malformed) or 422 (reused)."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class PropagationError(StarcomputeError):
    """SGP4 could not propagate a satellite (see ``SGP4_ERRORS`` for the codes)."""


class QueueFullError(StarcomputeError):
    """The request queue is full; ``retry_after_s`` says when to try again."""

    def __init__(self, limit: int, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"the request queue is full ({limit} requests in flight)")


class UnavailableError(StarcomputeError):
    """Nothing can serve the request now (no path, no plan, no link)."""


class DeadlineError(UnavailableError):
    """The query cannot be answered before its deadline; ``earliest`` says when it can."""

    def __init__(self, deadline_s: float, earliest: Any | None) -> None:
        self.earliest = earliest
        when = _when(earliest, "earliest delivery", "no delivery possible within the plan")
        super().__init__(f"deadline of {deadline_s:g} s cannot be met; {when}")


class PlanEndedError(UnavailableError):
    """The orbit clock has run past the mission plan (and nothing rolls it forward)."""

    def __init__(self, end: Any) -> None:
        super().__init__(f"the mission plan ends at {_utc(end)}: no new queries")


class OutOfContactError(UnavailableError):
    """No station reaches the satellite now; ``next_contact`` (UTC) is when one does, or
    None if none does within the plan."""

    def __init__(self, satellite: str, next_contact: Any | None) -> None:
        self.satellite, self.next_contact = satellite, next_contact
        when = _when(
            next_contact, "the next contact reaches it at", "no contact reaches it within the plan"
        )
        super().__init__(f"{satellite} is out of contact: {when} (orbit time)")


class LinkDownError(UnavailableError):
    """No link to that neighbour now (or the radio is unreachable)."""


class ClError(UnavailableError):
    """The session failed (cut, closed, timed out or spoke something else)."""


def _utc(t: Any) -> str:
    """ISO-8601 UTC to the millisecond (as ``times.format_utc``; this layer is below it)."""
    return str(np.datetime_as_string(np.datetime64(t, "ms"))) + "Z"


def _when(t: Any | None, known: str, unknown: str) -> str:
    return f"{known} {_utc(t)}" if t is not None else unknown


class Http(NamedTuple):
    status: int
    type: str  # OpenAI's error type
    code: str | None


HTTP: dict[type[StarcomputeError], Http] = {
    StarcomputeError: Http(503, "server_error", "unavailable"),  # on purpose: not now
    InputError: Http(400, "invalid_request_error", None),
    UnknownPresetError: Http(400, "invalid_request_error", "unknown_preset"),
    TelecommandError: Http(403, "permission_error", None),  # code: the reason
    IdempotencyError: Http(422, "invalid_request_error", None),  # status, code: its own
    QueueFullError: Http(429, "rate_limit_error", "queue_full"),
    UnavailableError: Http(503, "server_error", "unavailable"),
    DeadlineError: Http(503, "server_error", "no_path_to_orbit"),
    PlanEndedError: Http(503, "server_error", "plan_ended"),
    OutOfContactError: Http(503, "server_error", "out_of_contact"),
}

EXIT_CODES: dict[type[StarcomputeError], int] = {StarcomputeError: 1, InputError: 2}


def _most_specific(exc: StarcomputeError, table: dict[type[StarcomputeError], Any]) -> Any:
    return next(table[k] for k in type(exc).__mro__ if k in table)


def http_error(exc: StarcomputeError) -> Http:
    """What ``exc`` is on the API: status, error type and code (an error's own
    ``reason`` or ``status``/``code`` where it carries them)."""
    out: Http = _most_specific(exc, HTTP)
    if isinstance(exc, IdempotencyError):
        return out._replace(status=exc.status, code=exc.code)
    if isinstance(exc, _RefusedError) and out.code is None:
        return out._replace(code=exc.reason)
    return out


def exit_code(exc: StarcomputeError) -> int:
    """The CLI's exit status for ``exc``."""
    code: int = _most_specific(exc, EXIT_CODES)
    return code


class HttpError(Exception):
    """An error as the gateway answers it: status, message, OpenAI error type, ``param``,
    code, and ``Retry-After`` seconds where there is one. Not a :class:`StarcomputeError`:
    only the gateway's routes raise it, for a bad request parameter or from one of the tree
    (:meth:`of`)."""

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
        self.status, self.message, self.kind = status, message, kind
        self.param, self.code = param, code
        self.headers = {"Retry-After": str(int(retry_after))} if retry_after else None

    @classmethod
    def of(
        cls, exc: StarcomputeError, param: str | None = None, code: str | None = None
    ) -> HttpError:
        """The answer to ``exc`` (status, type and code from :data:`HTTP`)."""
        http = http_error(exc)
        retry = exc.retry_after_s if isinstance(exc, QueueFullError) else None
        return cls(http.status, str(exc), http.type, param, code or http.code, retry)
