"""The model's tokenizer: `tokenizer.json` through the `tokenizers` package, the chat template from
`tokenizer_config.json` (or `chat_template.jinja`) rendered with jinja2 the way Hugging Face renders
it, end-of-sequence ids from generation_config.json / config.json, and incremental detokenization
so streamed text never splits a multi-byte character or a word-initial space.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.sandbox
import tokenizers

from berth_runtime.models.model_config import ModelDirectoryError, read_json

# Tokens decoded again before the new ones, so a token's text is read in context (vLLM's window).
_DETOKENIZE_CONTEXT = 5
# A sentencepiece byte-fallback piece: one raw byte.
_BYTE_FALLBACK_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, character -> the byte it stands for (`bytes_to_unicode`)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    stand_ins = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in stand_ins:
            stand_ins[byte] = chr(256 + extra)
            extra += 1
    return {character: byte for byte, character in stand_ins.items()}


_BYTE_LEVEL_ALPHABET = _byte_level_alphabet()


class ChatTemplateError(ValueError):
    """The messages cannot be rendered: no template, or the template refused them."""


def _token_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def _ids(value: object) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def _read_optional_json(path: Path) -> dict[str, Any]:
    return read_json(path) if path.exists() else {}


def _chat_template(model_dir: Path, tokenizer_config: dict[str, Any]) -> str | None:
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": "..."}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if isinstance(template, str):
        return template
    jinja_file = model_dir / "chat_template.jinja"
    if jinja_file.exists():
        return jinja_file.read_text()
    json_file = model_dir / "chat_template.json"
    if json_file.exists():
        value = read_json(json_file).get("chat_template")
        return value if isinstance(value, str) else None
    return None


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(message)


def _tojson(
    value: object,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """Hugging Face's `tojson` filter (non-ASCII kept, unlike jinja2's HTML-safe default)."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


