"""What the engine hands to the server: per-request output deltas and engine-wide statistics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenLogprob:
    """Logprob of one generated token and of the `top` most likely alternatives at that step."""

    token_id: int
    logprob: float
    top: dict[int, float]


@dataclass
class RequestOutput:
    """A delta of one request's generation: what is new since the previous output."""

    request_id: str
    new_token_ids: list[int]
    """Tokens produced since the previous output of this request."""
    new_text: str
    """Detokenized text delta (stop strings trimmed)."""
    finished: bool
    finish_reason: str | None
    """"stop" | "length" | "abort", or None while running."""
    prompt_tokens: int
    completion_tokens: int
    """Cumulative count of generated tokens."""
    logprobs: list[TokenLogprob] | None = None
    """One entry per token of `new_token_ids` when the request asked for logprobs."""


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of the engine, read by /metrics (vLLM's metric semantics)."""

    num_running: int = 0
    num_waiting: int = 0
    kv_cache_usage: float = 0.0
    """Share (0..1) of KV cache blocks held by requests."""
    prefix_cache_queries: int = 0
    """Cumulative prompt tokens looked up in the prefix cache."""
    prefix_cache_hits: int = 0
    """Cumulative prompt tokens found in the prefix cache."""
    num_preemptions: int = 0
    """Cumulative sequences preempted (their KV cache dropped, to be recomputed)."""
    spec_decode_num_draft_tokens: int = 0
    spec_decode_num_accepted_tokens: int = 0
