"""What clients of the OpenAI API send: chat completions, completions and responses.

Every field of OpenAI's request schemas is declared here and is either honoured or
refused with a 400 whose ``param`` names it (``docs/openai-api.md`` has the table); a
field OpenAI does not define is refused too (``extra="forbid"``), so nothing a client
sends is silently dropped. Each request becomes the engine's :class:`GenerationRequest`
(one per prompt) with the grammar that enforces its ``response_format`` or its tools.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from starcompute.compute import grammars, tools
from starcompute.compute.engine import GenerationRequest, Message
from starcompute.errors import HttpError, InputError

MAX_COMPLETION_LOGPROBS = 5  # the legacy completions API's limit
FORBID = ConfigDict(extra="forbid")


def unsupported(param: str, why: str) -> HttpError:
    return HttpError(
        400, f"{param} is not supported here: {why}", param=param, code="unsupported_parameter"
    )


@dataclass(frozen=True, slots=True)
class Asked:
    """A request as the gateway runs it: the engine's requests (one per prompt) and how
    to shape their answers."""

    requests: list[GenerationRequest]
    stream: bool
    include_usage: bool = False
    reads_tool_calls: bool = False  # answers may be tool calls (tools offered, not "none")
    logprobs: int | None = None
    echo: bool = False

    @property
    def max_tokens(self) -> int:
        return max(r.max_tokens for r in self.requests)


# ---------------------------------------------------------------- shared pieces
class TextPart(BaseModel):
    model_config = FORBID
    type: Literal["text", "input_text", "output_text"]
    text: str
    annotations: list[Any] | None = None  # output items sent back in a conversation
    logprobs: list[Any] | None = None  # carry these (they do not change the answer)


class FunctionRef(BaseModel):
    model_config = FORBID
    name: str
    arguments: str


class ToolCallIn(BaseModel):
    """A call the assistant made earlier in the conversation."""

    model_config = FORBID
    id: str
    type: Literal["function"] = "function"
    function: FunctionRef


class StreamOptions(BaseModel):
    model_config = FORBID
    include_usage: bool = False
    include_obfuscation: bool | None = None  # random padding of chunks: not needed here


class FunctionDef(BaseModel):
    model_config = FORBID
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None  # the arguments always follow the schema (constrained)


class ChatTool(BaseModel):
    model_config = FORBID
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(BaseModel):
    model_config = FORBID
    name: str


class ChatToolChoice(BaseModel):
    model_config = FORBID
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(BaseModel):
    model_config = FORBID
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None  # enforced either way: answers always follow the schema


class ResponseFormat(BaseModel):
    model_config = FORBID
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


def _format_grammar(kind: str, schema: dict[str, Any] | None, param: str) -> str | None:
    try:
        if kind == "json_object":
            return grammars.json_object()
        if kind == "json_schema":
            return grammars.json_schema(schema if schema is not None else {})
    except InputError as exc:
        raise HttpError(400, str(exc), param=param, code="invalid_json_schema") from None
    return None


def _tool_grammar(offered: list[tools.Tool], choice: str, parallel: bool, param: str) -> str | None:
    try:
        return tools.grammar(offered, choice, parallel)
    except InputError as exc:
        raise HttpError(400, str(exc), param=param) from None


def _temperature(temperature: float | None) -> float:
    return 1.0 if temperature is None else temperature


def _top_p(top_p: float | None) -> float:
    return 1.0 if top_p is None else top_p


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    return tuple(s for s in stops if s)


def _bias(logit_bias: dict[str, float] | None) -> tuple[tuple[int, float], ...]:
    out = []
    for token, bias in (logit_bias or {}).items():
        if not token.isdigit() or not -100 <= bias <= 100:
            raise HttpError(
                400,
                f"logit_bias maps token ids to biases within -100..100, got {token!r}: {bias}",
                param="logit_bias",
            )
        out.append((int(token), float(bias)))
    return tuple(out)


def _refuse_set(values: dict[str, Any], allowed: dict[str, Any], why: dict[str, str]) -> None:
    """400 for the first field given with a value other than those allowed."""
    for name, value in values.items():
        if value is None:
            continue
        ok = allowed.get(name, ())
        if value not in ok:
            raise unsupported(name, why[name])


PENALTY_WHY = "penalties are not implemented; send 0 or leave it out"


# ------------------------------------------------------------------------- chat
class ChatMessage(BaseModel):
    model_config = FORBID

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None  # accepted; the chat template has no place for it
    tool_calls: list[ToolCallIn] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None  # a tool's result answers this call
    refusal: str | None = None
    audio: dict[str, Any] | None = None
    function_call: dict[str, Any] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)

    def message(self, index: int) -> Message:
        where = f"messages.{index}"
        if self.role == "function" or self.function_call is not None:
            raise unsupported(where + ".role", "function messages are deprecated; use tools")
        if self.audio is not None:
            raise unsupported(where + ".audio", "audio is not supported by this model")
        if self.role == "tool" and not self.tool_call_id:
            raise HttpError(400, f"{where}: a tool message needs tool_call_id", param=where)
        text = self.text()
        if self.tool_calls:
            calls = "\n".join(
                _call_text(c.function.name, c.function.arguments, where) for c in self.tool_calls
            )
            text = f"{text}\n{calls}" if text else calls
        return Message("system" if self.role == "developer" else self.role, text)


def _call_text(name: str, arguments: str, where: str) -> str:
    """An earlier call as the model writes calls (``compute.tools``)."""
    try:
        args = json.loads(arguments)
    except ValueError:
        raise HttpError(
            400, f"{where}.tool_calls: arguments must be JSON", param=where + ".tool_calls"
        ) from None
    doc = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
    return f"{tools.OPEN}{doc}\n</tool_call>"


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``: every field of OpenAI's schema is declared."""

    model_config = FORBID

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = Field(default=None, max_length=4)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    seed: int | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    response_format: ResponseFormat | None = None
    tools: list[ChatTool] | None = Field(default=None, max_length=tools.MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | ChatToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    logit_bias: dict[str, float] | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    service_tier: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    ignore_eos: bool = False  # an extension (as in vLLM): generate exactly max_tokens

    def refusals(self) -> None:
        """400 naming the first field this gateway does not honour as given."""
        _refuse_set(
            {
                "frequency_penalty": self.frequency_penalty,
                "presence_penalty": self.presence_penalty,
                "service_tier": self.service_tier,
                "store": self.store,
            },
            {
                "frequency_penalty": (0, 0.0),
                "presence_penalty": (0, 0.0),
                "service_tier": ("auto", "default"),
                "store": (False,),
            },
            {
                "frequency_penalty": PENALTY_WHY,
                "presence_penalty": PENALTY_WHY,
                "service_tier": "one tier here: send auto or default",
                "store": "chat completions are not stored for retrieval; send false",
            },
        )
        if self.metadata and not self.store:
            raise unsupported("metadata", "metadata is kept only with store, which is off")
        if self.modalities not in (None, ["text"]):
            raise unsupported("modalities", 'this model answers in text: send ["text"]')
        for name, why in (
            ("audio", "this model answers in text"),
            ("prediction", "predicted outputs are not implemented"),
            ("reasoning_effort", "this model does not reason before it answers"),
            ("verbosity", "this model has no verbosity setting"),
            ("web_search_options", "there is no web search in orbit"),
            ("functions", "deprecated: use tools"),
            ("function_call", "deprecated: use tool_choice"),
        ):
            if getattr(self, name) is not None:
                raise unsupported(name, why)
        if self.top_logprobs is not None and not self.logprobs:
            raise HttpError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        if self.tool_choice is not None and not self.tools:
            raise HttpError(400, "tool_choice needs tools", param="tool_choice")
        fmt = self.response_format.type if self.response_format else "text"
        if fmt != "text" and self.tools and self._choice() != "none":
            raise unsupported(
                "response_format", "a JSON response_format together with tools (send one)"
            )
        if fmt == "json_schema" and (
            self.response_format is None or self.response_format.json_schema is None
        ):
            raise HttpError(
                400, "response_format json_schema needs json_schema", param="response_format"
            )

    def _choice(self) -> str:
        if isinstance(self.tool_choice, ChatToolChoice):
            return self.tool_choice.function.name
        return self.tool_choice or ("auto" if self.tools else "none")

    def asked(self, default_max_tokens: int) -> Asked:
        self.refusals()
        messages = tuple(m.message(i) for i, m in enumerate(self.messages))
        grammar, offered = None, None
        if self.response_format is not None:
            fmt = self.response_format
            schema = fmt.json_schema.schema_ if fmt.json_schema else None
            grammar = _format_grammar(fmt.type, schema, "response_format")
        choice = self._choice()
        if self.tools and choice != "none":
            defs = [t.function for t in self.tools]
            offered = [tools.Tool(f.name, f.description, f.parameters) for f in defs]
            parallel = self.parallel_tool_calls is not False
            grammar = _tool_grammar(offered, choice, parallel, "tool_choice")
        logprobs = (self.top_logprobs or 0) if self.logprobs else None
        try:
            request = GenerationRequest(
                messages=messages,
                max_tokens=self.max_completion_tokens or self.max_tokens or default_max_tokens,
                temperature=_temperature(self.temperature),
                top_p=_top_p(self.top_p),
                stop=_stops(self.stop),
                seed=self.seed,
                ignore_eos=self.ignore_eos,
                grammar=grammar,
                tools=None if offered is None else _tools_json(offered),
                logprobs=logprobs,
                logit_bias=_bias(self.logit_bias),
            )
        except InputError as exc:
            raise HttpError.of(exc, param="messages") from None
        return Asked(
            [request],
            bool(self.stream),
            bool(self.stream_options and self.stream_options.include_usage),
            reads_tool_calls=offered is not None,
            logprobs=logprobs,
        )


def _tools_json(offered: list[tools.Tool]) -> str:
    return json.dumps(
        [
            {"name": t.name, "description": t.description, "parameters": t.parameters}
            for t in offered
        ]
    )


# ------------------------------------------------------------------ completions
class CompletionRequest(BaseModel):
    """``POST /v1/completions`` (legacy text completions)."""

    model_config = FORBID

    model: str = Field(min_length=1)
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1, le=1)
    best_of: int | None = Field(default=None, ge=1, le=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(default=None, ge=0, le=MAX_COMPLETION_LOGPROBS)
    echo: bool | None = False
    stop: str | list[str] | None = Field(default=None, max_length=4)
    seed: int | None = None
    suffix: str | None = None
    user: str | None = None
    logit_bias: dict[str, float] | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)

    def prompts(self) -> list[str]:
        if isinstance(self.prompt, str):
            return [self.prompt]
        if not self.prompt or not all(isinstance(p, str) for p in self.prompt):
            raise unsupported(
                "prompt", "send text or a list of texts (token-id prompts are not accepted)"
            )
        if len(self.prompt) > 16:
            raise HttpError(400, "at most 16 prompts per request", param="prompt")
        return [str(p) for p in self.prompt]

    def asked(self, default_max_tokens: int) -> Asked:
        _refuse_set(
            {
                "frequency_penalty": self.frequency_penalty,
                "presence_penalty": self.presence_penalty,
            },
            {"frequency_penalty": (0, 0.0), "presence_penalty": (0, 0.0)},
            {"frequency_penalty": PENALTY_WHY, "presence_penalty": PENALTY_WHY},
        )
        if self.suffix:
            raise unsupported("suffix", "insertion (fill in the middle) is not implemented")
        echo = bool(self.echo)
        max_tokens = default_max_tokens if self.max_tokens is None else self.max_tokens
        if max_tokens == 0 and not (echo and self.logprobs is not None):
            raise HttpError(
                400, "max_tokens 0 needs echo and logprobs (scoring the prompt)", param="max_tokens"
            )
        logprobs = self.logprobs if (self.logprobs is not None or echo) else None
        if echo and logprobs is None:
            logprobs = 0  # echoed text needs the prompt's tokens; their logprobs go unused
        try:
            requests = [
                GenerationRequest(
                    prompt=p,
                    max_tokens=max_tokens,
                    temperature=_temperature(self.temperature),
                    top_p=_top_p(self.top_p),
                    stop=_stops(self.stop),
                    seed=self.seed,
                    logprobs=logprobs,
                    echo=echo,
                    logit_bias=_bias(self.logit_bias),
                )
                for p in self.prompts()
            ]
        except InputError as exc:
            raise HttpError.of(exc, param="prompt") from None
        return Asked(
            requests,
            bool(self.stream),
            bool(self.stream_options and self.stream_options.include_usage),
            logprobs=self.logprobs,
            echo=echo,
        )


