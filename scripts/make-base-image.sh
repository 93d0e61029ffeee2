#!/usr/bin/env bash
# Makes berth's image base from Debian packages, for machines that cannot pull the public one.
#
# Why: the Dockerfiles build FROM python:3.11-slim-bookworm by default, but where no container
# registry is reachable (CI here: only the package registries are) that base cannot be pulled. Both
# images need nothing from it but Debian bookworm's Python 3.11 with venv, so this script makes the
# same thing with mmdebstrap from the Debian mirror: bookworm (+ updates and security) minbase with
# python3.11, python3-venv (ensurepip), python-is-python3 (`python`), ca-certificates and passwd
# (useradd), no documentation. The root filesystem is cached as a tarball under
# ${BERTH_IMAGE_CACHE:-~/.cache/berth/images}, keyed by everything below that shapes it, so only the
# first run pays the bootstrap (~20 s plus downloads); later runs import it in seconds, or reuse the
# image already in the tool's storage.
#
# Usage: scripts/make-base-image.sh docker|podman|buildah   (prints the local image reference)
# Environment: BERTH_STORAGE_DRIVER (buildah/podman --storage-driver, e.g. vfs),
#              BERTH_DEBIAN_MIRROR (default http://deb.debian.org/debian),
#              BERTH_DEBIAN_SECURITY_MIRROR (default http://deb.debian.org/debian-security).
set -euo pipefail

tool="${1:?usage: make-base-image.sh docker|podman|buildah}"
cache="${BERTH_IMAGE_CACHE:-$HOME/.cache/berth/images}"
mirror="${BERTH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security_mirror="${BERTH_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
suite=bookworm
packages=python3.11,python3-venv,python-is-python3,ca-certificates,passwd
# Files nobody reads in a container: ~40 MB of man pages, documentation and translations.
excludes=(
  "--dpkgopt=path-exclude=/usr/share/man/*"
  "--dpkgopt=path-exclude=/usr/share/doc/*"
  "--dpkgopt=path-include=/usr/share/doc/*/copyright"
  "--dpkgopt=path-exclude=/usr/share/locale/*"
  "--dpkgopt=path-exclude=/usr/share/info/*"
)
sources=(
  "deb $mirror $suite main"
  "deb $mirror $suite-updates main"
  "deb $security_mirror $suite-security main"
)
key="$(printf '%s\n' "$suite" "$packages" "${excludes[@]}" "${sources[@]}" | sha256sum | cut -c1-12)"
reference="localhost/berth-base:$suite-python3.11-$key"
rootfs="$cache/debian-$suite-python3.11-$key.tar"

log() { echo "make-base-image: $*" >&2; }
storage=()
[[ "$tool" != docker && -n "${BERTH_STORAGE_DRIVER:-}" ]] && storage=(--storage-driver "$BERTH_STORAGE_DRIVER")
t() { "$tool" "${storage[@]}" "$@"; }

present() {
  case "$tool" in
    buildah) t inspect --type image "$reference" >/dev/null 2>&1 ;;
    *) t image inspect "$reference" >/dev/null 2>&1 ;;
  esac
}

if present; then
  echo "$reference"
  exit 0
fi

if [[ ! -s "$rootfs" ]]; then
  command -v mmdebstrap >/dev/null || {
    log "mmdebstrap is needed to make the base (Debian: apt-get install mmdebstrap)"
    exit 1
  }
  mkdir -p "$cache"
  log "bootstrapping Debian $suite with $packages into $rootfs"
  started=$SECONDS
  partial="$cache/.partial-$key-$$.tar"
  mmdebstrap --quiet --format=tar --variant=minbase --include="$packages" "${excludes[@]}" \
    "$suite" "$partial" "${sources[@]}"
  mv "$partial" "$rootfs"
  log "bootstrapped in $((SECONDS - started)) s ($(du -m "$rootfs" | cut -f1) MB)"
fi

# What python:3.11-slim-bookworm sets that a program may rely on.
log "importing $rootfs as $reference"
case "$tool" in
  buildah)
    container="$(t from scratch)"
    trap 't rm "$container" >/dev/null 2>&1 || true' EXIT
    t add --quiet "$container" "$rootfs" / >/dev/null
    t config --env LANG=C.UTF-8 --cmd python3 \
      --label "org.opencontainers.image.description=Debian $suite with python3.11 (scripts/make-base-image.sh)" \
      "$container"
    t commit --quiet --rm "$container" "$reference" >/dev/null
    trap - EXIT
    ;;
  docker | podman)
    t import --change "ENV LANG=C.UTF-8" --change 'CMD ["python3"]' "$rootfs" "$reference" >/dev/null
    ;;
  *)
    log "unknown tool $tool (docker, podman or buildah)"
    exit 1
    ;;
esac
echo "$reference"
