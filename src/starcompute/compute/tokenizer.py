"""A checkpoint's tokenizer and chat template without ``transformers``.

It reads the files a Hugging Face checkpoint ships (``tokenizer.json`` through the Rust
``tokenizers`` package, ``tokenizer_config.json`` for the special tokens, the chat
template from ``chat_template.jinja`` or the config) and renders the template the way
``transformers`` does (sandboxed Jinja2, trim_blocks + lstrip_blocks, loop controls, its
``tojson``/``raise_exception``/``strftime_now``). ``tests/test_decoder.py`` checks the ids
against ``transformers``' tokenizer. Processes that only tokenize (the ground segment)
need neither PyTorch nor ``transformers`` this way.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from starcompute.errors import InputError

SPECIAL_ROLES = ("bos_token", "eos_token", "unk_token", "pad_token")


class ChatTokenizer:
    """Encode prompts and chats, decode answers, as the checkpoint's tokenizer would."""

    def __init__(self, directory: Path) -> None:
        from tokenizers import Tokenizer

        path = directory / "tokenizer.json"
        if not path.is_file():
            raise InputError(f"checkpoint {directory}: tokenizer.json is missing")
        try:
            self.backend = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust reader raises plain Exception
            raise InputError(
                f"checkpoint {directory}: cannot read tokenizer.json ({exc})"
            ) from None
        config = _read_json(directory / "tokenizer_config.json")
        self.special = {role: _content(config.get(role)) for role in SPECIAL_ROLES}
        self.add_bos = bool(config.get("add_bos_token", False))
        self.add_eos = bool(config.get("add_eos_token", False))
        self.chat_template = _template(directory, config)
        self._compiled: Any = None
        self._json: str | None = None  # the tokenizer serialised (for llguidance)

    def id_of(self, role: str) -> int | None:
        """The id of a special token (``"eos_token"``, ``"pad_token"``, ...), if any."""
        token = self.special.get(role)
        return None if token is None else self.backend.token_to_id(token)

    @property
    def eos_token_id(self) -> int | None:
        return self.id_of("eos_token")

    @property
    def pad_token_id(self) -> int | None:
        return self.id_of("pad_token")

    def encode(self, text: str, special: bool = True) -> list[int]:
        """Token ids of ``text`` (``special``: with the tokens the checkpoint adds)."""
        ids = list(self.backend.encode(text, add_special_tokens=special).ids)
        bos, eos = self.id_of("bos_token"), self.id_of("eos_token")
        if special and self.add_bos and bos is not None and ids[:1] != [bos]:
            ids.insert(0, bos)
        if special and self.add_eos and eos is not None and ids[-1:] != [eos]:
            ids.append(eos)
        return ids

    def encode_chat(
        self, messages: list[dict[str, str]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """Token ids of a chat rendered by the checkpoint's template, ready for the
        assistant's turn (the template places the special tokens itself); ``tools``:
        function signatures for a template that renders them (:attr:`renders_tools`)."""
        if self.chat_template is None:
            raise InputError("this checkpoint has no chat template")
        import jinja2

        try:
            text = self._render(messages, tools)
        except jinja2.TemplateError as exc:  # e.g. the template's raise_exception
            raise InputError(f"the chat template rejects these messages: {exc}") from None
        return list(self.backend.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids`` with special tokens left out."""
        return str(self.backend.decode(ids, skip_special_tokens=True))

    def guidance(self, eos_ids: set[int] | None = None) -> Any:
        """llguidance's tokenizer for this vocabulary (constrained decoding, token bytes);
        ``eos_ids``: the tokens that end an answer (default: the EOS token)."""
        from starcompute.compute.grammars import guidance_tokenizer

        if self._json is None:
            self._json = self.backend.to_str()
        own = self.eos_token_id
        eos = eos_ids if eos_ids is not None else ({own} if own is not None else set())
        return guidance_tokenizer(self._json, tuple(sorted(eos)))

    def token_bytes(self, token: int) -> bytes:
        """The bytes one token stands for (a piece of a UTF-8 character, possibly)."""
        return bytes(self.guidance().decode_bytes([token]))

    @property
    def renders_tools(self) -> bool:
        """The chat template lays out ``tools`` itself (Qwen3's does, SmolLM2's not)."""
        return bool(self.chat_template) and "tools" in str(self.chat_template)

    def _render(self, messages: list[dict[str, str]], tools: list[dict[str, Any]] | None) -> str:
        if self._compiled is None:
            self._compiled = _environment().from_string(self.chat_template)
        tokens = {role: token for role, token in self.special.items() if token is not None}
        extra = {"tools": tools} if tools else {}
        return str(
            self._compiled.render(messages=messages, add_generation_prompt=True, **tokens, **extra)
        )


def _environment() -> Any:
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, **kw: Any) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, **kw)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def _template(directory: Path, config: dict[str, Any]) -> str | None:
    path = directory / "chat_template.jinja"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def _content(token: Any) -> str | None:
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not JSON ({exc})") from None
    return data if isinstance(data, dict) else {}
