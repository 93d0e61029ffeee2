"""Decode steps on static buffers, replayed from CUDA graphs (one per batch-size bucket).

A decode step's kernels are small and many (several per layer), so at small batch their launch gaps,
not memory bandwidth, set the step time; a CUDA graph replays the whole step with one launch. A graph
fixes every address and shape, so the step's inputs live in static buffers sized for the largest
bucket: a batch of n rows runs the smallest bucket >= n, and the padding rows get slot -1 (their K/V
are written nowhere) and context length 0 (their attention is zeros). The block-table width is
max_model_len / block_size and `decode_max_context_len` is max_model_len, which fixes the attention
kernel's partition count. Capture happens at start-up after a warm-up step per bucket (Triton
compiles on first call, outside the capture); prefill and speculative multi-token rows run eager.

Only the kernel layer ops take padding rows (the torch reference takes no negative slot and no
empty context), so this runs only for a model whose every decode step is on the kernels
(`model.supports_decode_graphs`). With `capture=False` the same static-buffer step runs eagerly: the
CPU tests drive it through the Triton interpreter.
"""

from __future__ import annotations

import torch

from berth_runtime.engine.attention_metadata import AttentionMetadata
from berth_runtime.models.interface import CausalLM, KVCache


def batch_buckets(max_batch_size: int) -> list[int]:
    """1, 2, 4, 8, ... below `max_batch_size`, then `max_batch_size` itself."""
    buckets = []
    size = 1
    while size < max_batch_size:
        buckets.append(size)
        size *= 2
    return [*buckets, max_batch_size]


class DecodeGraphs:
    def __init__(
        self,
        model: CausalLM,
        kv_caches: list[KVCache],
        block_size: int,
        max_model_len: int,
        max_batch_size: int,
        device: torch.device,
        capture: bool,
    ) -> None:
        if not model.supports_decode_graphs:
            raise ValueError(
                "decode graphs need the kernel layer ops (padding rows) for every step of the decode; "
                "the model runs some on the torch references"
            )
        self.model = model
        self.kv_caches = kv_caches
        self.max_model_len = max_model_len
        self.buckets = batch_buckets(max_batch_size)
        self.capture = capture
        largest = self.buckets[-1]
        self.table_width = -(-max_model_len // block_size)
        self.tokens = torch.zeros(largest, dtype=torch.int64, device=device)
        self.positions = torch.zeros(largest, dtype=torch.int64, device=device)
        self.slots = torch.full((largest,), -1, dtype=torch.int64, device=device)
        self.block_tables = torch.zeros(largest, self.table_width, dtype=torch.int64, device=device)
        self.context_lens = torch.zeros(largest, dtype=torch.int64, device=device)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def _metadata(self, bucket: int) -> AttentionMetadata:
        return AttentionMetadata(
            slot_mapping=self.slots[:bucket],
            decode_start=0,
            decode_block_tables=self.block_tables[:bucket],
            decode_context_lens=self.context_lens[:bucket],
            decode_max_context_len=self.max_model_len,
        )

    def _forward(self, bucket: int) -> torch.Tensor:
        return self.model(
            self.tokens[:bucket], self.positions[:bucket], self.kv_caches, self._metadata(bucket)
        )

    @torch.inference_mode()
    def capture_all(self) -> None:
        """Warms up and captures every bucket, largest first, sharing one memory pool. The static
        buffers hold only padding rows meanwhile, so the KV cache is left untouched."""
        if not self.capture:
            return
        pool = None
        for bucket in reversed(self.buckets):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._forward(bucket)  # compiles the kernels outside the capture
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                hidden = self._forward(bucket)
            pool = graph.pool()
            self._graphs[bucket] = (graph, hidden)
        torch.cuda.synchronize()

    def bucket_for(self, num_rows: int, max_blocks: int) -> int | None:
        """The bucket a decode-only step of `num_rows` rows runs in; None: run it eagerly."""
        if max_blocks > self.table_width:
            return None
        return next((bucket for bucket in self.buckets if bucket >= num_rows), None)

    def run(self, bucket: int, per_token: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
        """per_token: [3, n] (tokens, positions, slots); tables: [n, blocks + 1] (block ids, then the
        context length). Returns the hidden states of the n rows."""
        rows = per_token.shape[1]
        blocks = tables.shape[1] - 1
        self.tokens[:rows].copy_(per_token[0])
        self.positions[:rows].copy_(per_token[1])
        self.slots[:rows].copy_(per_token[2])
        self.slots[rows:bucket].fill_(-1)
        self.block_tables[:rows, :blocks].copy_(tables[:, :blocks])
        self.context_lens[:rows].copy_(tables[:, -1])
        self.context_lens[rows:bucket].zero_()
        captured = self._graphs.get(bucket)
        if captured is None:
            return self._forward(bucket)[:rows]
        graph, hidden = captured
        graph.replay()
        return hidden[:rows]