# -------------------------------------------------------------------- responses
class InputMessage(BaseModel):
    model_config = FORBID
    type: Literal["message"] | None = None
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    id: str | None = None
    status: str | None = None


class FunctionCallItem(BaseModel):
    model_config = FORBID
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionOutputItem(BaseModel):
    model_config = FORBID
    type: Literal["function_call_output"]
    call_id: str
    output: str
    id: str | None = None
    status: str | None = None


class ResponsesTool(BaseModel):
    model_config = FORBID
    type: Literal["function"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ResponsesToolChoice(BaseModel):
    model_config = FORBID
    type: Literal["function"]
    name: str


class TextFormat(BaseModel):
    model_config = FORBID
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(BaseModel):
    model_config = FORBID
    format: TextFormat | None = None
    verbosity: str | None = None


class ResponsesRequest(BaseModel):
    """``POST /v1/responses`` (the Responses API)."""

    model_config = FORBID

    model: str = Field(min_length=1)
    input: str | list[InputMessage | FunctionCallItem | FunctionOutputItem]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    tools: list[ResponsesTool] | None = Field(default=None, max_length=tools.MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | ResponsesToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    store: bool | None = None
    truncation: str | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    include: list[str] | None = None
    background: bool | None = None
    max_tool_calls: int | None = None
    top_logprobs: int | None = None
    prompt: dict[str, Any] | None = None

    def refusals(self) -> None:
        _refuse_set(
            {
                "store": self.store,
                "service_tier": self.service_tier,
                "truncation": self.truncation,
                "background": self.background,
            },
            {
                "store": (False,),
                "service_tier": ("auto", "default"),
                "truncation": ("disabled",),
                "background": (False,),
            },
            {
                "store": "responses are not stored for retrieval; send false or leave it out",
                "service_tier": "one tier here: send auto or default",
                "truncation": "a conversation past the context window is refused, not cut",
                "background": "responses run in the foreground (stream them instead)",
            },
        )
        for name, why in (
            ("previous_response_id", "responses are not stored; send the conversation"),
            ("conversation", "conversations are not stored; send the conversation"),
            ("reasoning", "this model does not reason before it answers"),
            ("max_tool_calls", "not implemented; use parallel_tool_calls: false for one"),
            ("top_logprobs", "log-probabilities are offered by chat and completions"),
            ("prompt", "stored prompt templates are not kept here"),
        ):
            if getattr(self, name) is not None:
                raise unsupported(name, why)
        if self.include:
            raise unsupported("include", "no extra output items are kept here")
        if self.text is not None and self.text.verbosity is not None:
            raise unsupported("text.verbosity", "this model has no verbosity setting")
        if self.tool_choice is not None and not self.tools:
            raise HttpError(400, "tool_choice needs tools", param="tool_choice")

    def _messages(self) -> tuple[Message, ...]:
        out = [Message("system", self.instructions)] if self.instructions else []
        if isinstance(self.input, str):
            return (*out, Message("user", self.input))
        for i, item in enumerate(self.input):
            if isinstance(item, InputMessage):
                text = item.content if isinstance(item.content, str) else "".join(
                    p.text for p in item.content
                )  # fmt: skip
                out.append(Message("system" if item.role == "developer" else item.role, text))
            elif isinstance(item, FunctionCallItem):
                out.append(
                    Message("assistant", _call_text(item.name, item.arguments, f"input.{i}"))
                )
            else:
                out.append(Message("tool", item.output))
        if not out:
            raise HttpError(400, "input is empty", param="input")
        return tuple(out)

    def asked(self, default_max_tokens: int) -> Asked:
        self.refusals()
        grammar, offered = None, None
        fmt = self.text.format if self.text and self.text.format else None
        if fmt is not None:
            if fmt.type == "json_schema" and fmt.schema_ is None:
                raise HttpError(400, "text.format json_schema needs schema", param="text.format")
            grammar = _format_grammar(fmt.type, fmt.schema_, "text.format")
        choice = (
            self.tool_choice.name if isinstance(self.tool_choice, ResponsesToolChoice)
            else self.tool_choice or ("auto" if self.tools else "none")
        )  # fmt: skip
        if self.tools and choice != "none":
            if grammar is not None:
                raise unsupported("text.format", "a JSON format together with tools (send one)")
            offered = [
                tools.Tool(
                    t.name,
                    t.description or "",
                    t.parameters or {"type": "object", "properties": {}},
                )
                for t in self.tools
            ]
            grammar = _tool_grammar(
                offered, choice, self.parallel_tool_calls is not False, "tool_choice"
            )
        try:
            request = GenerationRequest(
                messages=self._messages(),
                max_tokens=self.max_output_tokens or default_max_tokens,
                temperature=_temperature(self.temperature),
                top_p=_top_p(self.top_p),
                grammar=grammar,
                tools=None if offered is None else _tools_json(offered),
            )
        except InputError as exc:
            raise HttpError.of(exc, param="input") from None
        return Asked([request], bool(self.stream), reads_tool_calls=offered is not None)
