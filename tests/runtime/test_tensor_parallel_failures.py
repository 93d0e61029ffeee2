"""A step that fails on rank 0 after the workers started it ends the server: the workers wait in a
collective rank 0 will never join, so serving on would pair the wrong collectives of later steps.
(The worker-death side is live, in test_tensor_parallel_server.py.)"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NoReturn

import pytest
from engine_reference import greedy, make_engine

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
