"""Grammar-constrained decoding: OpenAI's `response_format` (json_object, json_schema) and vLLM's
`guided_json` / `guided_choice` / `guided_regex`, as a per-row token mask applied after the other
logit processors.

The library is llguidance, chosen on `bench/structured_output_libraries.py` (SmolLM2's 49152-token
vocabulary, one thread, medians of 3 walks of 200 tokens; compile / mask / advance per token:
xgrammar 6.2 ms / 21 µs / 20 µs, llguidance 1.3 ms / 51 µs / 13 µs, outlines-core 99 ms / 79 µs /
516 µs on a schema). xgrammar's mask is the cheapest, but per request the two are even (xgrammar's
compile costs 5 ms more, on the time to first token; llguidance's mask+advance 23 µs more a token:
they meet at ~200 tokens), and llguidance is the one with no dependencies (xgrammar pulls
`transformers` and `apache-tvm-ffi` into the runtime image), a compiler that says why a schema is
refused, and a batch executor that computes every row's mask, draft positions included, on its own
threads without the GIL. outlines-core compiles a regex per schema (100 ms before the first token)
and cannot express json_object's recursion.

Where the cost lands: never on the server's event loop (the engine steps on its worker thread).
After a step samples, each constrained one-row sequence's matcher takes the sampled token (the one
the engine appends) and its next mask is computed and unpacked on a helper thread -- llguidance
works without the GIL -- while the engine finishes the step and runs the next forward pass; the
step then only fills -inf (~0.1 ms a row at 49k tokens on this CPU, `bench/structured_output.py`).
A sequence that scored drafts, or one whose mask was not computed ahead, has it computed in the
sampler, all such rows at once on llguidance's threads.

A request's `Grammar` (the compiled grammar text and the model's `GrammarVocabulary`) rides in its
SamplingParams; the sequence's `GrammarState` (the matcher) is made at its first sampled step and
brought up to date with the tokens the sequence gained since (as the penalties' token counts are),
so the engine needs no hook of its own and preemption or speculation cannot desynchronise it. The
mask allows the end-of-sequence tokens only where the grammar is complete, so a request that stops
on EOS holds a complete document; one cut by max_tokens ends with `length` as any other.

Speculation: a row that scores draft j gets the mask of the matcher advanced by drafts 0..j-1
(llguidance's draft-token masks, rolled back after), so a draft the grammar refuses is never the
row's argmax and is rejected; the rows after a refused draft are dropped whatever their mask.
"""

from __future__ import annotations

import functools
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import llguidance
import llguidance.torch
import numpy as np
import torch

from berth_runtime.tokenizer import Tokenizer

if TYPE_CHECKING:
    from berth_runtime.engine.sequence import Sequence

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VocabularyBytes:
    """What a grammar library needs of the vocabulary: the bytes each token id stands for."""

    tokens: tuple[bytes, ...]
    """[size]: the bytes of each token; empty for special tokens and ids past the tokenizer's."""
    special: frozenset[int]
    eos: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.tokens)

    def for_grammar(self) -> list[bytes]:
        return list(self.tokens)


def vocabulary_bytes(tokenizer: Tokenizer, model_vocab_size: int | None) -> VocabularyBytes:
    """The bytes of each of the model's token ids (`model_vocab_size`, the logits' width; the
    tokenizer's size when None). A special token (text only when special tokens are kept) and an id the
    tokenizer lacks stand for no bytes: a grammar never allows them."""
    size = model_vocab_size if model_vocab_size is not None else tokenizer.vocab_size
    tokens: list[bytes] = []
    special: set[int] = set()
    for token_id in range(size):
        if token_id >= tokenizer.vocab_size or (
            tokenizer.decode([token_id], skip_special_tokens=True) == ""
            and tokenizer.decode([token_id], skip_special_tokens=False) != ""
        ):
            special.add(token_id)
            tokens.append(b"")
            continue
        piece = tokenizer.token_to_text(token_id)
        if piece.startswith("\u2581"):  # sentencepiece's word-initial space, dropped when decoded alone
            tokens.append(piece.replace("\u2581", " ").encode("utf-8"))
        else:
            tokens.append(tokenizer.token_bytes(token_id))
    eos = tuple(token_id for token_id in tokenizer.eos_token_ids if token_id < size)
    return VocabularyBytes(tuple(tokens), frozenset(special), eos)


