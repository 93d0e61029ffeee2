"""Autoscaling simulation: berth's SLO policy, driven through the operator's own evaluation and
status round trip, against today's autoscalers on the same traces, replicas, cold starts and
metrics.

    python -m bench.autoscale_sim [--base-rate 10] [--cold-start 90] [--trace NAME] [--jobs 2] [--seed 7]
                                  [--scrape-seconds 10] [--interval SECONDS] [--misses] [--reasons]

Prints one table: per trace and autoscaler, the share of requests within the TTFT and ITL
targets, p95 TTFT, GPU-hours, scale events, direction changes, scale-ins into a rising edge, and
the peak replica count; then, per trace, whether berth met the goal (at least the best baseline's
TTFT share, at no more GPU-hours than the baseline that attains the most). The oracle rows bound
what any policy reading these signals can reach. Figures, not a pass/fail. `--misses` adds, under
each row, where in time that run's requests over the TTFT target arrived (`autoscale_report`).

The loop, every `--dt` seconds: route arrivals to the Ready replica with the fewest outstanding
requests (a least-requests gateway), step every Ready replica, scrape every 10 s, record the
requests in flight every second (Knative's queue-proxy view), and let each autoscaler decide at
its own interval -- berth when its last evaluation said the next is due, just after the next
scrape lands, as the operator's daemon waits, and in between on its pod-sampling rounds (every
`podSampling.intervalSeconds` after an evaluation while a round's reads end before the next is due,
on the Ready replicas' gauges of that moment; `--pod-sampling 0` turns them off). berth's interval
and metrics window are the operator's defaults, read from the spec (`--interval` sets the spec's
`intervalSeconds` instead); the scrape interval is the chart's PodMonitor default
(`--scrape-seconds` changes it for every autoscaler that reads Prometheus). A new replica holds its
GPU from the moment it is created and serves after the cold start; a removed one stops taking
requests and leaves once drained.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bench.autoscale_baselines import HpaConcurrency, Kaito, KedaConcurrency, KnativeKpa
from bench.autoscale_berth import BerthScaler, Step, berth_spec, steps_to_json
from bench.autoscale_metrics import MetricStore
from bench.autoscale_oracle import DemandSeries, Oracle, clairvoyant
from bench.autoscale_report import Outcome, goal_line, misses_by_bin, misses_line, row_line
from bench.autoscale_serving import FinishedRequest, Replica, ReplicaModel, measured_replica
from bench.autoscale_traces import TRACE_SEED, Trace, standard_traces
from berth_operator.api import InferenceDeploymentSpec
from berth_operator.autoscaling.evaluation import max_sample_age_seconds
from berth_operator.autoscaling.live import PodSample
from berth_operator.autoscaling.pod_sampler import round_timeout_seconds
from berth_operator.autoscaling.policy import ReplicaCounts

SCRAPE_SECONDS = 10.0
"""The chart's PodMonitor interval for the runtime pods (`podMonitor.interval`), the default scrape."""
WARMUP_SECONDS = 60.0
"""No autoscaler acts before its windows have filled: the replicas at the start have served for a while."""


class Scaler(Protocol):
    name: str

    @property
    def interval_seconds(self) -> float: ...

    def desired(self, now: float, store: MetricStore, counts: ReplicaCounts) -> int: ...


@dataclass(frozen=True)
class Scenario:
    trace: Trace
    min_replicas: int

    @property
    def label(self) -> str:
        return self.trace.name if self.min_replicas == 1 else f"{self.trace.name} min{self.min_replicas}"


@dataclass(frozen=True)
class Settings:
    base_rate: float
    cold_start: float
    ttft_ms: int
    itl_ms: int
    max_replicas: int
    target_concurrency: float
    dt: float
    scrape_seconds: float = SCRAPE_SECONDS
    interval_seconds: int | None = None
    """berth's evaluation interval; None: the API's default."""
    seed: int = TRACE_SEED
    pod_sampling_seconds: int | None = None
    """berth's pod sampling interval (0: off); None: the API's default."""

    def spec(self, min_replicas: int) -> InferenceDeploymentSpec:
        return berth_spec(
            *(min_replicas, self.max_replicas, self.ttft_ms, self.itl_ms),
            *(self.interval_seconds, self.pod_sampling_seconds),
        )


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

    def pod_samples(self, now: float) -> list[PodSample]:
        """What each Ready replica's /metrics says now: its requests running and waiting."""
        return [
            PodSample(running=float(r.running), waiting=float(len(r.waiting)))
            for r in self.serving()
            if r.ready_at <= now
        ]

    def route(self, now: float, request: tuple[float, int, int]) -> bool:
        ready = [r for r in self.serving() if r.ready_at <= now]
        if not ready:
            return False
        min(ready, key=lambda r: r.outstanding).waiting.append(request)
        return True


def scalers_for(scenario: Scenario, settings: Settings, model: ReplicaModel) -> list[Scaler]:
    low, high, target = scenario.min_replicas, settings.max_replicas, settings.target_concurrency
    demand = DemandSeries(scenario.trace, model)
    return [
        BerthScaler(settings.spec(low), cold_start_seconds=model.cold_start_seconds),
        HpaConcurrency(low, high, target),
        KedaConcurrency(low, high, target),
        KnativeKpa(low, high, target),
        Kaito(low, high),
        Oracle(demand, low, high),
        clairvoyant(demand, low, high),
    ]


