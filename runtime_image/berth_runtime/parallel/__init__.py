"""Tensor parallelism: one model across the GPUs of a pod (`--tensor-parallel-size`).

Rank 0 is the server process (HTTP, tokenizer, scheduler, block manager, sampler); ranks 1..N-1 are
worker processes it spawns (`launcher`), each holding one shard of every weight and its own KV heads.
Each step rank 0 broadcasts the step's inputs (`step_channel`), every rank runs its shard of the
forward (`group` carries the all-reduces and the logits gather), and rank 0 samples. `sharding` is
the arithmetic of who holds which heads, columns and vocabulary rows, and the start-up check that a
model can be split that way at all.
"""
