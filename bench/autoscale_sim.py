"""Autoscaling simulation: berth's SLO policy (the operator's own `decide`) against today's
autoscalers, on the same traces, replicas, cold starts and Prometheus-like metrics.

    python bench/autoscale_sim.py [--base-rate 6] [--cold-start 90] [--min-replicas 1] [--trace NAME]

Prints one table: share of requests within the TTFT and ITL targets, p95 TTFT, GPU-hours, scale
events and direction changes, per trace and autoscaler. Figures, not a pass/fail.

The loop, every `--dt` seconds: route arrivals to the Ready replica with the fewest outstanding
requests (a least-requests gateway), step every Ready replica, scrape every 10 s, and let each
autoscaler decide at its own interval. A new replica holds its GPU from the moment it is created
and serves after the cold start; a removed one stops taking requests and leaves once drained.
"""

from __future__ import annotations

import argparse
import math
from collections import deque
from dataclasses import dataclass, replace

import numpy as np
from autoscale_metrics import MetricStore
from autoscale_scalers import BerthScaler, Scaler, all_scalers
from autoscale_serving import FinishedRequest, Replica, ReplicaModel
from autoscale_traces import Trace, standard_traces

from berth_operator.autoscaling.capacity import SloTargets
from berth_operator.autoscaling.policy import ReplicaCounts


@dataclass
class Outcome:
    ttft_met: float
    itl_met: float
    ttft_p95: float
    gpu_hours: float
    scale_events: int
    direction_changes: int
    peak_replicas: int


class Cluster:
    def __init__(self, model: ReplicaModel, initial: int) -> None:
        self.model = model
        self.replicas = [Replica(model, ready_at=0.0) for _ in range(initial)]

    def serving(self) -> list[Replica]:
        return [r for r in self.replicas if not r.draining]

    def counts(self, now: float) -> ReplicaCounts:
        serving = self.serving()
        return ReplicaCounts(desired=len(serving), ready=sum(r.ready_at <= now for r in serving))

    def scale(self, now: float, target: int) -> None:
        serving = self.serving()
        for _ in range(target - len(serving)):
            self.replicas.append(Replica(self.model, ready_at=now + self.model.cold_start_seconds))
        surplus = len(serving) - target
        if surplus > 0:
            # Pods still starting go first, then the Ready ones with the least in flight.
            for replica in sorted(serving, key=lambda r: (r.ready_at <= now, r.outstanding))[:surplus]:
                replica.draining = True

    def route(self, now: float, request: tuple[float, int, int]) -> bool:
        ready = [r for r in self.serving() if r.ready_at <= now]
        if not ready:
            return False
        min(ready, key=lambda r: r.outstanding).waiting.append(request)
        return True


def simulate(
    trace: Trace,
    scaler: Scaler,
    model: ReplicaModel,
    slo: SloTargets,
    dt: float,
    initial: int,
    latency_window: float = 60.0,
    rate_window: float = 30.0,
) -> Outcome:
    cluster = Cluster(model, initial)
    store = MetricStore(latency_window_seconds=latency_window, rate_window_seconds=rate_window)
    finished: list[FinishedRequest] = []
    pending: deque[tuple[float, int, int]] = deque()  # arrived while no replica was Ready
    next_arrival = 0
    gpu_seconds = 0.0
    trajectory = [initial]
    end = trace.duration_seconds + 180.0
    steps = int(end / dt)
    scrape_every = round(10.0 / dt)
    decide_every = round(scaler.interval_seconds / dt)
    for step in range(steps):
        now = step * dt
        while next_arrival < len(trace.arrivals) and trace.arrivals[next_arrival] < now + dt:
            pending.append(
                (
                    float(trace.arrivals[next_arrival]),
                    int(trace.prompt_tokens[next_arrival]),
                    int(trace.output_tokens[next_arrival]),
                )
            )
            next_arrival += 1
        while pending and cluster.route(now, pending[0]):
            pending.popleft()
        for replica in cluster.replicas:
            if replica.ready_at <= now:
                replica.step(now, dt, finished)
        cluster.replicas = [r for r in cluster.replicas if not (r.draining and r.outstanding == 0)]
        gpu_seconds += len(cluster.replicas) * dt
        if step % scrape_every == 0:
            store.scrape(now, cluster.replicas)
        if step % decide_every == 0 and step > 0:
            target = scaler.desired(now, store.signals(now), cluster.counts(now))
            if target != cluster.counts(now).desired:
                cluster.scale(now, target)
                trajectory.append(target)
    return _outcome(trace, finished, slo, gpu_seconds, trajectory)


