"""A tensor-parallel worker process (ranks 1..N-1): joins the group, builds its shard of the model
and KV cache exactly as rank 0 does (`engine.builder.build_model_shard`), then runs every step rank
0 broadcasts until told to stop.

A worker must never outlive rank 0: a thread waits on the parent's sentinel and ends the process the
moment rank 0 is gone (whatever killed it), so no orphan holds a GPU or blocks in a collective. It
leaves rank 0's process group: a signal sent to the whole group (Ctrl-C in a terminal, `timeout`, an
init that forwards SIGTERM to the group) must start rank 0's drain, which still needs the workers,
not kill them under it; rank 0 stops them itself when it is done.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from pathlib import Path

import torch

from berth_runtime.config import RuntimeConfig
from berth_runtime.engine.model_shard import build_model_shard
from berth_runtime.models.checkpoint import open_checkpoint
from berth_runtime.parallel.group import join_group, leave_group
from berth_runtime.parallel.step_channel import StepChannel

logger = logging.getLogger(__name__)

#: Exit status of a worker whose rank 0 went away.
PARENT_GONE_EXIT_CODE = 3


def run_worker(config: RuntimeConfig, rank: int, store_port: int) -> None:
    """The worker's whole life (the spawn target)."""
    os.setpgrp()
    _exit_with_parent()
    logging.basicConfig(
        level=logging.DEBUG if config.log_level == "trace" else config.log_level.upper(),
        format=f"%(asctime)s %(levelname)s rank {rank} %(name)s: %(message)s",
    )
    if config.device == "cpu":  # the ranks share the machine's cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.tensor_parallel_size))
    group = join_group(rank, config.tensor_parallel_size, store_port, str(config.device))
    shard = build_model_shard(config, open_checkpoint(Path(config.model)), group)
    channel = StepChannel(group)
    logger.info("rank %d ready: %d KV blocks", rank, shard.num_kv_blocks)
    while (plan := channel.receive()) is not None:
        shard.runner.execute(plan)
    leave_group()
    logging.shutdown()
    # Nothing is left to flush, and the interpreter's teardown of torch takes seconds here.
    os._exit(0)


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def wait() -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(PARENT_GONE_EXIT_CODE)

    threading.Thread(target=wait, name="berth-parent-watch", daemon=True).start()
