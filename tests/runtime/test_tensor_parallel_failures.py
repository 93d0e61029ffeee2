"""A step that fails on rank 0 after the workers started it ends the server: the workers wait in a
collective rank 0 will never join, so serving on would pair the wrong collectives of later steps.
(The worker-death side is live, in test_tensor_parallel_server.py.)"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NoReturn

import pytest
from engine_reference import engine_config, greedy, make_engine

from berth_runtime.engine.scheduler import ScheduledRow
from berth_runtime.engine.sequence import Sequence
from berth_runtime.engine.step_plan import StepPlan
from berth_runtime.parallel import launcher


class RecordingChannel:
    def __init__(self) -> None:
        self.sent: list[StepPlan] = []

    def send(self, plan: StepPlan) -> None:
        self.sent.append(plan)

    def abandon(self, error: BaseException) -> NoReturn:
        raise SystemExit(f"abandoned: {error}")


def test_a_step_failing_after_its_broadcast_abandons_the_group(
    tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = make_engine(tiny_llama_dir).runner
    channel = RecordingChannel()
    runner.channel = channel  # type: ignore[assignment]

    def out_of_memory(plan: StepPlan) -> None:
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(runner, "execute", out_of_memory)
    seq = Sequence("a", [0, 5, 6], greedy(1), arrival=0)
    seq.block_table = [0]
    with pytest.raises(SystemExit, match="abandoned: CUDA out of memory"):
        runner.run([ScheduledRow(seq, 3)])
    assert len(channel.sent) == 1 and channel.sent[0].per_token[0].tolist() == [0, 5, 6]


def test_a_step_whose_broadcast_fails_part_way_abandons_the_group(tiny_llama_dir: Path) -> None:
    """The header reached the workers but the payload did not (a gloo timeout): the workers would read
    the next step's header as this step's payload, so the step abandons like a failed execute."""
    runner = make_engine(tiny_llama_dir).runner

    class HalfSentChannel(RecordingChannel):
        def send(self, plan: StepPlan) -> None:
            raise RuntimeError("gloo: timed out broadcasting the step's payload")

    runner.channel = HalfSentChannel()  # type: ignore[assignment]
    seq = Sequence("a", [0, 5, 6], greedy(1), arrival=0)
    seq.block_table = [0]
    with pytest.raises(SystemExit, match="abandoned: gloo: timed out"):
        runner.run([ScheduledRow(seq, 3)])


def test_abandoning_ends_the_process_with_exit_1_saying_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def exit_code(code: int) -> NoReturn:
        raise SystemExit(code)

    monkeypatch.setattr(launcher.os, "_exit", exit_code)
    with caplog.at_level(logging.CRITICAL), pytest.raises(SystemExit) as exited:
        launcher.WorkerPool([]).abandon(RuntimeError("CUDA out of memory"))
    assert exited.value.code == 1
    assert "failed on rank 0 after the workers started it (RuntimeError('CUDA out of memory'))" in caplog.text
    assert "the ranks are out of step" in caplog.text


def test_a_build_that_fails_on_rank_0_releases_its_workers_and_group(tiny_llama_dir: Path) -> None:
    """Rank 0 refuses a KV cache too small for one context after its workers joined: the workers are
    ended and rank 0 leaves the process group, so the process can build a tensor-parallel engine
    again (bench/decode_tp and the tests build several in one process)."""
    import torch.distributed as dist

    from berth_runtime.engine.builder import build_engine

    pools: list[launcher.WorkerPool] = []
    start_workers = launcher.start_workers

    def recording_start(config: object) -> launcher.WorkerPool:
        pool = start_workers(config)  # type: ignore[arg-type]
        pools.append(pool)
        return pool

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("berth_runtime.engine.builder.start_workers", recording_start)
        config = engine_config(tiny_llama_dir, tensor_parallel_size=2, kv_cache_blocks=1, max_model_len=64)
        with pytest.raises(ValueError, match="the KV cache holds 1 blocks"):
            build_engine(config)
    (pool,) = pools
    assert all(not process.is_alive() for process in pool.processes)
    assert not dist.is_initialized()
    built = build_engine(
        engine_config(tiny_llama_dir, tensor_parallel_size=2, kv_cache_blocks=16, max_model_len=64)
    )
    try:
        assert built.workers is not None and all(process.is_alive() for process in built.workers.processes)
    finally:
        assert built.workers is not None
        built.workers.stop()
