"""GPU economics of an InferenceDeployment: GPU-hours, output tokens, cost per million output tokens and
SLO attainment over the last hour and the last day, from the runtime's vLLM-named Prometheus series.

Split like `autoscaling`, so the arithmetic stays pure and table-testable:
- `queries`: the PromQL per trailing window (no I/O).
- `histograms`: the share of observations under a target, from cumulative histogram buckets, with
  linear interpolation inside the bucket that holds a target that is no bucket boundary (no I/O).
- `pricing`: which GPU-hour price applies -- the spec's, the operator's for the GPU product, or none
  and why (no I/O).
- `figures`: one window's figures from what Prometheus answered (no I/O).
- `report`: the wire form of `status.economics`, with a message naming every absent figure (no I/O).
- `collect`: the thin I/O part -- runs the queries through `PrometheusClient`.

Writing the status (under its own field manager) is the job of `handlers.economics` through `kube`.
The formulas are documented in docs/economics.md.
"""
