"""Triton kernels for the GPU build of the runtime, each behind a wrapper that checks its arguments,
and the torch reference they are measured against.

Every kernel module holds one kernel (or one kernel family) and its checking wrapper;
``torch_reference`` holds, once, the plain-PyTorch function for every op, which defines what the
kernel must compute and is what the model runs where no kernel can (the CPU build). Tests compare
each kernel with it under ``TRITON_INTERPRET=1`` on the CPU and natively on CUDA. The KV cache layout
throughout is ``[num_blocks, block_size, num_kv_heads, head_dim]`` per layer.

Kernels: ``rms_norm`` (plain and fused with the residual add), ``rotary`` (rotate-half RoPE on q and
k in place), ``rotary_kv_store`` (RoPE fused with the cache write), ``activation`` (SiLU-and-multiply),
``kv_cache_store`` (paged cache write by slot), ``paged_attention`` (decode over the paged cache,
GQA, split long contexts), ``prefill_attention`` (chunked prefill over the paged cache via SDPA),
``weight_only_linear`` (int8 / fp8 weights with per-channel scales), ``int4_linear`` (AWQ / GPTQ /
compressed-tensors 4-bit weights as stored), ``fused_moe`` (grouped expert matmuls over all experts),
``flash_prefill`` (soft-capped, optionally windowed prefill attention). ``layer_ops`` wraps them with
the reference's signatures, so the model switches to them by table.
"""
