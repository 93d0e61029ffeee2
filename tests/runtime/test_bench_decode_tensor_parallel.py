"""bench/decode.py --tensor-parallel-size on the CPU under gloo: the TP=2 engine is built as serve
builds it (a spawned worker), measured beside TP=1 from the same run, and its figures are the ones
the GPU check relies on -- each rank streams about half the bytes, and the aggregate share is
N x rank bytes / step time over N x the copy bandwidth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tensor_parallel_decode_bench_runs_tp2_beside_tp1_on_the_cpu(tmp_path: Path) -> None:
    report_path = tmp_path / "decode-tp.json"
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "runtime_image"), "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(ROOT / "bench" / "decode.py"), "--tensor-parallel-size", "2"]
    command += ["--shapes", "tiny", "--weights", "bf16", "--batches", "1,3", "--prompt-len", "8"]
    command += ["--new-tokens", "6", "--json", str(report_path)]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tensor_parallel_size 2 vs 1; weights float32" in result.stdout
    assert "max_model_len 30; prompt 8 + 6 new tokens (mean context 11)" in result.stdout
    assert "of the aggregate bandwidth (2 x" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["errors"] == []
    rows = {(row["tensor_parallel_size"], row["batch"]): row for row in report["results"]}
    assert sorted(rows) == [(1, 1), (1, 3), (2, 1), (2, 3)]
    for row in rows.values():
        assert row["tokens_per_s"] > 0
        share = row["rank_step_bytes"] / (row["decode_step_ms"] / 1e3) / report["copy_bandwidth_bytes_per_s"]
        assert row["aggregate_bandwidth_share"] == pytest.approx(share)
    for batch in (1, 3):  # weights, head and KV heads split in two; only the norms are replicated
        assert 0.45 < rows[(2, batch)]["rank_step_bytes"] / rows[(1, batch)]["rank_step_bytes"] < 0.55
