"""Local nodes: Kubernetes nodes whose pods really run, as processes on this host (a mini kubelet).

Why: KWOK's simulated nodes (tests/cluster/simulation.py) move pods through their phases by
templates: cheap enough for hundreds of GPU pods, but nothing runs, so no probe is ever asked, no
SIGTERM is ever received and no metrics exist. Proving berth end to end (the operator renders a
command line, the runtime starts on it, answers probes, serves, drains on SIGTERM, Prometheus
scrapes it) needs pods that run. KWOK stages cannot do that: a stage is a status template applied
after a delay; it cannot start a process, wait for it, probe it or signal it. A real kubelet needs
a container runtime, cgroups and root-owned mounts, which this machine (no Docker) and CI lack.
So the agent here is a kubelet reduced to what berth's tests observe, written against the same
API contract (the kubelet's status shapes, reasons and messages are copied, with their Go origin
named in each module), and KWOK stays beside it for scale and GPU-capacity tests.

What the local bed substitutes for a real kubelet and container runtime:

- Registration: Node objects labelled and tainted ``node.berth.dev/runs-pods=true`` (no
  ``kwok.x-k8s.io/node`` annotation, so KWOK ignores them), this host's CPU/memory/disk as
  capacity, no GPUs, a Lease heartbeat (``node``).
- Container -> process: the image is never pulled; ``command`` + ``args`` run from the project's
  environment (argv[0] ``python``/``python3`` becomes the agent's ``sys.executable``), in their own
  process group, output to a log file (``process``, ``launch``). No cgroups: resource limits,
  securityContext (user, read-only root, capabilities) and image ENV/WORKDIR are not applied.
- Pod network -> a host address per pod from a private /24 made local by one route (``network``;
  loopback 127.10.x.y without CAP_NET_ADMIN). No kube-proxy: Service ClusterIPs do not route;
  EndpointSlices list pod addresses that answer; KUBERNETES_SERVICE_HOST names the API server.
- Mount namespace -> host folders, and a rewrite of argv and env: values beginning with a
  mountPath are redirected to the volume's folder, wildcard bind addresses and ``--host`` to the
  pod's IP (``rewrite``, ``volumes``).
- Kept as the kubelet does it: env resolution (``envvars``), init containers in order, restart
  policy with crash-loop back-off (``backoff``), startup/readiness/liveness probes (``probes``),
  status with phase, conditions and container states (``status``), preStop + SIGTERM + grace +
  SIGKILL and the final delete with grace 0 (``pod_worker``, ``container``), Events (``events``).
- Not provided: ``kubectl logs``/``exec``/``port-forward`` (no kubelet API; use
  ``python -m tests.cluster logs``), image pulls, sidecar (restartable) init containers, ephemeral
  containers, resize, readiness gates, configMap/secret volume updates after start.
"""