def simulate(scenario: Scenario, scaler_index: int, settings: Settings) -> Outcome:
    model = measured_replica(settings.cold_start)
    scaler = scalers_for(scenario, settings, model)[scaler_index]
    trace = scenario.trace
    spec = settings.spec(scenario.min_replicas)
    interval = float(spec.autoscaling.interval_seconds)
    store = MetricStore(
        window_seconds=float(spec.autoscaling.metrics_window_seconds),
        max_sample_age_seconds=max_sample_age_seconds(interval),
    )
    demand = DemandSeries(trace, model)
    initial = max(trace.initial_replicas, scenario.min_replicas)
    cluster = Cluster(model, initial)
    finished: list[FinishedRequest] = []
    pending: deque[tuple[float, int, int]] = deque()  # arrived while no replica was Ready
    next_arrival, gpu_seconds, rising_scale_ins = 0, 0.0, 0
    trajectory = [initial]
    dt = settings.dt
    per_second, per_scrape = round(1.0 / dt), round(settings.scrape_seconds / dt)
    berth = scaler if isinstance(scaler, BerthScaler) else None
    sampling = berth.sampling_seconds if berth else None
    per_sample = round(sampling / dt) if sampling else 0
    # The daemon's rounds: every sampling interval after an evaluation, each started only if its reads
    # (round_timeout_seconds) are over before the next evaluation is due.
    sample_reach = round(round_timeout_seconds(sampling) / dt) if sampling else 0
    decision_step = round(WARMUP_SECONDS / dt)
    sample_step = None
    for step in range(int((trace.duration_seconds + 180.0) / dt)):
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
        if now < trace.duration_seconds:
            gpu_seconds += len(cluster.replicas) * dt
        if step % per_second == 0:
            in_flight = sum(r.outstanding for r in cluster.serving()) + len(pending)
            store.record_concurrency(now, float(in_flight))
        if step % per_scrape == 0:
            store.scrape(now, cluster.replicas)
        target, counts = None, cluster.counts(now)
        if step >= decision_step:
            target = scaler.desired(now, store, counts)
            # berth evaluates when its last evaluation said (the operator's daemon waits the same);
            # the others on their fixed period.
            due = berth.next_evaluation_seconds if berth else now + scaler.interval_seconds
            decision_step = max(round(due / dt), step + 1)
            sample_step = step + per_sample if per_sample else None
        elif berth and step == sample_step and step + sample_reach <= decision_step:
            target = berth.sample(now, cluster.pod_samples(now), counts)
            sample_step = step + per_sample
        if target is not None and target != counts.desired:
            if target < counts.desired and demand.rising(now):
                rising_scale_ins += 1
            cluster.scale(now, target)
            trajectory.append(target)
    return _outcome(
        scenario,
        scaler,
        trace,
        finished,
        settings,
        gpu_seconds,
        trajectory,
        rising_scale_ins,
        berth.reasons if berth else [],
        berth.steps if berth else [],
    )


def _outcome(
    scenario: Scenario,
    scaler: Scaler,
    trace: Trace,
    finished: list[FinishedRequest],
    settings: Settings,
    gpu_seconds: float,
    trajectory: list[int],
    rising_scale_ins: int,
    reasons: list[str],
    steps: list[Step],
) -> Outcome:
    total = len(trace.arrivals)
    late = [f.arrival for f in finished if f.ttft > settings.ttft_ms / 1000]
    unserved = np.isin(trace.arrivals, [f.arrival for f in finished], invert=True)
    ttft = np.array([f.ttft for f in finished] + [math.inf] * (total - len(finished)))
    itl = np.array([f.mean_itl for f in finished] + [math.inf] * (total - len(finished)))
    changes = np.diff(trajectory)
    signs = np.sign(changes[changes != 0])
    return Outcome(
        scenario=scenario.label,
        scaler=scaler.name,
        ttft_met=float((ttft <= settings.ttft_ms / 1000).mean()),
        itl_met=float((itl <= settings.itl_ms / 1000).mean()),
        ttft_p95=float(np.percentile(ttft, 95)),
        gpu_hours=gpu_seconds / 3600.0,
        scale_events=len(signs),
        direction_changes=int((np.diff(signs) != 0).sum()) if len(signs) > 1 else 0,
        rising_scale_ins=rising_scale_ins,
        peak_replicas=max(trajectory),
        reasons=reasons,
        steps=steps,
        misses=misses_by_bin(np.concatenate([np.array(late), trace.arrivals[unserved]])),
    )


