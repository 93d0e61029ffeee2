"""The synchronous engine: add requests, abort them, and `step()` = schedule -> run -> postprocess.

Single-threaded by design; `AsyncEngine` drives it from one worker thread.
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
        self._sequences: dict[str, Sequence] = {}
        self._arrivals = 0

    def add_request(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams) -> None:
        """Queues a request (the caller has checked its length against max_model_len)."""
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
        rows = self.scheduler.schedule()
        if not rows:
            return []
        result = self.runner.run(rows)
        for row in rows:
            row.seq.num_computed_tokens += row.num_new_tokens
            self.block_manager.cache_full_blocks(row.seq)
        if not result.sampling_seqs:
            return []
        token_ids, logprobs = self.sampler(result.logits, result.sampling_seqs)
        outputs = []
        for seq, token_id, logprob in zip(result.sampling_seqs, token_ids, logprobs, strict=True):
            reason = self.output_processor.append_token(seq, token_id, logprob)
            if reason is not None:
                self.scheduler.finish(seq, reason)
                del self._sequences[seq.request_id]
            outputs.append(self.output_processor.make_output(seq))
        return outputs

    def stats(self) -> EngineStats:
        return EngineStats(
            num_running=len(self.scheduler.running),
            num_waiting=len(self.scheduler.waiting),
            kv_cache_usage=self.block_manager.usage,
            prefix_cache_queries=self.block_manager.prefix_cache_queries,
            prefix_cache_hits=self.block_manager.prefix_cache_hits,
            num_preemptions=self.scheduler.num_preemptions,
        )
