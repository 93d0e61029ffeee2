"""SLA-driven autoscaling: decide how many replicas an InferenceDeployment needs, never act.

The pieces, each in its own module so the decision stays pure and testable:
- `prometheus`: a thin async client for Prometheus' HTTP API (timeouts, typed errors).
- `signals`: the PromQL per InferenceDeployment and its parsing into a `Signals` value, with
  staleness detection.
- `capacity`: token-weighted demand and the per-replica capacity learned from the metrics.
- `policy`: the pure decision `(observation, targets, current, history, now) -> Decision`.
- `sizing`: replicas a load needs (up) or may drop to (down), and the reason text with those numbers.
- `state`: the history that lives in `status.autoscaling`, so decisions survive restarts.

Acting on a decision (scaling the Deployment, patching status, emitting Events) is the job of
`handlers` through `kube`; this package imports neither.
"""
