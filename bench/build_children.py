"""Benchmark: building all child manifests of an InferenceDeployment (pure builders, no I/O).

Prints the median time to build the children of one spec, and the time for 1,000 distinct specs,
beside a same-run baseline (parsing the spec alone) so the builders' own share is visible.
Figures only; nothing here passes or fails on time.

    python bench/build_children.py [--repeat 200] [--specs 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from berth_operator.api import InferenceDeploymentSpec
from berth_operator.builders import BuildContext, Owner, build_children

BASE_SPEC: dict[str, Any] = {
    "model": {
        "name": "chat",
        "source": "hf://Qwen/Qwen2.5-7B-Instruct",
        "revision": "main",
        "maxModelLen": 8192,
    },
    "runtime": {
        "kvCache": {"gpuMemoryUtilization": 0.9, "prefixCaching": True},
        "speculative": {"method": "ngram", "numTokens": 4},
    },
    "resources": {"gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}, "cpu": "8", "memory": "64Gi"},
    "autoscaling": {"enabled": True, "maxReplicas": 8, "slo": {"timeToFirstTokenP95Milliseconds": 500}},
    "serving": {"apiKeySecretRef": {"name": "chat-key"}},
}


def _spec_variant(index: int) -> dict[str, Any]:
    variant = {
        **BASE_SPEC,
        "model": {**BASE_SPEC["model"], "name": f"chat-{index}"},
        "replicas": 1 + index % 4,
    }
    return variant


def _parse(raw: dict[str, Any]) -> InferenceDeploymentSpec:
    return InferenceDeploymentSpec.model_validate(raw)


def _build(raw: dict[str, Any], index: int) -> list[dict[str, Any]]:
    context = BuildContext(
        owner=Owner(f"chat-{index}", "ml", f"uid-{index}"),
        spec=_parse(raw),
        replicas=raw.get("replicas", 1),
        default_runtime_image="ghcr.io/berth-dev/berth-runtime:0.1.0",
    )
    return build_children(context)


def _median_seconds(work: Any, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="samples for the per-spec median")
    parser.add_argument("--specs", type=int, default=1000, help="distinct specs for the batch figure")
    args = parser.parse_args()

    _build(BASE_SPEC, 0)  # warm-up: imports, pydantic schema caches
    parse_only = _median_seconds(lambda: _parse(BASE_SPEC), args.repeat)
    build_one = _median_seconds(lambda: _build(BASE_SPEC, 0), args.repeat)
    variants = [_spec_variant(index) for index in range(args.specs)]
    each: list[float] = []
    started = time.perf_counter()
    for index, raw in enumerate(variants):
        began = time.perf_counter()
        _build(raw, index)
        each.append(time.perf_counter() - began)
    batch = time.perf_counter() - started
    each.sort()

    print(f"baseline: parse one spec (pydantic)         median {parse_only * 1e6:8.1f} us")
    print(f"build all children of one spec (incl. parse) median {build_one * 1e6:8.1f} us")
    print(
        f"build all children of {args.specs} specs          total  {batch * 1e3:8.1f} ms "
        f"(per spec: median {statistics.median(each) * 1e6:.1f} us, "
        f"p99 {each[int(len(each) * 0.99) - 1] * 1e6:.1f} us)"
    )
    print(f"host load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
