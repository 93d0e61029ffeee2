"""The operator's own Prometheus metrics (not the runtime's): reconcile latency, errors, workload.

Metrics live on a registry passed in, not on the process-global default, so tests read fresh values.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class OperatorMetrics:
    """berth_operator_* metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reconcile_duration = Histogram(
            "berth_operator_reconcile_duration_seconds",
            "Duration of one handler run, by handler.",
            ["handler"],
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "berth_operator_reconcile_errors_total",
            "Handler runs that ended in an error, by reason.",
            ["reason"],
            registry=registry,
        )
        self.managed_resources = Gauge(
            "berth_operator_managed_resources",
            "InferenceDeployments the operator currently manages.",
            registry=registry,
        )
        self.autoscaling_decisions = Counter(
            "berth_operator_autoscaling_decisions_total",
            "Autoscaler evaluations, by action (ScaleUp, ScaleDown, Hold) and whether metrics were usable.",
            ["action", "metrics_available", "dry_run"],
            registry=registry,
        )
        self.autoscaling_desired_replicas = Gauge(
            "berth_operator_autoscaling_desired_replicas",
            "Replicas the autoscaler last decided, by InferenceDeployment.",
            ["namespace", "name"],
            registry=registry,
        )
        self.writes = Counter(
            "berth_operator_api_writes_total",
            "Writes to the API server, by kind and verb (apply, status, event).",
            ["kind", "verb"],
            registry=registry,
        )