def _outcome(
    trace: Trace, finished: list[FinishedRequest], slo: SloTargets, gpu_seconds: float, trajectory: list[int]
) -> Outcome:
    total = len(trace.arrivals)
    ttft = np.array([f.ttft for f in finished] + [math.inf] * (total - len(finished)))
    itl = np.array([f.mean_itl for f in finished] + [math.inf] * (total - len(finished)))
    steps = np.diff(trajectory)
    signs = np.sign(steps[steps != 0])
    return Outcome(
        ttft_met=float((ttft <= (slo.ttft_p95_seconds or math.inf)).mean()),
        itl_met=float((itl <= (slo.itl_p95_seconds or math.inf)).mean()),
        ttft_p95=float(np.percentile(ttft, 95)),
        gpu_hours=gpu_seconds / 3600.0,
        scale_events=len(signs),
        direction_changes=int((np.diff(signs) != 0).sum()) if len(signs) > 1 else 0,
        peak_replicas=max(trajectory),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base-rate", type=float, default=6.0, help="requests/s of the base load (default 6)"
    )
    parser.add_argument(
        "--cold-start", type=float, default=90.0, help="seconds from scale-up to Ready (default 90)"
    )
    parser.add_argument("--ttft-ms", type=float, default=500.0, help="TTFT p95 target (default 500)")
    parser.add_argument("--itl-ms", type=float, default=50.0, help="ITL p95 target (default 50)")
    parser.add_argument("--min-replicas", type=int, default=1, help="every autoscaler's floor (default 1)")
    parser.add_argument("--max-replicas", type=int, default=16)
    parser.add_argument("--dt", type=float, default=0.1, help="simulation step, seconds (default 0.1)")
    parser.add_argument("--trace", action="append", help="run only traces with this name (repeatable)")
    parser.add_argument("--rate-window", type=float, default=30.0, help="rate() window, seconds (default 30)")
    parser.add_argument("--reasons", action="store_true", help="print berth's scale decisions")
    args = parser.parse_args()

    model = replace(ReplicaModel(), cold_start_seconds=args.cold_start)
    slo = SloTargets(ttft_p95_seconds=args.ttft_ms / 1000, itl_p95_seconds=args.itl_ms / 1000)
    print(
        f"replica: 8B shape on one H200 (step {model.step_base * 1e3:.1f} ms + "
        f"{model.step_per_sequence * 1e6:.0f} us/seq + "
        f"{model.step_per_prefill_token * 1e6:.0f} us/prompt token, "
        f"batch {model.max_batch}), cold start {model.cold_start_seconds:.0f}s, scrape 10s, "
        f"targets TTFT p95 {args.ttft_ms:.0f}ms ITL p95 {args.itl_ms:.0f}ms, "
        f"replicas {args.min_replicas}..{args.max_replicas}"
    )
    header = (
        f"{'trace':<10} {'autoscaler':<24} {'TTFT ok':>8} {'ITL ok':>8} {'p95 TTFT':>9} "
        f"{'GPU-h':>7} {'events':>7} {'dir chg':>8} {'peak':>5}"
    )
    print(header)
    print("-" * len(header))
    for trace in standard_traces(args.base_rate):
        if args.trace and trace.name not in args.trace:
            continue
        for scaler in all_scalers(args.min_replicas, args.max_replicas, slo):
            outcome = simulate(
                trace,
                scaler,
                model,
                slo,
                args.dt,
                initial=max(trace.initial_replicas, args.min_replicas),
                rate_window=args.rate_window,
            )
            print(
                f"{trace.name:<10} {scaler.name:<24} {outcome.ttft_met:>8.2%} {outcome.itl_met:>8.2%} "
                f"{outcome.ttft_p95 * 1000:>7.0f}ms {outcome.gpu_hours:>7.2f} {outcome.scale_events:>7} "
                f"{outcome.direction_changes:>8} {outcome.peak_replicas:>5}",
                flush=True,
            )
            if args.reasons and isinstance(scaler, BerthScaler):
                for reason in scaler.reasons:
                    print(f"    {reason}")


if __name__ == "__main__":
    main()
