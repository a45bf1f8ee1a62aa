"""Jobs and answers as they travel: the payloads of job and answer bundles.

A **job** is the query (CBOR: id, prompt or chat messages, sampling, chunk size)
together with the authenticated ``run-job`` telecommand bound to it: the command, sealed
on the ground under the serving satellite's key (``security.telecommand``), carries the
SHA-256 of the query's bytes. On board, :func:`open_job` opens the command with the
satellite's *own* keys (authentication, anti-replay), checks that the query is the one
it names, and only then returns the query: the engine is given nothing else.

An **answer** goes down as a series of chunks (every ``chunk_tokens`` decode steps, and
the end), so it can stream as it is downlinked; each carries its on-board times.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import cbor2

from starcompute.compute.engine import GenerationRequest, Message, TokenLogprob
from starcompute.errors import InputError, JobError
from starcompute.security.telecommand import Command, CommandKind, GroundKeys, SatelliteKeys

DEFAULT_CHUNK_TOKENS = 8
MAX_TEXT_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Query:
    """What the user asked, as it travels to orbit."""

    query_id: str
    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] = ()  # (role, content)
    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    ignore_eos: bool = False  # generate exactly max_tokens (the API's extension)
    grammar: str | None = None  # the answer's grammar (structured outputs, tool calls)
    tools: str | None = None  # JSON list of the tools the prompt offers
    logprobs: int | None = None  # log-probabilities with this many alternatives
    echo: bool = False  # and the prompt's
    logit_bias: tuple[tuple[int, float], ...] = ()

    @classmethod
    def of(cls, query_id: str, request: GenerationRequest, chunk_tokens: int) -> Query:
        return cls(
            query_id,
            request.prompt,
            tuple((m.role, m.content) for m in request.messages),
            request.max_tokens,
            request.temperature,
            request.top_p,
            request.seed,
            tuple(request.stop),
            chunk_tokens,
            request.ignore_eos,
            request.grammar,
            request.tools,
            request.logprobs,
            request.echo,
            request.logit_bias,
        )

    def request(self) -> GenerationRequest:
        """The engine's request (InputError if a field is out of range)."""
        return GenerationRequest(
            prompt=self.prompt,
            messages=tuple(Message(role, content) for role, content in self.messages),
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self.stop,
            seed=self.seed,
            ignore_eos=self.ignore_eos,
            grammar=self.grammar,
            tools=self.tools,
            logprobs=self.logprobs,
            echo=self.echo,
            logit_bias=self.logit_bias,
        )

    def to_bytes(self) -> bytes:
        doc = asdict(self)
        doc["messages"] = [list(m) for m in self.messages]
        doc["stop"] = list(self.stop)
        doc["logit_bias"] = [list(b) for b in self.logit_bias]
        for name in OPTIONAL:  # absent when unused: a plain query's bytes stay as they were
            if doc[name] is None or doc[name] is False or doc[name] == []:
                del doc[name]
        return bytes(cbor2.dumps(doc, canonical=True))

    @classmethod
    def from_bytes(cls, data: bytes) -> Query:
        try:
            doc = cbor2.loads(data)
            query = cls(
                query_id=_text(doc["query_id"]),
                prompt=None if doc["prompt"] is None else _text(doc["prompt"]),
                messages=tuple((_text(r), _text(c)) for r, c in doc["messages"]),
                max_tokens=int(doc["max_tokens"]),
                temperature=float(doc["temperature"]),
                top_p=float(doc["top_p"]),
                seed=None if doc["seed"] is None else int(doc["seed"]),
                stop=tuple(_text(s) for s in doc["stop"]),
                chunk_tokens=int(doc["chunk_tokens"]),
                ignore_eos=_flag(doc.get("ignore_eos", False)),
                grammar=_optional_text(doc.get("grammar")),
                tools=_optional_text(doc.get("tools")),
                logprobs=None if doc.get("logprobs") is None else int(doc["logprobs"]),
                echo=_flag(doc.get("echo", False)),
                logit_bias=tuple((int(t), float(b)) for t, b in doc.get("logit_bias", [])),
            )
            query.request()  # every field within its range
        except (KeyError, TypeError, ValueError, InputError, cbor2.CBORDecodeError) as exc:
            raise JobError("bad-query", f"{type(exc).__name__}: {exc}") from None
        if not 1 <= query.chunk_tokens <= 4096:
            raise JobError("bad-query", f"chunk_tokens {query.chunk_tokens} not within 1..4096")
        return query

    @property
    def text(self) -> str:
        return self.prompt if self.prompt is not None else " ".join(c for _, c in self.messages)


