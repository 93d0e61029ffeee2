"""How many replicas the Deployment runs: the manual count, or the autoscaler's decision, in bounds."""

from __future__ import annotations

from berth_operator.api import InferenceDeploymentSpec, InferenceDeploymentStatus


def effective_replicas(spec: InferenceDeploymentSpec, status: InferenceDeploymentStatus | None) -> int:
    """Replicas to run now.

    Without autoscaling: spec.replicas. With it: the autoscaler's status.autoscaling.desiredReplicas
    once it has decided (never in dry-run), else spec.replicas; either clamped to the bounds.
    """
    if not spec.autoscaling.enabled:
        return spec.replicas
    wanted = spec.replicas
    decided = status.autoscaling.desired_replicas if status and status.autoscaling else None
    if decided is not None and not spec.autoscaling.dry_run:
        wanted = decided
    least, most = spec.replica_bounds()
    return min(max(wanted, least), most)
