"""Per-request sampling parameters, validated where they enter the runtime.

The server builds one `SamplingParams` per request from OpenAI or KServe parameters; any bad value
raises `InvalidParameter`, whose message names the parameter, the value and what is accepted, and
which the server turns into a 400. The engine then trusts these values, except
`logit_bias` token ids, which only the engine can check against its vocabulary
(`check_logit_bias_ids`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from berth_runtime.engine.grammar import Grammar

MAX_LOGPROBS = 20
MAX_ADDITIVE_PENALTY = 2.0
"""presence_penalty and frequency_penalty lie in [-2, 2] (OpenAI's range)."""
MAX_LOGIT_BIAS = 100.0
"""logit_bias values lie in [-100, 100] (OpenAI's range): -100 bans a token, +100 all but forces it."""


class InvalidParameter(ValueError):
    """A sampling parameter outside what the engine accepts."""

    def __init__(self, param_name: str, value: object, accepted: str) -> None:
        super().__init__(f"invalid value for '{param_name}': {value!r}; accepted: {accepted}")
        self.param_name = param_name
        self.value = value
        self.accepted = accepted


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class SamplingParams:
    """How one request samples and when it stops (vLLM's semantics, including its extensions)."""

    max_tokens: int = 16
    """Most tokens to generate (>= 1)."""
    temperature: float = 1.0
    """>= 0; 0 means greedy (argmax)."""
    top_k: int = 0
    """0 disables; otherwise sample among the k most likely tokens."""
    top_p: float = 1.0
    """Nucleus sampling mass in (0, 1]."""
    seed: int | None = None
    """Per-request seed: the same seed and prompt give the same tokens."""
    stop: tuple[str, ...] = ()
    """Stop strings; generation ends before them and they are not part of the output text."""
    stop_token_ids: tuple[int, ...] = ()
    """Token ids that end generation (the token is produced but its text is not added)."""
    ignore_eos: bool = False
    """Keep generating past the end-of-sequence token (vLLM extension)."""
    min_tokens: int = 0
    """Generate at least this many tokens before EOS or stop token ids may end it (vLLM extension)."""
    logprobs: int | None = None
    """None, or 0..20: return the sampled token's logprob and this many top alternatives."""
    presence_penalty: float = 0.0
    """-2..2 (OpenAI): subtracted once from the logit of every token already in the output."""
    frequency_penalty: float = 0.0
    """-2..2 (OpenAI): subtracted from a token's logit once per time it occurs in the output."""
    repetition_penalty: float = 1.0
    """> 0, 1 disables (vLLM / `transformers`): logits of tokens in the prompt or output are divided
    by it when positive, multiplied when negative."""
    min_p: float = 0.0
    """0..1, 0 disables: drop tokens whose probability is below min_p times the most likely one's."""
    logit_bias: tuple[tuple[int, float], ...] = ()
    """(token id, bias in -100..100) pairs added to the logits before everything else (OpenAI).
    A mapping of id (int or decimal string, as JSON gives it) to bias is accepted and stored sorted."""
    grammar: Grammar | None = None
    """Structured output (`response_format`, `guided_choice`, `guided_regex`): every token must keep the
    output a prefix of the grammar's language, and EOS is allowed only where it is complete."""

    def __post_init__(self) -> None:
        # Accept any sequence for the tuple fields (JSON gives lists); store tuples.
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif isinstance(self.stop, list | tuple):
            object.__setattr__(self, "stop", tuple(self.stop))
        if isinstance(self.stop_token_ids, list | tuple):
            object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids))
        if isinstance(self.logit_bias, dict):
            object.__setattr__(self, "logit_bias", parse_logit_bias(self.logit_bias))
        self._validate()

    def _validate(self) -> None:
        if not (_is_int(self.max_tokens) and self.max_tokens >= 1):
            raise InvalidParameter("max_tokens", self.max_tokens, "an integer >= 1")
        if not (_is_real(self.temperature) and self.temperature >= 0):
            raise InvalidParameter("temperature", self.temperature, "a number >= 0 (0 means greedy)")
        if not (_is_int(self.top_k) and self.top_k >= 0):
            raise InvalidParameter("top_k", self.top_k, "0 (disabled) or an integer >= 1")
        if not (_is_real(self.top_p) and 0 < self.top_p <= 1):
            raise InvalidParameter("top_p", self.top_p, "a number in (0, 1]")
        if self.seed is not None and not _is_int(self.seed):
            raise InvalidParameter("seed", self.seed, "an integer or null")
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) and s != "" for s in self.stop):
            raise InvalidParameter("stop", self.stop, "a non-empty string or a list of non-empty strings")
        if not isinstance(self.stop_token_ids, tuple) or not all(
            _is_int(t) and t >= 0 for t in self.stop_token_ids
        ):
            raise InvalidParameter(
                "stop_token_ids", self.stop_token_ids, "a list of token ids (integers >= 0)"
            )
        if not isinstance(self.ignore_eos, bool):
            raise InvalidParameter("ignore_eos", self.ignore_eos, "true or false")
        if not (_is_int(self.min_tokens) and self.min_tokens >= 0):
            raise InvalidParameter("min_tokens", self.min_tokens, "an integer >= 0")
        if self.min_tokens > self.max_tokens:
            raise InvalidParameter(
                "min_tokens", self.min_tokens, f"an integer <= max_tokens ({self.max_tokens})"
            )
        if self.logprobs is not None and not (_is_int(self.logprobs) and 0 <= self.logprobs <= MAX_LOGPROBS):
            raise InvalidParameter("logprobs", self.logprobs, f"null or an integer 0..{MAX_LOGPROBS}")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if not (_is_real(value) and -MAX_ADDITIVE_PENALTY <= value <= MAX_ADDITIVE_PENALTY):
                raise InvalidParameter(name, value, "a number in [-2, 2] (0 disables)")
        if not (_is_real(self.repetition_penalty) and self.repetition_penalty > 0):
            raise InvalidParameter("repetition_penalty", self.repetition_penalty, "a number > 0 (1 disables)")
        if not (_is_real(self.min_p) and 0 <= self.min_p <= 1):
            raise InvalidParameter("min_p", self.min_p, "a number in [0, 1] (0 disables)")
        if self.grammar is not None and (self.ignore_eos or self.min_tokens > 0):
            name = "ignore_eos" if self.ignore_eos else "min_tokens"
            raise InvalidParameter(
                name,
                self.ignore_eos if self.ignore_eos else self.min_tokens,
                f"{'false' if self.ignore_eos else '0'} with structured output ({self.grammar.source}): "
                "the grammar decides where the output ends",
            )
        if not isinstance(self.logit_bias, tuple):
            raise InvalidParameter("logit_bias", self.logit_bias, _LOGIT_BIAS_ACCEPTED)
        for pair in self.logit_bias:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise InvalidParameter("logit_bias", pair, _LOGIT_BIAS_ACCEPTED)
            token_id, bias = pair
            if not (_is_int(token_id) and token_id >= 0):
                raise InvalidParameter("logit_bias", token_id, _LOGIT_BIAS_ACCEPTED)
            if not (_is_real(bias) and -MAX_LOGIT_BIAS <= bias <= MAX_LOGIT_BIAS):
                raise InvalidParameter(f"logit_bias.{token_id}", bias, "a number in [-100, 100]")

    def check_logit_bias_ids(self, vocab_size: int) -> None:
        """Raises InvalidParameter naming the first logit_bias token id outside the vocabulary."""
        for token_id, _ in self.logit_bias:
            if token_id >= vocab_size:
                raise InvalidParameter(
                    "logit_bias",
                    token_id,
                    f"token ids in 0..{vocab_size - 1} (the model's vocabulary size is {vocab_size})",
                )

    @property
    def has_penalties(self) -> bool:
        """Whether sampling needs the request's token counts (presence, frequency or repetition)."""
        return self.presence_penalty != 0 or self.frequency_penalty != 0 or self.repetition_penalty != 1

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0


_LOGIT_BIAS_ACCEPTED = (
    "a mapping of token ids (integers >= 0, or their decimal strings) to numbers in [-100, 100]"
)


def parse_logit_bias(mapping: Mapping[Any, Any]) -> tuple[tuple[int, float], ...]:
    """JSON's {"50256": -100} as ((50256, -100.0),), sorted by id; a key that is not an id raises.
    Spellings of one id ("5", "05") collapse, the last one winning as in a JSON object."""
    biases: dict[int, Any] = {}
    for key, bias in mapping.items():
        if isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= _MAX_ID_DIGITS:
            token_id = int(key)
        elif isinstance(key, int) and not isinstance(key, bool) and key >= 0:
            token_id = key
        else:
            raise InvalidParameter("logit_bias", key, _LOGIT_BIAS_ACCEPTED)
        biases[token_id] = float(bias) if isinstance(bias, int) and not isinstance(bias, bool) else bias
    return tuple(sorted(biases.items()))


_MAX_ID_DIGITS = 18
"""Longer decimal keys are refused before int() (no vocabulary is that large)."""
