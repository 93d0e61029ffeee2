#!/usr/bin/env bash
# The project's test command (README, .ci/run): sets up what is missing, then runs the house-rule
# checks (ruff, mypy strict on the operator, import-linter layer contracts) and the whole pytest suite,
# integration tests on the local control plane included. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# The two slow first-run steps side by side: the venv (downloads) and the local control plane's
# binaries (a Go compile; tests/cluster/build.py needs only the standard library). Seconds once cached.
python3 -c 'from tests.cluster.build import ensure_binaries; ensure_binaries()' >&2 &
build_pid=$!
venv="$(bash scripts/bootstrap.sh)"
wait "$build_pid"
export PATH="$venv/bin:$PATH"
export TRITON_INTERPRET="${TRITON_INTERPRET:-1}"

# Separate commands: under `set -e` a failure on the left of `&&` would not stop the script.
echo "== ruff"; ruff check .; ruff format --check .
echo "== mypy"; mypy
echo "== import-linter"; lint-imports
# The live autoscaling tests run a real Prometheus server (Debian's package); root is available in CI.
echo "== prometheus (tests/integration/test_autoscaling_live.py)"
command -v prometheus >/dev/null || {
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }
# The image tests (tests/images) build the operator image with buildah (no daemon) on a base that
# mmdebstrap makes from Debian packages when no registry is reachable (both cached after the first
# run), and read its archive with skopeo as the README's quickstart pushes it.
echo "== buildah, mmdebstrap, skopeo (tests/images)"
{ command -v buildah && command -v mmdebstrap && command -v skopeo; } >/dev/null || {
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends buildah mmdebstrap skopeo; }
echo "== pytest"; pytest "$@"