class _TokenizerView:
    """What llguidance's TokenizerWrapper reads: token bytes, special ids and an encoder."""

    def __init__(self, tokenizer: Tokenizer, vocab: VocabularyBytes) -> None:
        self.eos_token_id = vocab.eos[0]
        self.bos_token_id = None
        self.tokens = vocab.for_grammar()
        self.special_token_ids = sorted(vocab.special)
        self._encode = tokenizer.encode

    def __call__(self, text: str) -> list[int]:
        return self._encode(text, add_special_tokens=False)


class GrammarVocabulary:
    """One model's vocabulary as llguidance sees it (built once per model: a pass over the vocabulary)."""

    def __init__(self, tokenizer: Tokenizer, model_vocab_size: int, eos_token_ids: tuple[int, ...]) -> None:
        vocab = vocabulary_bytes(tokenizer, model_vocab_size)
        eos = [token_id for token_id in eos_token_ids if token_id < model_vocab_size] or list(vocab.eos)
        if not eos:
            raise ValueError("structured output needs an end-of-sequence token; this model has none")
        vocab = VocabularyBytes(vocab.tokens, vocab.special, tuple(eos))
        self.size = model_vocab_size
        self.eos_token_ids = tuple(eos)
        self.ll_tokenizer = llguidance.LLTokenizer(
            llguidance.TokenizerWrapper(_TokenizerView(tokenizer, vocab)),
            n_vocab=model_vocab_size,
            eos_token=eos,
        )


@functools.lru_cache(maxsize=4)
def grammar_vocabulary(
    tokenizer: Tokenizer, model_vocab_size: int, eos: tuple[int, ...]
) -> GrammarVocabulary:
    """The model's GrammarVocabulary, built at its first structured request (seconds at 128k tokens)."""
    return GrammarVocabulary(tokenizer, model_vocab_size, eos)


@dataclass(frozen=True, eq=False)
class Grammar:
    """A request's compiled constraint: llguidance's grammar text over a model's vocabulary."""

    text: str
    vocabulary: GrammarVocabulary
    source: str
    """What the constraint came from (`response_format.json_schema`, `guided_regex`, ...), for errors."""


class GrammarError(ValueError):
    """A constraint llguidance refuses: names the field and the reason."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"invalid '{field_name}': {reason}")
        self.field_name = field_name
        self.reason = reason


def compile_grammar(text: str, vocabulary: GrammarVocabulary, source: str) -> Grammar:
    """Checks `text` (a grammar from `llguidance.LLMatcher.grammar_from_*`) against the vocabulary;
    raises GrammarError naming `source` and llguidance's reason."""
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(text, vocabulary.ll_tokenizer)
    if is_error:
        raise GrammarError(source, messages[0] if messages else "the grammar is invalid")
    return Grammar(text, vocabulary, source)


class GrammarState:
    """One sequence's matcher, advanced with the output tokens as they arrive, and the mask computed
    ahead for its next step (`prefetch_grammar_masks`)."""

    def __init__(self, grammar: Grammar) -> None:
        self.matcher = llguidance.LLMatcher(grammar.vocabulary.ll_tokenizer, grammar.text, log_level=0)
        self.num_consumed = 0
        """Output tokens the matcher has consumed."""
        self.prefetched: Future[torch.Tensor] | None = None
        """[masks, vocab] forbidden tokens being computed off the step (the matcher is not touched
        meanwhile); this sequence's is row `prefetched_row`."""
        self.prefetched_row = 0

    def update(self, seq: Sequence) -> torch.Tensor | None:
        """Consumes the output tokens `seq` gained since the last update (already allowed by the masks,
        so a matcher only errs at a parser limit, and then allows nothing but EOS). Returns the mask
        computed ahead for exactly this state, None when there is none."""
        ahead = None
        if self.prefetched is not None:
            ahead = self.prefetched.result()[self.prefetched_row]
            self.prefetched = None
        new_tokens = seq.token_ids[seq.num_prompt_tokens + self.num_consumed :]
        if new_tokens:
            ahead = None
            if not self.matcher.is_stopped() and not self.matcher.consume_tokens(new_tokens):
                logger.warning("request %s: structured output: %s", seq.request_id, self.matcher.get_error())
        self.num_consumed = seq.num_output_tokens
        return ahead


