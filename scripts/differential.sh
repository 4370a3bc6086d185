#!/usr/bin/env bash
# Differential framing test: Ringway's request framing against Python's h11 on generated and
# mutated byte streams (tests/differential/run.py). Installs what it needs idempotently: a venv
# under target/pyenv with h11 in it (the system Python is left alone), and python3-venv from
# Debian if the venv module is missing. Exits non-zero on a framing disagreement where Ringway
# accepts, or when Ringway refuses a request from the corpus of valid ones.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/pyenv
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    echo "differential.sh: installing python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import h11' 2>/dev/null; then
  echo "differential.sh: installing h11 into $venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check 'h11>=0.16,<0.17'
fi

cargo build -q -p proxy-core --example framing
exec "$venv/bin/python" tests/differential/run.py --ringway target/debug/examples/framing "$@"
