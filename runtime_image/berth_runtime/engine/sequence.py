"""One request's state inside the engine: its tokens, how many have KV in the cache, its blocks."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from berth_runtime.engine.outputs import TokenLogprob
from berth_runtime.sampling_params import SamplingParams
from berth_runtime.tokenizer import IncrementalDetokenizer

if TYPE_CHECKING:
    from berth_runtime.engine.grammar import GrammarState
    from berth_runtime.engine.penalties import TokenCounts


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """A request being served. `token_ids` is prompt + generated; the KV of the first
    `num_computed_tokens` of them is in the cache, in `block_table` order."""

    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    arrival: int
    """Monotonic admission number: earlier requests keep priority (preemption takes the latest)."""
    detokenizer: IncrementalDetokenizer | None = None
    generator: torch.Generator | None = None
    """Per-request random stream when the request has a seed."""
    token_ids: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0
    draft_token_ids: list[int] = field(default_factory=list)
    """Speculative tokens to score after `token_ids` this step (never part of `token_ids`)."""
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)
    """Hash of each full block of `token_ids` computed so far (chained: a hash covers the prefix)."""
    status: SequenceStatus = SequenceStatus.WAITING
    finish_reason: str | None = None
    output_text: str = ""
    emitted_text_len: int = 0
    emitted_token_count: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)
    token_counts: TokenCounts | None = None
    """Prompt and output token statistics on the device, for the presence, frequency and repetition
    penalties (`engine.penalties`); made at the first sampled step of a penalised request."""
    grammar_state: GrammarState | None = None
    """The structured-output matcher (`engine.grammar`); made at the first sampled step of a request
    whose params carry a grammar."""

    def __post_init__(self) -> None:
        if not self.token_ids:
            self.token_ids = list(self.prompt_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - len(self.prompt_token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[len(self.prompt_token_ids) :]

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED
