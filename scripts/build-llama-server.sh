#!/usr/bin/env bash
# Build llama.cpp's own C++ `llama-server` into .cache/bin/llama-server, for the serving benchmark's
# peer (bench/serving.py). The sources are the llama.cpp tree vendored in the llama-cpp-python sdist
# that pyproject pins, and the CMake flags are the runtime image's portable ones (LLAMA_CPU_CMAKE_ARGS
# in runtime/Dockerfile, which scripts/setup.sh also compiles the venv's wheel with): the two sides of
# the comparison run the same engine code built the same way.
#
# Idempotent: .cache/bin/.stamps/llama-server holds "<pin> <flags>"; a matching stamp means no rebuild.
# About 3 minutes on 2 cores.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
BIN="$CACHE/bin"
STAMPS="$BIN/.stamps"
WORK="$CACHE/llama-server-build"
PIP="$CACHE/venv/bin/pip"
mkdir -p "$BIN" "$STAMPS" "$WORK"

pin=$(sed -n 's/^llama-cpp = \["\(llama-cpp-python==[^"]*\)"\]$/\1/p' "$ROOT/pyproject.toml")
flags=$(sed -n 's/^ARG LLAMA_CPU_CMAKE_ARGS="\(.*\)"$/\1/p' "$ROOT/runtime/Dockerfile")
[[ -n $pin && -n $flags ]] || { echo "build-llama-server: cannot read the llama-cpp pin or LLAMA_CPU_CMAKE_ARGS" >&2; exit 1; }
for tool in cmake g++; do
  command -v "$tool" >/dev/null || { echo "build-llama-server: '$tool' not found (apt-get install cmake g++)" >&2; exit 1; }
done
[[ -x $PIP ]] || { echo "build-llama-server: $PIP missing; run 'make setup' first" >&2; exit 1; }

stamp="$pin $flags"
if [[ -x $BIN/llama-server && -f $STAMPS/llama-server && $(cat "$STAMPS/llama-server") == "$stamp" ]]; then
  echo "llama-server: $pin (cached)"
  exit 0
fi

version=${pin#*==}
sdist="$WORK/llama_cpp_python-$version.tar.gz"
if [[ ! -f $sdist ]]; then
  "$PIP" download -q --no-deps --no-binary :all: -d "$WORK" "$pin" \
    || { echo "build-llama-server: cannot download the $pin sdist from the package index" >&2; exit 1; }
fi
src="$WORK/llama_cpp_python-$version"
[[ -d $src ]] || tar -xzf "$sdist" -C "$WORK"
llama="$src/vendor/llama.cpp"
build="$WORK/build-$version"
# shellcheck disable=SC2086  # the flags are a list of -D options
cmake -S "$llama" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON $flags >"$WORK/cmake.log" 2>&1 \
  || { echo "build-llama-server: cmake failed; last lines of $WORK/cmake.log:" >&2; tail -n 20 "$WORK/cmake.log" >&2; exit 1; }
cmake --build "$build" --target llama-server -j "$(nproc)" >"$WORK/build.log" 2>&1 \
  || { echo "build-llama-server: build failed; last lines of $WORK/build.log:" >&2; tail -n 20 "$WORK/build.log" >&2; exit 1; }
install -m 0755 "$build/bin/llama-server" "$BIN/llama-server"
echo "$stamp" >"$STAMPS/llama-server"
echo "llama-server: $pin (built with $flags)"
