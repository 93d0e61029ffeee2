"""Builds the runtime's `Tokenizer` from a GGUF file's metadata, since a GGUF has no tokenizer.json.

llama.cpp stores the vocabulary (`tokenizer.ggml.tokens`), the BPE merges, each token's type, the
special token ids and the chat template as metadata, and names the pre-tokenizer (how text is split
before BPE) by a string, `tokenizer.ggml.pre`, whose regular expressions live in llama.cpp's code.
This module rebuilds that tokenizer with the `tokenizers` library: byte-level BPE over the file's
vocabulary and merges, the split expressions llama.cpp uses for the named pre-tokenizer, control
tokens as special tokens (matched whole, skipped when decoding) and user-defined ones as added tokens.
Only byte-level BPE ("gpt2", what Llama 3, SmolLM and Qwen files use) is built; anything else fails at
start with the key and what is accepted, rather than tokenizing differently from the model's training.
"""

from __future__ import annotations

import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors

from berth_runtime.models.gguf_reader import GGUFModelFile
from berth_runtime.models.model_config import ModelDirectoryError
from berth_runtime.tokenizer import Tokenizer

SUPPORTED_TOKENIZER_MODELS = ("gpt2",)
"""`tokenizer.ggml.model` values this runtime builds ("gpt2" is llama.cpp's name for byte-level BPE)."""

# llama.cpp's token types (tokenizer.ggml.token_type).
_CONTROL = 3
_USER_DEFINED = 4

_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_LLAMA3_SPLIT = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# tokenizer.ggml.pre -> (split expressions applied in turn, BPE ignores merges for whole-vocabulary words),
# as llama.cpp's llama-vocab.cpp assigns them.
_PRE_TOKENIZERS: dict[str, tuple[tuple[str, ...], bool]] = {
    **dict.fromkeys(("gpt-2", "mpt", "olmo", "jais"), ((_GPT2_SPLIT,), False)),
    **dict.fromkeys(
        ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"),
        ((r"\p{N}", _GPT2_SPLIT), False),
    ),
    **dict.fromkeys(("llama-bpe", "llama3", "llama-v3"), ((_LLAMA3_SPLIT,), True)),
    **dict.fromkeys(("qwen2", "stablelm2"), ((_QWEN2_SPLIT,), False)),
}
SUPPORTED_PRE_TOKENIZERS = tuple(sorted(_PRE_TOKENIZERS))
_SPECIAL_TOKEN_KEYS = {
    "bos_token": "tokenizer.ggml.bos_token_id",
    "eos_token": "tokenizer.ggml.eos_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id",
}


def _string_list(file: GGUFModelFile, key: str) -> list[str]:
    value = file.value(key)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ModelDirectoryError(f"{file.path}: GGUF key {key!r} is not a list of strings")
    return value


def _merges(file: GGUFModelFile) -> list[tuple[str, str]]:
    merges = []
    for merge in _string_list(file, "tokenizer.ggml.merges"):
        parts = merge.split(" ")
        if len(parts) != 2:
            raise ModelDirectoryError(
                f"{file.path}: tokenizer.ggml.merges holds {merge!r}; accepted: two tokens and one space"
            )
        merges.append((parts[0], parts[1]))
    return merges


def _backend(file: GGUFModelFile, tokens: list[str]) -> tokenizers.Tokenizer:
    pre = file.string("tokenizer.ggml.pre", None)
    if pre not in _PRE_TOKENIZERS:
        raise ModelDirectoryError(
            f"{file.path}: pre-tokenizer {pre!r} (tokenizer.ggml.pre) is not supported; "
            f"accepted: {', '.join(SUPPORTED_PRE_TOKENIZERS)}"
        )
    splits, ignore_merges = _PRE_TOKENIZERS[pre]
    vocab = {token: index for index, token in enumerate(tokens)}
    backend = tokenizers.Tokenizer(models.BPE(vocab, _merges(file), ignore_merges=ignore_merges))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(split), behavior="isolated") for split in splits]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    backend.decoder = decoders.ByteLevel()
    token_types = file.value("tokenizer.ggml.token_type", [])
    typed = list(zip(tokens, token_types, strict=False))
    # Already in the vocabulary, so each keeps its id; added, so the text is matched whole first.
    backend.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token, kind in typed if kind == _CONTROL]
    )
    backend.add_tokens(
        [AddedToken(token, special=False, normalized=False) for token, kind in typed if kind == _USER_DEFINED]
    )
    return backend


def _post_processor(file: GGUFModelFile, tokens: list[str]) -> processors.TemplateProcessing | None:
    """BOS / EOS around encoded text, as tokenizer.ggml.add_bos_token / add_eos_token ask (default off)."""
    ends: dict[str, tuple[str, int]] = {}  # "bos" / "eos" -> (token text, id)
    for end, flag, key in (
        ("bos", "add_bos_token", "bos_token_id"),
        ("eos", "add_eos_token", "eos_token_id"),
    ):
        if file.value(f"tokenizer.ggml.{flag}", False):
            token_id = file.integer(f"tokenizer.ggml.{key}", minimum=0)
            if token_id >= len(tokens):
                raise ModelDirectoryError(
                    f"{file.path}: tokenizer.ggml.{key}={token_id} is not in the vocabulary"
                )
            ends[end] = (tokens[token_id], token_id)
    if not ends:
        return None

    def framed(sequence: str) -> list[str]:
        bos, eos = ends.get("bos"), ends.get("eos")
        return [*([bos[0]] if bos else []), sequence, *([eos[0]] if eos else [])]

    return processors.TemplateProcessing(
        single=framed("$A"),  # lists, not one spaced string: a token's text may hold a space
        pair=framed("$A") + framed("$B"),
        special_tokens=list(dict.fromkeys(ends.values())),
    )


def load_gguf_tokenizer(file: GGUFModelFile) -> Tokenizer:
    """The tokenizer, chat template (tokenizer.chat_template) and EOS ids the file's metadata describe."""
    model = file.string("tokenizer.ggml.model")
    if model not in SUPPORTED_TOKENIZER_MODELS:
        raise ModelDirectoryError(
            f"{file.path}: tokenizer model {model!r} (tokenizer.ggml.model) is not supported; accepted: "
            f"{', '.join(SUPPORTED_TOKENIZER_MODELS)} (byte-level BPE)"
        )
    tokens = _string_list(file, "tokenizer.ggml.tokens")
    backend = _backend(file, tokens)
    post_processor = _post_processor(file, tokens)
    if post_processor is not None:
        backend.post_processor = post_processor
    special_tokens = {}
    for name, key in _SPECIAL_TOKEN_KEYS.items():
        token_id = file.integer(key, None, minimum=0)
        if token_id is not None and token_id < len(tokens):
            special_tokens[name] = tokens[token_id]
    return Tokenizer.from_parts(
        backend, special_tokens, file.string("tokenizer.chat_template", None), file.config.eos_token_ids
    )
