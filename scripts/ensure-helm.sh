#!/usr/bin/env bash
# Builds (once) the pinned Helm CLI from the Go module proxy into a cache outside the work tree, keyed
# by version, and prints its path. The chart tests call it, so a fresh machine (CI) gets Helm without
# a download step of its own; later runs cost milliseconds.
set -euo pipefail
version="${BERTH_HELM_VERSION:-v3.19.0}"
# Minor version of the Kubernetes client Helm $version is built with (k8s.io/client-go v0.34.x).
kube_minor="${BERTH_HELM_KUBE_MINOR:-34}"
cache="${BERTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}"
dir="$cache/tools/helm-$version-k8s1.$kube_minor"
helm="$dir/helm"
if [ ! -x "$helm" ]; then
  # Go from PATH, else where the official tarball installs it.
  if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH="/usr/local/go/bin:$PATH"; fi
  command -v go >/dev/null || { echo "ensure-helm: Go (1.24+) is needed to build Helm $version; install it and retry" >&2; exit 1; }
  mkdir -p "$dir"
  # One build at a time: a second caller waits for the first instead of building again.
  exec 9>"$dir/.lock"
  flock 9
  if [ ! -x "$helm" ]; then
    echo "ensure-helm: building helm $version with 'go install' (first run only; minutes)" >&2
    tmp="$(mktemp -d "$dir/.build.XXXXXX")"
    # The link-time values Helm's own Makefile sets: without them `helm version` is blank and
    # `helm template` assumes Kubernetes v1.20. The Kubernetes version is that of Helm's client-go.
    ldflags="-X helm.sh/helm/v3/internal/version.version=$version"
    for package in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
      ldflags+=" -X $package.k8sVersionMajor=1 -X $package.k8sVersionMinor=$kube_minor"
    done
    GOBIN="$tmp" CGO_ENABLED=0 go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$version" >&2
    mv "$tmp/helm" "$helm"
    rmdir "$tmp"
  fi
fi
echo "$helm"
