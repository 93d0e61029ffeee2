"""Rank 0 starts the tensor-parallel workers and watches them.

Workers are spawned (never forked: a forked CUDA context or a forked thread holding a lock breaks
the child), each with its rank and the rendezvous port; rank 0 then joins the groups, which blocks
until every worker has. A watcher thread waits on the workers' sentinels: a worker that exits while
the server still needs it (a crash, the OOM killer, a kill -9) ends the server within moments with a
message naming the rank and its exit status, because the step it was part of can never finish -- a
collective would wait for it until its timeout. The pod then restarts, as for any fatal error.

The other direction is the workers' own concern (`worker`): each exits when rank 0 dies.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from multiprocessing.process import BaseProcess
from typing import NoReturn, cast

from berth_runtime.config import RuntimeConfig
from berth_runtime.parallel.group import ShardGroup, create_store, join_as_host, leave_group
from berth_runtime.parallel.step_channel import StepChannel
from berth_runtime.parallel.worker import run_worker

logger = logging.getLogger(__name__)

#: Seconds a worker gets to leave after a stop or SIGTERM before it is killed.
STOP_GRACE_SECONDS = 5.0
#: The server's exit status when a worker dies under it or a step fails half-way (a fatal runtime
#: error, not a usage error).
FATAL_EXIT_CODE = 1


class WorkerPool:
    """Rank 0's workers (ranks 1..N-1) and its own place in their group."""

    def __init__(self, processes: list[BaseProcess]) -> None:
        self.processes = processes
        self.group: ShardGroup
        self.channel: StepChannel
        """Rank 0's end of the step broadcast; a step that fails on rank 0 ends the server."""
        self._stopping = threading.Event()

    def watch(self) -> None:
        """Watcher thread: ends the server when a worker exits unasked."""
        sentinels = {process.sentinel: rank for rank, process in enumerate(self.processes, start=1)}
        while sentinels:
            ready = multiprocessing.connection.wait(list(sentinels))
            if self._stopping.is_set():
                return
            for sentinel in ready:
                rank = sentinels.pop(cast(int, sentinel))
                self._fail(rank, self.processes[rank - 1])

    def _fail(self, rank: int, process: BaseProcess) -> None:
        process.join(STOP_GRACE_SECONDS)  # reaps it: the sentinel fires before the exit status is read
        code = process.exitcode
        status = f"exit code {code}"
        if code is not None and code < 0:
            status = f"signal {signal.Signals(-code).name}"
        self._exit(
            f"tensor-parallel worker rank {rank} (pid {process.pid}) exited with {status}; the model "
            f"cannot run without its shard: the server exits ({FATAL_EXIT_CODE})"
        )

    def abandon(self, error: BaseException) -> NoReturn:
        """A step failed on rank 0 after the workers started it: they wait in a collective rank 0 will
        never join, and every later step would pair the wrong collectives, so the server ends."""
        self._exit(
            f"a tensor-parallel step failed on rank 0 after the workers started it ({error!r}): the "
            f"ranks are out of step, the server exits ({FATAL_EXIT_CODE})"
        )

    def _exit(self, message: str) -> NoReturn:
        logger.critical("%s", message)
        self.terminate()
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        os._exit(FATAL_EXIT_CODE)  # the engine thread may be inside a collective that never returns

    def terminate(self) -> None:
        """Ends every worker (SIGTERM, then SIGKILL after `STOP_GRACE_SECONDS`); no step may run after."""
        self._stopping.set()
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(STOP_GRACE_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()

    def stop(self) -> None:
        """A clean stop between steps: the workers leave their loop, then rank 0 leaves the group."""
        self._stopping.set()
        if all(process.is_alive() for process in self.processes):
            self.channel.send_stop()
        for process in self.processes:
            process.join(STOP_GRACE_SECONDS)
        codes = [process.exitcode for process in self.processes]
        logger.info("tensor-parallel workers stopped, exit codes %s", codes)
        self.release()

    def release(self) -> None:
        """Ends the workers (`terminate`) and leaves the group; also after a start-up that failed,
        where no step ran, so this process can start another group (bench and tests build several)."""
        self.terminate()
        atexit.unregister(self.terminate)
        leave_group()


def start_workers(config: RuntimeConfig) -> WorkerPool:
    """Spawns ranks 1..N-1 and joins the group as rank 0; returns once every rank is in it."""
    world_size = config.tensor_parallel_size
    store = create_store(world_size)
    context = multiprocessing.get_context("spawn")
    processes: list[BaseProcess] = []
    for rank in range(1, world_size):
        process = context.Process(
            target=run_worker,
            args=(config, rank, store.port),
            name=f"berth-tensor-parallel-rank-{rank}",
            daemon=True,
        )
        process.start()
        logger.info("started tensor-parallel worker rank %d of %d (pid %s)", rank, world_size, process.pid)
        processes.append(process)
    pool = WorkerPool(processes)
    atexit.register(pool.terminate)
    threading.Thread(target=pool.watch, name="berth-tensor-parallel-watcher", daemon=True).start()
    try:
        pool.group = join_as_host(store, world_size, str(config.device))
    except BaseException:
        pool.release()
        raise
    pool.channel = StepChannel(pool.group, pool.abandon)
    return pool
