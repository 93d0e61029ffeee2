"""How many replicas the Deployment runs: the manual count, or the autoscaler's decision, in bounds
-- and, since that count is the InferenceDeployment's alone, what to tell someone who scaled the
Deployment by hand."""

from __future__ import annotations

from berth_operator.api import InferenceDeploymentSpec, InferenceDeploymentStatus
from berth_operator.builders.context import BuildContext


def effective_replicas(spec: InferenceDeploymentSpec, status: InferenceDeploymentStatus | None) -> int:
    """Replicas to run now.

    Without autoscaling: spec.replicas. With it: status.desiredReplicas, where the operator records
    the autoscaler's decisions (never in dry-run), else spec.replicas; either clamped to the bounds.
    """
    if not spec.autoscaling.enabled:
        return spec.replicas
    wanted = spec.replicas
    decided = status.desired_replicas if status else None
    if decided is not None and not spec.autoscaling.dry_run:
        wanted = decided
    least, most = spec.replica_bounds()
    return min(max(wanted, least), most)


def replicas_reverted_message(build: BuildContext, found: int) -> str:
    """The Event text for a Deployment scaled by hand and set back: what was reverted, and how to
    scale instead."""
    name, spec = build.owner.name, build.spec
    reverted = (
        f"Deployment {name} was scaled to {found} replicas outside berth and is set back to "
        f"{build.replicas}: InferenceDeployment {name} sets the count."
    )
    least, most = spec.replica_bounds()
    if spec.autoscaling.enabled and not spec.autoscaling.dry_run:
        return (
            f"{reverted} With autoscaling on, the autoscaler sets it within [{least}, {most}]; "
            "change spec.autoscaling.minReplicas, maxReplicas or maxGpus to move those bounds."
        )
    within = f" (within [{least}, {most}] while autoscaling.dryRun is on)" if spec.autoscaling.enabled else ""
    return f"{reverted} Scale it instead{within}: kubectl scale inferencedeployment {name} --replicas=N"
