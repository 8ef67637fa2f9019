#!/usr/bin/env bash
# Set up everything localmodel needs on a fresh machine: a virtual environment under .cache/venv with
# the pinned runtime, operator, router, llama.cpp and development dependencies. Idempotent: a second
# run only re-checks (pip is a no-op when the pinned versions are already there).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${LOCALMODEL_CACHE:-$PWD/.cache}
VENV=$CACHE/venv
PY=${PYTHON:-python3}
EXTRAS=${LOCALMODEL_EXTRAS:-dev,llama-cpp,operator,router}

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: Python 3.11 or newer is needed ($PY is $("$PY" --version 2>&1))" >&2
  exit 1
fi
mkdir -p "$CACHE"
if [[ ! -x $VENV/bin/python ]]; then
  echo "setup: creating $VENV" >&2
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip==25.3
fi
stamp=$VENV/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${EXTRAS//,/_}
if [[ ! -f $stamp ]]; then
  echo "setup: installing localmodel[$EXTRAS] (llama-cpp-python compiles llama.cpp once: ~4 min on 2 cores)" >&2
  # The llama.cpp build uses every core we have; the wheel lands in pip's cache for later runs.
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$VENV/bin/pip" install -q -e ".[$EXTRAS]"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
echo "setup: ready ($VENV)" >&2
