#!/usr/bin/env bash
# What `make bench-serving` needs besides the product's venv: AIPerf (NVIDIA's LLM load generator, on
# the package index) in its own environment .cache/venv-aiperf (it pins its own transformers, numpy and
# matplotlib, which the product's venv must not inherit), the `gguf` reader for the offline tokenizer
# (bench/gemma_tokenizer.py), and Debian's nginx for the round-robin baseline. Idempotent.
set -euo pipefail

AIPERF_VERSION="${AIPERF_VERSION:-0.13.0}"
GGUF_VERSION="${GGUF_VERSION:-0.19.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.cache/venv-aiperf"
stamp="$VENV/.installed-aiperf-$AIPERF_VERSION-gguf-$GGUF_VERSION"

if [[ ! -f $stamp ]]; then
  command -v python3.11 >/dev/null || { echo "setup-aiperf: python3.11 not found" >&2; exit 1; }
  rm -rf "$VENV"
  python3.11 -m venv "$VENV"
  echo "setup-aiperf: installing aiperf==$AIPERF_VERSION into $VENV" >&2
  "$VENV/bin/pip" install -q "aiperf==$AIPERF_VERSION" "gguf==$GGUF_VERSION" \
    || { echo "setup-aiperf: pip could not install aiperf==$AIPERF_VERSION (is the package index reachable?)" >&2; exit 1; }
  touch "$stamp"
fi

if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
  [[ $(id -u) -eq 0 ]] || { echo "setup-aiperf: needs root to install nginx (apt-get)" >&2; exit 1; }
  echo "setup-aiperf: installing nginx" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null 2>&1 \
    || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx >/dev/null; } \
    || { echo "setup-aiperf: apt-get could not install nginx" >&2; exit 1; }
fi
echo "setup-aiperf: ready ($VENV)" >&2
