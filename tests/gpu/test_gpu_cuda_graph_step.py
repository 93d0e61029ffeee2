"""A decode step of the model on the kernel-backed layer ops can be captured in one CUDA graph and
replayed with new tokens, positions, slots, block tables and context lengths (static buffers, a
fixed partition count from max_context_len, padding rows with slot -1 and context 0) — the shape
of the model runner's graph-captured decode. Replay must equal an eager step bit for bit."""

from __future__ import annotations

from pathlib import Path

import torch

from berth_runtime.engine.attention_metadata import AttentionMetadata
from berth_runtime.engine.model_runner import allocate_kv_caches
from berth_runtime.models.loader import load_model

BLOCK_SIZE = 16
MAX_CONTEXT = 256


def test_decode_step_replays_from_a_cuda_graph(tiny_llama_checkpoint: Path) -> None:
    device = torch.device("cuda")
    model = load_model(tiny_llama_checkpoint, torch.bfloat16, device, max_positions=1024)
    assert model.use_kernel_ops  # on CUDA the model runs the kernel layer ops
    num_blocks = 4 * MAX_CONTEXT // BLOCK_SIZE
    kv_caches = allocate_kv_caches(model, num_blocks, BLOCK_SIZE, torch.bfloat16, device)
    for key_cache, value_cache in kv_caches:  # some cached context to attend to
        key_cache.normal_()
        value_cache.normal_()
    batch, blocks_per_seq = 4, MAX_CONTEXT // BLOCK_SIZE
    tokens = torch.zeros(batch, dtype=torch.int64, device=device)
    positions = torch.zeros(batch, dtype=torch.int64, device=device)
    slots = torch.zeros(batch, dtype=torch.int64, device=device)
    tables = torch.zeros(batch, blocks_per_seq, dtype=torch.int64, device=device)
    lens = torch.zeros(batch, dtype=torch.int64, device=device)
    metadata = AttentionMetadata(
        slot_mapping=slots,
        decode_start=0,
        decode_block_tables=tables,
        decode_context_lens=lens,
        decode_max_context_len=MAX_CONTEXT,
    )

    def step() -> torch.Tensor:
        return model.compute_logits(model(tokens, positions, kv_caches, metadata))

    def load_inputs(seed: int, padded_rows: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        context = torch.randint(1, MAX_CONTEXT, (batch,), generator=generator)
        context[batch - padded_rows :] = 0
        tokens.copy_(torch.randint(3, 1024, (batch,), generator=generator))
        positions.copy_((context - 1).clamp(min=0))
        # every sequence owns distinct blocks, so no two tokens ever write the same slot
        tables.copy_(torch.randperm(num_blocks, generator=generator).view(batch, blocks_per_seq))
        last = (context - 1).clamp(min=0)
        slot = (
            tables.cpu().gather(1, (last // BLOCK_SIZE)[:, None]).squeeze(1) * BLOCK_SIZE + last % BLOCK_SIZE
        )
        slot[context == 0] = -1
        slots.copy_(slot)
        lens.copy_(context)

    with torch.inference_mode():
        load_inputs(0, padded_rows=0)
        step()  # compiles the kernels outside the capture
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = step()
        for seed, padded_rows in ((1, 0), (2, 1), (3, 2)):
            load_inputs(seed, padded_rows)
            graph.replay()
            replayed = captured.clone()
            eager = step()
            assert torch.equal(replayed, eager)
            assert torch.isfinite(replayed[: batch - padded_rows]).all()