def scenarios(base_rate: float, names: list[str] | None, seed: int = TRACE_SEED) -> list[Scenario]:
    chosen = []
    for trace in standard_traces(base_rate, seed):
        for low in (1, 2) if trace.name == "burst 5x" else (1,):
            scenario = Scenario(trace, low)
            if not names or scenario.label in names or trace.name in names:
                chosen.append(scenario)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base-rate", type=float, default=10.0, help="requests/s of the base load (default 10)"
    )
    parser.add_argument(
        "--cold-start", type=float, default=90.0, help="seconds from scale-up to Ready (default 90)"
    )
    parser.add_argument("--ttft-ms", type=int, default=500, help="TTFT p95 target (default 500)")
    parser.add_argument("--itl-ms", type=int, default=50, help="ITL p95 target (default 50)")
    parser.add_argument("--max-replicas", type=int, default=16)
    parser.add_argument(
        "--target-concurrency",
        type=float,
        default=32.0,
        help="requests in flight per replica the HPA, KEDA and Knative aim at (default 32: half the batch)",
    )
    parser.add_argument(
        "--scrape-seconds",
        type=float,
        default=SCRAPE_SECONDS,
        help=f"Prometheus scrape interval, seconds (default {SCRAPE_SECONDS:g}: the chart's PodMonitor)",
    )
    parser.add_argument(
        "--interval", type=int, help="berth's evaluation interval, seconds (default: the operator's)"
    )
    parser.add_argument(
        "--pod-sampling",
        type=int,
        help="berth's pod sampling interval, seconds; 0 turns it off (default: the operator's)",
    )
    parser.add_argument("--seed", type=int, default=TRACE_SEED, help=f"traces' seed (default {TRACE_SEED})")
    parser.add_argument("--dt", type=float, default=0.1, help="simulation step, seconds (default 0.1)")
    parser.add_argument("--trace", action="append", help="run only this trace or scenario (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="processes to run the runs in (default 1)")
    parser.add_argument("--reasons", action="store_true", help="print berth's scale decisions")
    parser.add_argument(
        "--misses",
        action="store_true",
        help="print each run's requests over the TTFT target by 30 s bin of their arrival",
    )
    parser.add_argument(
        "--only", action="append", help="run only autoscalers whose name starts with this (repeatable)"
    )
    parser.add_argument(
        "--record",
        metavar="PATH",
        help="write berth's evaluations (time, signals, replica counts) of the first scenario as JSON",
    )
    args = parser.parse_args()
    settings = Settings(
        *(args.base_rate, args.cold_start, args.ttft_ms, args.itl_ms, args.max_replicas),
        *(args.target_concurrency, args.dt, args.scrape_seconds, args.interval, args.seed),
        args.pod_sampling,
    )
    model = measured_replica(args.cold_start)
    print(
        f"replica: berth's engine, 8B shape on one H200 (step {model.step_base * 1e3:.2f} ms + "
        f"{model.step_per_sequence * 1e6:.1f} us/seq + {model.step_per_kv_token * 1e9:.1f} ns/KV token + "
        f"{model.step_per_prefill_token * 1e6:.1f} us/prompt token, batch {model.max_batch}), cold start "
        f"{model.cold_start_seconds:.0f}s, scrape {args.scrape_seconds:g}s, berth's interval "
        f"{settings.spec(1).autoscaling.interval_seconds}s, targets TTFT p95 {args.ttft_ms}ms "
        f"ITL p95 {args.itl_ms}ms, base {args.base_rate:g} req/s, baselines' target concurrency "
        f"{args.target_concurrency:g}"
    )
    header = (
        f"{'trace':<16} {'autoscaler':<30} {'TTFT ok':>8} {'ITL ok':>8} {'p95 TTFT':>9} {'GPU-h':>6} "
        f"{'events':>6} {'dir chg':>7} {'rise-in':>7} {'peak':>4}"
    )
    print(header)
    print("-" * len(header))
    started = time.monotonic()
    chosen = scenarios(args.base_rate, args.trace, args.seed)
    names = [s.name for s in scalers_for(chosen[0], settings, model)] if chosen else []
    picked = [i for i, name in enumerate(names) if not args.only or name.startswith(tuple(args.only))]
    if args.record and chosen:
        berth = simulate(chosen[0], 0, settings)
        with open(args.record, "w") as file:
            json.dump(steps_to_json(berth.steps), file)
        print(f"recorded {len(berth.steps)} evaluations of {chosen[0].label} to {args.record}")
        return
    jobs = [(scenario.label, index, settings) for scenario in chosen for index in picked]
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        outcomes = list(pool.map(_run, jobs))
    runs = len(picked)
    for offset in range(0, len(outcomes), runs):
        rows = outcomes[offset : offset + runs]
        for row in rows:
            print(row_line(row))
            if args.misses:
                print(misses_line(row))
            if args.reasons:
                for reason in row.reasons:
                    print(f"    {reason}")
        if len(rows) == len(names):
            print(goal_line(rows))
    print(f"wall time {time.monotonic() - started:.0f}s")


def _run(job: tuple[str, int, Settings]) -> Outcome:
    """One run in a worker process: the scenario is rebuilt there by its label (traces hold rate
    functions, which do not pickle)."""
    label, index, settings = job
    (scenario,) = [s for s in scenarios(settings.base_rate, None, settings.seed) if s.label == label]
    return simulate(scenario, index, settings)


if __name__ == "__main__":
    main()