_EXECUTOR = llguidance.LLExecutor(num_threads=max(1, min(8, (os.cpu_count() or 2) // 2)))
"""Threads shared by every engine in the process (stateless: it only runs the mask computations)."""
_AHEAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grammar-masks")
"""Starts the next step's mask computation and returns at once (llguidance works without the GIL)."""


def prefetch_grammar_masks(seqs: list[Sequence], token_ids: list[int], vocab: int) -> None:
    """After sampling: starts advancing each constrained one-row sequence's matcher with its sampled
    token (the token the engine appends) and computing its next mask on the helper thread, so both are
    done when the next step's forward pass has run. A sequence that scored drafts is left alone: its
    accepted tokens are known only later."""
    ahead: list[tuple[GrammarState, int, str]] = []
    for row, seq in enumerate(seqs):
        state = seq.grammar_state
        single_row = (row == 0 or seqs[row - 1] is not seq) and (
            row + 1 == len(seqs) or seqs[row + 1] is not seq
        )
        if state is None or not single_row or state.prefetched is not None:
            continue
        if state.num_consumed != seq.num_output_tokens or state.matcher.is_stopped():
            continue
        state.num_consumed += 1  # consumed on the helper thread, before anything reads the matcher again
        ahead.append((state, token_ids[row], seq.request_id))
    if not ahead:
        return

    def compute() -> torch.Tensor:
        for state, token_id, request_id in ahead:
            if not state.matcher.consume_token(token_id):
                logger.warning("request %s: structured output: %s", request_id, state.matcher.get_error())
        bitmask = torch.full((len(ahead), (vocab + 31) // 32), -1, dtype=torch.int32)
        matchers = [(state.matcher, index) for index, (state, _, _) in enumerate(ahead)]
        llguidance.torch.fill_next_token_bitmask_par(_EXECUTOR, matchers, bitmask)
        return _forbidden(bitmask, vocab)

    future = _AHEAD.submit(compute)
    for index, (state, _, _) in enumerate(ahead):
        state.prefetched, state.prefetched_row = future, index


def apply_grammar_masks(logits: torch.Tensor, seqs: list[Sequence], drafts_before: list[int]) -> None:
    """Sets to -inf, in place, the logits of `logits` [rows, vocab] the rows' grammars forbid. Rows of
    sequences without a grammar are not written. A sequence scoring drafts owns consecutive rows,
    `drafts_before` 0..K."""
    constrained = [row for row, seq in enumerate(seqs) if seq.params.grammar is not None]
    if not constrained:
        return
    vocab = logits.shape[1]
    forbidden_of: dict[int, torch.Tensor] = {}  # row -> [vocab] bool, from masks computed ahead
    plain: list[tuple[llguidance.LLMatcher, int]] = []
    with_drafts: list[tuple[llguidance.LLMatcher, int, list[int]]] = []
    for mask_row, row in enumerate(constrained):
        seq = seqs[row]
        if drafts_before[row] != 0 or seq.params.grammar is None:
            continue  # a draft row is filled with its sequence's first row
        if seq.grammar_state is None:
            seq.grammar_state = GrammarState(seq.params.grammar)
        ahead = seq.grammar_state.update(seq)
        drafts = seq.draft_token_ids[: _draft_rows(seqs, row)]
        if drafts:
            with_drafts.append((seq.grammar_state.matcher, mask_row, drafts))
        elif ahead is not None:
            forbidden_of[row] = ahead
        else:
            plain.append((seq.grammar_state.matcher, mask_row))
    if plain or with_drafts:
        bitmask = torch.full((len(constrained), (vocab + 31) // 32), -1, dtype=torch.int32)  # [rows, words]
        if plain:
            llguidance.torch.fill_next_token_bitmask_par(_EXECUTOR, plain, bitmask)
        if with_drafts:
            llguidance.torch.fill_next_token_bitmask_par_with_draft_tokens(_EXECUTOR, with_drafts, bitmask)
        unpacked = _forbidden(bitmask, vocab)
        for mask_row, row in enumerate(constrained):
            forbidden_of.setdefault(row, unpacked[mask_row])
    for row, forbidden in forbidden_of.items():
        if logits.device.type == "cuda":
            forbidden = forbidden.pin_memory().to(logits.device, non_blocking=True)
        logits[row].masked_fill_(forbidden, float("-inf"))


def _forbidden(bitmask: torch.Tensor, vocab: int) -> torch.Tensor:
    """[rows, words] int32 bitmask (bit b of word w allows token 32w + b) -> [rows, vocab] bool, True
    where forbidden; numpy unpacks the bits in one pass (torch has no unpackbits)."""
    return torch.from_numpy(
        np.unpackbits(bitmask.numpy().view(np.uint8), axis=1, bitorder="little")[:, :vocab] == 0
    )


def _draft_rows(seqs: list[Sequence], first_row: int) -> int:
    """How many rows after `first_row` score drafts of the same sequence."""
    count = 0
    while first_row + count + 1 < len(seqs) and seqs[first_row + count + 1] is seqs[first_row]:
        count += 1
    return count
