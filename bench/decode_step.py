"""berth's decode step alone, captured in one CUDA graph and replayed: the model-side floor of
decode (no scheduling, sampling or host work), as a share of the HBM-bandwidth limit.

For the 1B and 8B shapes of bench/decode.py (random weights; bf16, and int8 weight-only), batch 1,
8 and 64 at context 192 (prompt 128 plus half of 128 new tokens), it prints the replayed step time
with the model's torch reference layers and with the kernel layer ops (``kernels.layer_ops``), and
the share of the limit: (weight bytes + KV bytes the step reads) / step time / copy bandwidth.
The reference-layer run -- plain PyTorch, replayed from one captured CUDA graph -- is the baseline
printed beside the kernel run. This is what the engine reaches once its model runner captures
decode in CUDA graphs; figures from an H200 are in docs/gpu-results.md ("Profile: where a batch-1
step goes").

Needs CUDA. Usage: python bench/decode_step.py [--shapes 1b,8b] [--batches 1,8,64] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

# bench/ is this script's directory, hence on sys.path: the shapes and model builder are shared
from decode_models import (
    SHAPES,
    build_berth_model,
    device_copy_bandwidth,
    kv_bytes_per_token,
    model_config_dict,
    model_layers,
    streamed_weight_bytes,
)

from berth_runtime.engine.attention_metadata import AttentionMetadata
from berth_runtime.engine.model_runner import allocate_kv_caches
from berth_runtime.models.llama import LlamaForCausalLM

BLOCK_SIZE = 16
CONTEXT = 192
MAX_CONTEXT = 256


def captured_step_ms(model: LlamaForCausalLM, batch: int) -> float:
    """Milliseconds per replay of a captured decode step (mean of 100 after 10 warm-up replays)."""
    device = next(model.parameters()).device
    blocks_per_seq = MAX_CONTEXT // BLOCK_SIZE
    kv_caches = allocate_kv_caches(model, batch * blocks_per_seq, BLOCK_SIZE, torch.bfloat16, device)
    tokens = torch.randint(0, model.config.vocab_size, (batch,), device=device)
    positions = torch.full((batch,), CONTEXT - 1, dtype=torch.int64, device=device)
    tables = torch.arange(batch * blocks_per_seq, device=device).view(batch, blocks_per_seq)
    slots = tables[:, (CONTEXT - 1) // BLOCK_SIZE] * BLOCK_SIZE + (CONTEXT - 1) % BLOCK_SIZE
    lens = torch.full((batch,), CONTEXT, dtype=torch.int64, device=device)
    metadata = AttentionMetadata(
        slot_mapping=slots,
        decode_start=0,
        decode_block_tables=tables,
        decode_context_lens=lens,
        decode_max_context_len=MAX_CONTEXT,
    )

    def step() -> torch.Tensor:
        return model.compute_logits(model(tokens, positions, kv_caches, metadata))

    with torch.inference_mode():
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up (and kernel compilation) off the capture stream
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        for _ in range(10):
            graph.replay()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(100):
            graph.replay()
        end.record()
        torch.cuda.synchronize()
    return start.elapsed_time(end) / 100


def measure(
    model: LlamaForCausalLM, shape: str, weights: str, batches: list[int], bandwidth: float
) -> list[dict[str, Any]]:
    """Captured step time and share of the bandwidth limit, reference layers then kernel layer ops."""
    weight_bytes = streamed_weight_bytes(model)
    kv_per_token = kv_bytes_per_token(model_config_dict(shape))
    rows = []
    for layers in ("reference", "kernels"):
        with model_layers(model, layers):
            for batch in batches:
                label = f"{shape:>3} {weights:>4} {layers:>9} b{batch:<3}"
                try:
                    step_ms = captured_step_ms(model, batch)
                except RuntimeError as error:  # a layer that cannot be captured is a finding, not a crash
                    print(f"{label} not capturable: {error}", flush=True)
                    continue
                share = (weight_bytes + batch * CONTEXT * kv_per_token) / (step_ms * 1e-3) / bandwidth
                tokens_per_s = batch / step_ms * 1e3
                print(
                    f"{label} step {step_ms:7.3f} ms {tokens_per_s:9.0f} tok/s "
                    f"{100 * share:5.1f}% of the bandwidth limit",
                    flush=True,
                )
                rows.append(
                    {"shape": shape, "weights": weights, "layers": layers, "batch": batch}
                    | {"step_ms": step_ms, "bandwidth_share": share}
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default="1b,8b")
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--weights", default="bf16,int8")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/decode_step.py needs a CUDA GPU (torch.cuda.is_available() is False); nothing measured.")
        return 2
    shapes = [shape for shape in args.shapes.split(",") if shape]
    weights_list = [weights for weights in args.weights.split(",") if weights]
    batches = [int(batch) for batch in args.batches.split(",") if batch]
    if any(shape not in SHAPES for shape in shapes) or any(w not in ("bf16", "int8") for w in weights_list):
        parser.error(f"accepted: --shapes from {','.join(SHAPES)}, --weights from bf16,int8")
    device = torch.device("cuda")
    bandwidth = device_copy_bandwidth(device)
    print(
        f"GPU: {torch.cuda.get_device_name()}; copy bandwidth {bandwidth / 1e12:.2f} TB/s; context {CONTEXT}"
    )
    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name(), "copy_bandwidth": bandwidth, "steps": []}
    with tempfile.TemporaryDirectory() as workdir:
        for shape in shapes:
            for weights in weights_list:
                model = build_berth_model(shape, weights, device, Path(workdir))
                report["steps"] += measure(model, shape, weights, batches, bandwidth)
                if args.json:  # saved as it goes: a run cut short keeps what it measured
                    args.json.write_text(json.dumps(report, indent=2))
                del model
                gc.collect()
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