OPTIONAL = ("grammar", "tools", "logprobs", "echo", "logit_bias")


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def job_command(query: Query, model: str) -> Command:
    """The ``run-job`` telecommand bound to ``query`` (by the SHA-256 of its bytes)."""
    return Command(
        CommandKind.RUN_JOB,
        {
            "query_id": query.query_id,
            "model": model,
            "max_tokens": query.max_tokens,
            "sha256": hashlib.sha256(query.to_bytes()).hexdigest(),
        },
    )


def seal_job(keys: GroundKeys, query: Query, model: str) -> bytes:
    """The job bundle's payload: the sealed telecommand and the query it names."""
    packet = keys.seal(job_command(query, model))
    return bytes(cbor2.dumps({"telecommand": packet, "query": query.to_bytes()}))


def open_job(keys: SatelliteKeys, payload: bytes) -> tuple[Query, Command]:
    """Authenticate a job on board and return its query (JobError or TelecommandError,
    with a reason, for anything forged, tampered, replayed or malformed)."""
    try:
        doc = cbor2.loads(payload)
        packet, query_bytes = doc["telecommand"], doc["query"]
        if not isinstance(packet, bytes) or not isinstance(query_bytes, bytes):
            raise TypeError("telecommand and query must be byte strings")
    except (KeyError, TypeError, ValueError, cbor2.CBORDecodeError) as exc:
        raise JobError("bad-job", f"{type(exc).__name__}: {exc}") from None
    command = keys.open(packet)  # raises TelecommandError: auth, replay, stale, ...
    if command.kind != CommandKind.RUN_JOB:
        raise JobError("not-a-job", f"a {command.kind!r} command came with a query")
    if command.args.get("sha256") != hashlib.sha256(query_bytes).hexdigest():
        raise JobError("binding", "the query is not the one the telecommand names")
    query = Query.from_bytes(query_bytes)
    if query.query_id != command.args.get("query_id"):
        raise JobError("binding", "the query id differs from the telecommand's")
    return query, command


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of an answer as it leaves the satellite (times: DTN ms, orbit clock)."""

    query_id: str
    seq: int
    text: str
    final: bool
    satellite: str
    steps: int  # decode steps done when this chunk closed (cumulative)
    received_ms: int  # the query bundle arrived on board
    started_ms: int  # the satellite started on it
    computed_ms: int  # the host had computed this chunk
    released_ms: int  # it left the satellite (pace: max(computed, predicted))
    predicted_ms: int  # when the satellite's hardware would have computed it
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    pace: str = "hardware"
    extra: dict[str, Any] = field(default_factory=dict)
    logprobs: tuple[TokenLogprob, ...] = ()  # of the tokens this chunk completes
    prompt_logprobs: tuple[TokenLogprob, ...] = ()  # the prompt's (echo; the first chunk)

    def to_bytes(self) -> bytes:
        doc = asdict(self)
        for name in ("logprobs", "prompt_logprobs"):
            doc[name] = [t.to_list() for t in getattr(self, name)]
            if not doc[name]:
                del doc[name]
        return bytes(cbor2.dumps(doc, canonical=True))

    @classmethod
    def from_bytes(cls, data: bytes) -> Chunk:
        try:
            doc = cbor2.loads(data)
            if not isinstance(doc, dict) or len(doc.get("text", "")) > MAX_TEXT_BYTES:
                raise TypeError("an answer chunk is a map with a text of bounded size")
            for name in ("logprobs", "prompt_logprobs"):
                doc[name] = tuple(TokenLogprob.from_list(t) for t in doc.get(name, ()))
            return cls(**doc)
        except (TypeError, ValueError, cbor2.CBORDecodeError) as exc:
            raise JobError("bad-chunk", f"{type(exc).__name__}: {exc}") from None
