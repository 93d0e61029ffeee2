"""The synchronous engine: add requests, abort them, and `step()` = schedule -> run -> postprocess.

Single-threaded by design; `AsyncEngine` drives it from one worker thread. With n-gram
speculation (`engine.speculation`) a greedy sequence may gain several tokens in one step.
"""

from __future__ import annotations

import torch

from berth_runtime.engine.block_manager import BlockManager
from berth_runtime.engine.model_runner import ModelRunner
from berth_runtime.engine.output_processor import OutputProcessor
from berth_runtime.engine.outputs import EngineStats, RequestOutput
from berth_runtime.engine.sampler import Sampler
from berth_runtime.engine.scheduler import Scheduler
from berth_runtime.engine.sequence import Sequence
from berth_runtime.engine.speculation import NgramSpeculator
from berth_runtime.sampling_params import SamplingParams
from berth_runtime.tokenizer import IncrementalDetokenizer, Tokenizer


class LLMEngine:
    def __init__(
        self,
        runner: ModelRunner,
        scheduler: Scheduler,
        tokenizer: Tokenizer | None,
        eos_token_ids: tuple[int, ...],
        max_model_len: int,
        seed: int,
        speculator: NgramSpeculator | None = None,
    ) -> None:
        self.runner = runner
        self.scheduler = scheduler
        self.block_manager: BlockManager = scheduler.block_manager
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.vocab_size = runner.model.config.vocab_size
        self.device = runner.device
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        self.sampler = Sampler(eos_token_ids, generator)
        self.output_processor = OutputProcessor(eos_token_ids, max_model_len)
        self.speculator = speculator
        self._sequences: dict[str, Sequence] = {}
        self._arrivals = 0

    def add_request(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams) -> None:
        """Queues a request (the caller has checked its length against max_model_len); raises
        InvalidParameter for a logit_bias token id outside the vocabulary."""
        params.check_logit_bias_ids(self.vocab_size)
        if request_id in self._sequences:
            raise ValueError(f"request id {request_id!r} is already in use")
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(params.seed & 0xFFFF_FFFF_FFFF_FFFF)
        detokenizer = IncrementalDetokenizer(self.tokenizer, prompt_token_ids) if self.tokenizer else None
        seq = Sequence(
            request_id=request_id,
            prompt_token_ids=list(prompt_token_ids),
            params=params,
            arrival=self._arrivals,
            detokenizer=detokenizer,
            generator=generator,
        )
        self._arrivals += 1
        self._sequences[request_id] = seq
        self.scheduler.add(seq)

    def abort_request(self, request_id: str) -> RequestOutput | None:
        """Stops a request and frees its KV blocks now; returns its final output, None if unknown."""
        seq = self._sequences.pop(request_id, None)
        if seq is None:
            return None
        self.scheduler.finish(seq, "abort")
        return self.output_processor.make_output(seq)

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished()

    def step(self) -> list[RequestOutput]:
        if self.speculator is not None:
            self.speculator.propose(self.scheduler.running)
        rows = self.scheduler.schedule()
        if not rows:
            return []
        result = self.runner.run(rows)
        for row in rows:
            if not row.seq.draft_token_ids:
                row.seq.num_computed_tokens += row.num_new_tokens
                self.block_manager.cache_full_blocks(row.seq)
        if not result.sampling_seqs:
            return []
        # A sequence with drafts has one logits row per position, the row after draft j counting
        # drafts 0..j as generated (penalties judge each position on its own history).
        row_seqs: list[Sequence] = []
        drafts_before: list[int] = []
        for seq, count in zip(result.sampling_seqs, result.logits_per_seq, strict=True):
            row_seqs += [seq] * count
            drafts_before += range(count)
        token_ids, logprobs = self.sampler(result.logits, row_seqs, drafts_before)
        outputs = []
        first_row = 0
        for seq, count in zip(result.sampling_seqs, result.logits_per_seq, strict=True):
            rows_of_seq = slice(first_row, first_row + count)
            first_row += count
            if seq.draft_token_ids:
                reason = self._append_speculated(seq, token_ids[rows_of_seq])
            else:
                reason = self.output_processor.append_token(
                    seq, token_ids[first_row - 1], logprobs[first_row - 1]
                )
            if reason is not None:
                self.scheduler.finish(seq, reason)
                del self._sequences[seq.request_id]
            outputs.append(self.output_processor.make_output(seq))
        return outputs

    def _append_speculated(self, seq: Sequence, target_token_ids: list[int]) -> str | None:
        """Appends the accepted drafts and the model's token after them (up to a finish), then rolls
        the computed-token count and the blocks back to the tokens the sequence really has."""
        assert self.speculator is not None  # only sequences of a speculating engine carry drafts
        accepted = self.speculator.accept(seq, target_token_ids)
        seq.draft_token_ids = []
        reason = None
        for token_id in accepted:
            reason = self.output_processor.append_token(seq, token_id, None)
            if reason is not None:
                return reason
        # The last real token and the accepted drafts now have KV; the model's own token does not.
        seq.num_computed_tokens = seq.num_tokens - 1
        self.block_manager.trim(seq)
        self.block_manager.cache_full_blocks(seq)
        return reason

    def stats(self) -> EngineStats:
        return EngineStats(
            num_running=len(self.scheduler.running),
            num_waiting=len(self.scheduler.waiting),
            kv_cache_usage=self.block_manager.usage,
            prefix_cache_queries=self.block_manager.prefix_cache_queries,
            prefix_cache_hits=self.block_manager.prefix_cache_hits,
            num_preemptions=self.scheduler.num_preemptions,
            spec_decode_num_draft_tokens=self.speculator.num_draft_tokens if self.speculator else 0,
            spec_decode_num_accepted_tokens=self.speculator.num_accepted_tokens if self.speculator else 0,
        )