class Tokenizer:
    """encode/decode, the chat template and the EOS ids of one model (a directory's tokenizer.json,
    or parts built elsewhere: `from_parts`, what a GGUF file's metadata gives)."""

    def __init__(self, model_dir: Path) -> None:
        path = model_dir / "tokenizer.json"
        if not path.exists():
            raise ModelDirectoryError(
                f"{path} is missing; this runtime needs a fast tokenizer (tokenizer.json)"
            )
        try:
            backend = tokenizers.Tokenizer.from_file(str(path))
        except Exception as error:  # the Rust side raises a bare Exception on malformed files
            raise ModelDirectoryError(f"{path} cannot be loaded: {error}") from None
        tokenizer_config = _read_optional_json(model_dir / "tokenizer_config.json")
        special_tokens = {
            name: text
            for name in ("bos_token", "eos_token", "unk_token", "pad_token")
            if (text := _token_text(tokenizer_config.get(name))) is not None
        }
        self._set_parts(backend, special_tokens, _chat_template(model_dir, tokenizer_config), ())
        self.eos_token_ids = self._eos_ids(model_dir)

    @classmethod
    def from_parts(
        cls,
        backend: tokenizers.Tokenizer,
        special_tokens: dict[str, str],
        chat_template: str | None,
        eos_token_ids: Sequence[int],
    ) -> Tokenizer:
        """A tokenizer from an already built `tokenizers.Tokenizer`; `special_tokens` maps bos_token,
        eos_token, unk_token, pad_token to their text (what the chat template sees)."""
        tokenizer = cls.__new__(cls)
        tokenizer._set_parts(backend, special_tokens, chat_template, eos_token_ids)
        return tokenizer

    def _set_parts(
        self,
        backend: tokenizers.Tokenizer,
        special_tokens: dict[str, str],
        chat_template: str | None,
        eos_token_ids: Sequence[int],
    ) -> None:
        self._tokenizer = backend
        self._special_tokens = dict(special_tokens)
        self.bos_token = special_tokens.get("bos_token")
        self.eos_token = special_tokens.get("eos_token")
        self.chat_template = chat_template
        self.eos_token_ids = tuple(dict.fromkeys(eos_token_ids))
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)

    def _eos_ids(self, model_dir: Path) -> tuple[int, ...]:
        ids: list[int] = []
        ids += _ids(_read_optional_json(model_dir / "generation_config.json").get("eos_token_id"))
        ids += _ids(_read_optional_json(model_dir / "config.json").get("eos_token_id"))
        if (
            self.eos_token is not None
            and (token_id := self._tokenizer.token_to_id(self.eos_token)) is not None
        ):
            ids.append(token_id)
        return tuple(dict.fromkeys(ids))

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`; add_special_tokens=False for text that already holds them (chat).

        Through `encode_batch`, which releases the GIL while it works (`encode` holds it: a 12 MiB
        prompt stalled every other thread, the server's event loop included, for seconds)."""
        (encoding,) = self._tokenizer.encode_batch([text], add_special_tokens=add_special_tokens)
        return list(encoding.ids)

    @functools.cached_property
    def longest_token_chars(self) -> int:
        """Characters in the vocabulary's longest token string: no token covers more text than that
        (a byte-level or byte-fallback string is never shorter than the text it stands for), so a
        text longer than max_model_len times this cannot fit the context."""
        return max((len(token) for token in self._tokenizer.get_vocab(with_added_tokens=True)), default=1)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for, also when they are part of a UTF-8 character (a token
        decoded alone then reads U+FFFD, whose bytes are not the token's)."""
        text = self.decode([token_id], skip_special_tokens=False)
        if "\ufffd" not in text:
            return text.encode("utf-8")
        piece = self._tokenizer.id_to_token(token_id) or ""
        if match := _BYTE_FALLBACK_PIECE.fullmatch(piece):
            return bytes([int(match[1], 16)])
        if piece and all(character in _BYTE_LEVEL_ALPHABET for character in piece):
            return bytes(_BYTE_LEVEL_ALPHABET[character] for character in piece)
        return text.encode("utf-8")

    def token_label(self, token_id: int) -> str:
        """How logprob listings name a token: its text, or vLLM's `bytes:\\xNN...` spelling when the
        token alone is not whole UTF-8 text, so distinct byte tokens never share one U+FFFD label."""
        text = self.decode([token_id], skip_special_tokens=False)
        if "\ufffd" not in text:
            return text
        return "bytes:" + "".join(f"\\x{byte:02x}" for byte in self.token_bytes(token_id))

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return str(self._tokenizer.decode(list(token_ids), skip_special_tokens=skip_special_tokens))

    def token_to_text(self, token_id: int) -> str:
        """The vocabulary entry of one token (for logprob listings)."""
        return self._tokenizer.id_to_token(token_id) or ""

    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **template_vars: Any
    ) -> str:
        """Renders `messages` with the model's chat template (Hugging Face's jinja2 settings)."""
        if self.chat_template is None:
            raise ChatTemplateError(
                "this model has no chat template (tokenizer_config.json 'chat_template', "
                "chat_template.jinja, or a GGUF file's tokenizer.chat_template); "
                "use the completions API instead"
            )
        environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
        )
        environment.filters["tojson"] = _tojson
        environment.globals["raise_exception"] = _raise_exception
        environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            template = environment.from_string(self.chat_template)
            return template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                **self._special_tokens,
                **template_vars,
            )
        except jinja2.TemplateError as error:
            raise ChatTemplateError(f"the chat template failed to render: {error}") from None


class IncrementalDetokenizer:
    """Turns a growing list of generated ids into text deltas, waiting while a character is incomplete."""

    def __init__(self, tokenizer: Tokenizer, prompt_token_ids: Sequence[int]) -> None:
        self._tokenizer = tokenizer
        self._prefix_offset = max(len(prompt_token_ids) - _DETOKENIZE_CONTEXT, 0)
        self._read_offset = len(prompt_token_ids)

    def step(self, all_token_ids: Sequence[int]) -> str:
        """all_token_ids: prompt + generated so far; returns the text the newest ids add (maybe "")."""
        decode = self._tokenizer.decode
        prefix_text = decode(all_token_ids[self._prefix_offset : self._read_offset])
        full_text = decode(all_token_ids[self._prefix_offset :])
        if len(full_text) > len(prefix_text) and not full_text.endswith("\ufffd"):
            self._prefix_offset = self._read_offset
            self._read_offset = len(all_token_ids)
            return full_text[len(prefix_text) :]
        return ""

    def flush(self, all_token_ids: Sequence[int]) -> str:
        """At the end of a request: the text still held back (an incomplete character becomes U+FFFD,
        as a full decode shows it)."""
        prefix_text = self._tokenizer.decode(all_token_ids[self._prefix_offset : self._read_offset])
        full_text = self._tokenizer.decode(all_token_ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(all_token_ids)
        return full_text[len(prefix_text) :] if len(full_text) > len(prefix_text) else ""
