"""Per-request sampling parameters, validated where they enter the runtime.

The server builds one `SamplingParams` per request from OpenAI or KServe parameters; any bad value
raises `InvalidParameter`, whose message names the parameter, the value and what is accepted, and
which the server turns into a 400. The engine then trusts these values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_LOGPROBS = 20


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

    def __post_init__(self) -> None:
        # Accept any sequence for the tuple fields (JSON gives lists); store tuples.
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif isinstance(self.stop, list | tuple):
            object.__setattr__(self, "stop", tuple(self.stop))
        if isinstance(self.stop_token_ids, list | tuple):
            object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids))
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

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0
