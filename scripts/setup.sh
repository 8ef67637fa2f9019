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
# llama-cpp-python is compiled once per machine, for this venv and for the llama-cpp-cpu image alike:
# its wheel is built with the image's portable CMake flags (read from runtime/Dockerfile, the one
# place they are written) into .cache/wheels/llama-cpp, which scripts/images.sh hands to the image
# build. Portable flags need AVX2/FMA/F16C on this CPU; without them pip compiles natively as before.
wheels=$CACHE/wheels/llama-cpp
find_links=()
llama_pin=$(sed -n 's/^llama-cpp = \["\(llama-cpp-python==[^"]*\)"\]$/\1/p' pyproject.toml)
cmake_args=$(sed -n 's/^ARG LLAMA_CPU_CMAKE_ARGS="\(.*\)"$/\1/p' runtime/Dockerfile)
info="glibc=$(getconf GNU_LIBC_VERSION | cut -d' ' -f2) cmake=$cmake_args"
cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
if [[ -n $llama_pin && -n $cmake_args && $cpu_flags == *" avx2"* && $cpu_flags == *" fma"* && $cpu_flags == *" f16c"* ]]; then
  if [[ ! -f $wheels/BUILD_INFO || $(cat "$wheels/BUILD_INFO") != "$info" ]] \
     || ! compgen -G "$wheels/llama_cpp_python-${llama_pin#*==}-*.whl" >/dev/null; then
    echo "setup: compiling $llama_pin once (~4 min on 2 cores) into $wheels" >&2
    rm -rf "$wheels" && mkdir -p "$wheels"
    CMAKE_ARGS=$cmake_args CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
      "$VENV/bin/pip" wheel -q --no-deps --no-cache-dir -w "$wheels" "$llama_pin"
    echo "$info" >"$wheels/BUILD_INFO"
  fi
  find_links=(--find-links "$wheels")
fi
if [[ ! -f $stamp ]]; then
  echo "setup: installing localmodel[$EXTRAS]" >&2
  # Without the prebuilt wheel the llama.cpp build uses every core we have.
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$VENV/bin/pip" install -q "${find_links[@]}" -e ".[$EXTRAS]"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
echo "setup: ready ($VENV)" >&2
