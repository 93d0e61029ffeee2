"""The collectives of a tensor-parallel step, over one `torch.distributed` group per process.

The groups join at start-up: the device group (NCCL on CUDA, gloo on the CPU) carries the model's
all-reduces and the logits gather, so on CUDA they are device-to-device and can be captured in a
CUDA graph; gloo groups over the same ranks carry host tensors, so they need no device copy and no
sync on the workers: one for the step's inputs (`step_channel`), whose wait for the next step must
outlast any idle spell, and (on CUDA) one for start-up agreements, bounded like the device group's
collectives. Rank 0 creates the rendezvous store on a free port and hands the port to the workers
(`launcher`).

A sharded model holds its `TensorShard` (its slices' layout and this group) explicitly, never a
global parallel state, so a single-GPU model has none and runs exactly as before.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import cast

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import Store, TCPStore  # what torch.distributed re-exports

from berth_runtime.parallel.sharding import ShardLayout

#: How long a collective may wait for a peer before it fails. Rank 0's watcher (`launcher`) ends the
#: server long before this when a worker dies; this bounds the rest (a peer stuck, not dead).
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)
#: How long a worker waits for rank 0's next step: as long as the server stays idle, so in effect
#: never (a gloo wait past its group's timeout fails, which would end an idle server). Rank 0's death
#: ends the wait through the worker's parent watch. Finite: gloo adds it to the clock in nanoseconds.
STEP_WAIT_TIMEOUT = datetime.timedelta(days=365 * 50)


class ShardGroup:
    """This process's rank in the tensor-parallel group, and the collectives the model calls."""

    def __init__(self, rank: int, world_size: int, device: torch.device) -> None:
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.host_group: dist.ProcessGroup | None = None
        """The gloo group for host tensors (`agree_min`); the default group on the CPU."""
        self.step_group: dist.ProcessGroup | None = None
        """The gloo group of the step channel, whose waits last as long as the server is idle
        (`STEP_WAIT_TIMEOUT`)."""

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sums `tensor` over the ranks in place (a row-parallel linear's partial outputs)."""
        dist.all_reduce(tensor)
        return tensor

    def gather_vocab(self, local: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """local: [rows, vocab_per_rank] (each rank's rows of the vocabulary, padded to one width) ->
        [rows, vocab_size] on every rank."""
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local.contiguous())
        return torch.cat(parts, dim=-1)[:, :vocab_size]

    def agree_min(self, value: int) -> int:
        """The smallest of every rank's `value` (the KV-cache block count they can all hold)."""
        tensor = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN, group=self.host_group)
        return int(tensor.item())

    def broadcast_host(self, tensor: torch.Tensor) -> None:
        """Rank 0's CPU `tensor` into every rank's (same shape and dtype); a worker waits for it as
        long as rank 0 sends nothing."""
        dist.broadcast(tensor, src=0, group=self.step_group)


@dataclass(frozen=True)
class TensorShard:
    """What a sharded model is built with: which slices it holds, and the group it reduces over."""

    layout: ShardLayout
    group: ShardGroup


def join_group(rank: int, world_size: int, store_port: int, device_type: str) -> ShardGroup:
    """Joins the rendezvous at 127.0.0.1:`store_port` (rank 0 hosts it) and both groups; on CUDA
    binds this process to GPU `rank` first, one GPU per rank."""
    if device_type == "cuda":
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    else:
        device = torch.device("cpu")
    store = TCPStore("127.0.0.1", store_port, world_size, is_master=False, timeout=COLLECTIVE_TIMEOUT)
    return _init(rank, world_size, store, device)


def create_store(world_size: int) -> TCPStore:
    """Rank 0: the rendezvous store, on a free port (its `port`), for the workers to join."""
    return TCPStore(
        "127.0.0.1", 0, world_size, is_master=True, timeout=COLLECTIVE_TIMEOUT, wait_for_workers=False
    )


def join_as_host(store: TCPStore, world_size: int, device_type: str) -> ShardGroup:
    """Rank 0 joins both groups on its own store; blocks until every worker has joined."""
    if device_type == "cuda":
        torch.cuda.set_device(0)
    device = torch.device("cuda", 0) if device_type == "cuda" else torch.device("cpu")
    return _init(0, world_size, store, device)


def _init(rank: int, world_size: int, store: Store, device: torch.device) -> ShardGroup:
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend, store=store, rank=rank, world_size=world_size, timeout=COLLECTIVE_TIMEOUT,
        device_id=device if device.type == "cuda" else None,
    )  # fmt: skip
    group = ShardGroup(rank, world_size, device)
    if device.type == "cuda":
        group.host_group = cast(dist.ProcessGroup, dist.new_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT))
    group.step_group = cast(dist.ProcessGroup, dist.new_group(backend="gloo", timeout=STEP_WAIT_TIMEOUT))
    return group


def leave_group() -> None:
    """Tears the groups down (a clean stop; a dead peer ends the process instead)."""
    if dist.is_initialized():
        dist.destroy_process_group()
