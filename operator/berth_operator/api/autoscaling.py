"""`spec.autoscaling`: the SLO-driven autoscaler's targets and bounds (the policy lives elsewhere)."""

from __future__ import annotations

from pydantic import Field

from berth_operator.api.base import ApiModel, CrossFieldRule, section_default
from berth_operator.api.prometheus import PrometheusSpec


def replica_bounds(
    min_replicas: int, max_replicas: int, gpus_per_replica: int, max_gpus: int | None
) -> tuple[int, int]:
    """(fewest, most) replicas autoscaling may run -- the one definition the Deployment's count and
    the autoscaling policy both use.

    The most is maxReplicas capped by the GPU budget (maxGpus // GPUs per replica; a replica without
    GPUs costs none). Where the budget cannot pay even for minReplicas, the budget wins and the
    fewest drops to the most: a budget is a limit on spend. An admitted spec never gets there (the
    CRD's CEL rule and its pydantic twin refuse maxGpus < minReplicas x gpu.count); the policy's
    Targets, built by hand in the simulation, can.
    """
    most = max_replicas
    if max_gpus is not None and gpus_per_replica > 0:
        most = min(most, max_gpus // gpus_per_replica)
    return min(min_replicas, most), most


class SloSpec(ApiModel):
    """Latency targets the autoscaler keeps the deployment within."""

    time_to_first_token_p95_milliseconds: int | None = Field(
        default=None,
        ge=1,
        le=600000,
        description="Target 95th percentile time to first token, in milliseconds.",
    )
    inter_token_latency_p95_milliseconds: int | None = Field(
        default=None,
        ge=1,
        le=60000,
        description="Target 95th percentile time between output tokens, in milliseconds.",
    )


class PodSamplingSpec(ApiModel):
    """Reading the replicas' requests in flight straight from their /metrics, between evaluations."""

    enabled: bool = Field(
        default=True,
        description=(
            "Between Prometheus evaluations, read vllm:num_requests_running and "
            "vllm:num_requests_waiting from each Ready replica's metrics port (serving.metricsPort) "
            "every intervalSeconds; when they have risen beyond noise in two reads in a row, evaluate "
            "at once with them in place of Prometheus' gauges and act on a scale-up (never a "
            "scale-down). An edge is then "
            "met seconds after it arrives instead of after the next scrape. Needs the operator to "
            "reach the pods on the metrics port (a NetworkPolicy may have to allow it); replicas that "
            "do not answer are reported in status.autoscaling.podSampling and left to Prometheus."
        ),
    )
    interval_seconds: int = Field(
        default=2,
        ge=1,
        le=60,
        description=(
            "Seconds between two reads of the replicas' gauges. A read starts only if it (at most "
            "1 s) is over before the next evaluation is due, which can be 3/4 of "
            "autoscaling.intervalSeconds away: 4 x intervalSeconds + 4 must be at most "
            "3 x autoscaling.intervalSeconds (at most 6 s at the default 10 s interval)."
        ),
    )


class AutoscalingSpec(ApiModel):
    """SLO-driven horizontal autoscaling of replicas."""

    enabled: bool = Field(
        default=False,
        description="Scale replicas between minReplicas and maxReplicas to hold the SLO targets.",
    )
    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(default=4, ge=1, le=1000, description="Most replicas.")
    max_gpus: int | None = Field(
        default=None,
        ge=1,
        le=100000,
        description=(
            "GPU budget across all replicas (replicas x resources.gpu.count never exceeds it). "
            "Unset: maxReplicas x resources.gpu.count."
        ),
    )
    slo: SloSpec = Field(
        default_factory=SloSpec,
        description="Latency targets; with autoscaling enabled at least one must be set.",
        json_schema_extra=section_default(SloSpec),
    )
    interval_seconds: int = Field(
        default=10,
        ge=5,
        le=600,
        description=(
            "Seconds between autoscaling evaluations, on average. Each is timed to land 1 s after the "
            "next Prometheus sample is due (from the newest sample's age, taking samples every "
            "interval), so two evaluations are between 3/4 and 7/4 of it apart; scrape the runtime "
            "pods at this interval (the chart's PodMonitor default is 10 s)."
        ),
    )
    metrics_window_seconds: int = Field(
        default=60,
        ge=15,
        le=3600,
        description="Window, in seconds, over which latency percentiles and rates are computed.",
    )
    scale_up_stabilization_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description=(
            "Seconds a scale-up recommendation must persist before it is acted on; "
            "0 (the default) scales up at once, to the count the load needs."
        ),
    )
    scale_down_stabilization_seconds: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="Seconds a scale-down recommendation must persist before it is acted on.",
    )
    prometheus: PrometheusSpec = Field(
        default_factory=PrometheusSpec,
        description=(
            "Metrics source, and how to authenticate to it (docs/autoscaling.md, "
            "'Prometheus behind authentication')."
        ),
        json_schema_extra=section_default(PrometheusSpec),
    )
    dry_run: bool = Field(
        default=False,
        description="Compute and report decisions in status and Events, but do not change replicas.",
    )
    pod_sampling: PodSamplingSpec = Field(
        default_factory=PodSamplingSpec,
        description=(
            "Scale up on the replicas' own request gauges between scrapes (docs/autoscaling.md, "
            "'Pod sampling')."
        ),
        json_schema_extra=section_default(PodSamplingSpec),
    )

    cross_field_rules = (
        CrossFieldRule(
            cel="self.minReplicas <= self.maxReplicas",
            message="autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas",
            holds=lambda autoscaling: autoscaling.min_replicas <= autoscaling.max_replicas,
            field_path=".minReplicas",
        ),
        CrossFieldRule(
            cel=(
                "!self.enabled || has(self.slo.timeToFirstTokenP95Milliseconds) "
                "|| has(self.slo.interTokenLatencyP95Milliseconds)"
            ),
            message=(
                "autoscaling.slo needs timeToFirstTokenP95Milliseconds or "
                "interTokenLatencyP95Milliseconds when autoscaling is enabled"
            ),
            holds=lambda autoscaling: (
                not autoscaling.enabled
                or autoscaling.slo.time_to_first_token_p95_milliseconds is not None
                or autoscaling.slo.inter_token_latency_p95_milliseconds is not None
            ),
            field_path=".slo",
        ),
        CrossFieldRule(
            cel=(
                "!self.podSampling.enabled "
                "|| 4 * self.podSampling.intervalSeconds + 4 <= 3 * self.intervalSeconds"
            ),
            message=(
                "autoscaling.podSampling.intervalSeconds leaves no room for a read between two "
                "evaluations: 4 x podSampling.intervalSeconds + 4 must be at most "
                "3 x autoscaling.intervalSeconds (or set podSampling.enabled: false)"
            ),
            holds=lambda autoscaling: (
                not autoscaling.pod_sampling.enabled
                or 4 * autoscaling.pod_sampling.interval_seconds + 4 <= 3 * autoscaling.interval_seconds
            ),
            field_path=".podSampling.intervalSeconds",
        ),
    )
