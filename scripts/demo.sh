#!/usr/bin/env bash
# berth's main job on one machine, no Docker and no GPU needed:
#   ./scripts/demo.sh up     local Kubernetes control plane (built on first run, ~12 min on 2 cores;
#                            then seconds) with simulated H100 nodes, berth's CRDs, the operator in
#                            the background, and the sample InferenceDeployment (examples/chat.yaml)
#                            until it is Ready; then shows `kubectl get idep`.
#   ./scripts/demo.sh down   stops the operator and every cluster process by PID, removes the state.
#   ./scripts/demo.sh env    prints the exports that point kubectl at the demo cluster.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cluster_name="${BERTH_DEMO_CLUSTER:-demo}"
sample="${BERTH_DEMO_SAMPLE:-examples/chat.yaml}"
venv="$(bash scripts/bootstrap.sh)"
export PATH="$venv/bin:$PATH"
cache="${BERTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}"
operator_dir="$cache/demo-operator/$cluster_name"
operator_pid_file="$operator_dir/operator.pid"

say() { printf '\n== %s\n' "$*" >&2; }

stop_operator() {
  [ -f "$operator_pid_file" ] || return 0
  local pid
  pid="$(cat "$operator_pid_file")"
  # Only signal the PID if it still is the operator we started (a PID can be reused).
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-m berth_operator"; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "operator (pid $pid) stopped" >&2
  fi
  rm -f "$operator_pid_file"
}

free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

up() {
  say "local control plane '$cluster_name' (simulated GPU nodes)"
  if exports="$(python -m tests.cluster env --name "$cluster_name" 2>/dev/null)"; then
    echo "already up; reusing it" >&2
  else
    exports="$(python -m tests.cluster up --name "$cluster_name")"
  fi
  eval "$exports"

  say "berth CRDs (crds/)"
  kubectl apply --server-side --force-conflicts -f crds/
  kubectl wait --for=condition=Established crd/inferencedeployments.berth.dev --timeout=60s

  say "berth operator (background; log: $operator_dir/operator.log)"
  stop_operator
  mkdir -p "$operator_dir"
  health_port="$(free_port)"
  BERTH_HEALTH_PORT="$health_port" BERTH_METRICS_PORT="$(free_port)" \
    setsid nohup python -m berth_operator --all-namespaces >>"$operator_dir/operator.log" 2>&1 </dev/null &
  echo $! >"$operator_pid_file"
  for _ in $(seq 1 300); do
    python -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
      "http://127.0.0.1:$health_port/healthz" 2>/dev/null && break
    kill -0 "$(cat "$operator_pid_file")" 2>/dev/null || { tail -30 "$operator_dir/operator.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "operator pid $(cat "$operator_pid_file"), healthy on :$health_port" >&2

  say "sample InferenceDeployment ($sample)"
  kubectl apply -f "$sample"
  name="$(kubectl get -f "$sample" -o jsonpath='{.metadata.name}')"
  kubectl wait --for=jsonpath='{.status.phase}'=Ready "inferencedeployment/$name" --timeout=180s

  say "kubectl get idep"
  kubectl get idep -o wide
  say "its pods and the simulated GPU nodes they run on"
  kubectl get pods -l "app.kubernetes.io/instance=$name" -o wide
  kubectl get nodes -L nvidia.com/gpu.product -L nvidia.com/gpu.memory
  cat >&2 <<EOF

Use the cluster from your shell:   eval "\$(./scripts/demo.sh env)"
Tear everything down:              ./scripts/demo.sh down
EOF
}

case "${1:-}" in
  up) up ;;
  down)
    stop_operator
    python -m tests.cluster down --name "$cluster_name"
    rm -rf "$operator_dir"
    ;;
  env) python -m tests.cluster env --name "$cluster_name" ;;
  *)
    echo "usage: $0 up|down|env" >&2
    exit 2
    ;;
esac
