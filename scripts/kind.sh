#!/usr/bin/env bash
# localmodel on kind, for machines with Docker (these build machines have none; the test suite uses
# a control plane built from Go modules instead -- see DESIGN.md).
#
#   scripts/kind.sh up     create the cluster of kind-config.yaml (idempotent)
#   scripts/kind.sh load   build the operator image and the CPU llama.cpp runtime, load them into kind
#   scripts/kind.sh e2e    helm install with examples/kind-values.yaml, apply the Gemma example, wait
#                          until it is Ready, then ask the router for a completion on localhost:8080
#   scripts/kind.sh down   delete the cluster
#
# Environment: KIND_CLUSTER (default localmodel), KIND_NODE_IMAGE (kindest/node:vX.Y.Z; default:
# kind's own), REGISTRY/TAG (default localmodel.local/dev, as in examples/kind-values.yaml),
# KIND_TARGETS (runtime targets to load; default llama-cpp-cpu), NAMESPACE (default
# localmodel-system), MODELS_NAMESPACE (default default), ROUTER_URL (default http://localhost:8080).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${KIND_CLUSTER:-localmodel}"
export REGISTRY="${REGISTRY:-localmodel.local}" TAG="${TAG:-dev}"
TARGETS="${KIND_TARGETS:-llama-cpp-cpu}"
NAMESPACE="${NAMESPACE:-localmodel-system}"
MODELS_NAMESPACE="${MODELS_NAMESPACE:-default}"
ROUTER_URL="${ROUTER_URL:-http://localhost:8080}"
# Prefer tools on PATH; fall back to the ones `make k8s-bins` built.
tool() { command -v "$1" 2>/dev/null || echo "$PWD/.cache/bin/$1"; }
KIND="${KIND:-$(tool kind)}" KUBECTL="${KUBECTL:-$(tool kubectl)}" HELM="${HELM:-$(tool helm)}"
kubectl() { "$KUBECTL" --context "kind-$CLUSTER" "$@"; }
helm() { "$HELM" --kube-context "kind-$CLUSTER" "$@"; }

up() {
    if "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
        echo "kind: cluster $CLUSTER exists" >&2
        return
    fi
    "$KIND" create cluster --name "$CLUSTER" --config kind-config.yaml \
        ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 120s
}

load() {
    # shellcheck disable=SC2086  # TARGETS is a word list
    scripts/images.sh build operator $TARGETS
    # shellcheck disable=SC2086
    for image in $(scripts/images.sh list operator $TARGETS); do
        "$KIND" load docker-image --name "$CLUSTER" "$image"
    done
}

e2e() {
    # CRDs first (Helm installs crds/ only once and never upgrades them), then the release.
    helm show crds helm/localmodel | kubectl apply --server-side --force-conflicts -f -
    helm upgrade --install localmodel helm/localmodel -n "$NAMESPACE" --create-namespace \
        -f examples/kind-values.yaml --wait --timeout 5m
    kubectl apply -n "$MODELS_NAMESPACE" -f examples/localmodels/gemma-3-270m.yaml
    # The model downloads (about 250 MB) and loads before it is Ready.
    kubectl wait -n "$MODELS_NAMESPACE" localmodel/gemma-3-270m --for=condition=Ready --timeout=15m
    kubectl get localmodels -A
    local body
    body=$(curl -sS --fail-with-body --max-time 300 "$ROUTER_URL/v1/completions" \
        -H 'Content-Type: application/json' \
        -d '{"model": "gemma-3-270m", "prompt": "The capital of France is", "max_tokens": 16}')
    echo "$body"
    grep -q '"text"' <<<"$body" || { echo "kind e2e: no completion in the router's answer" >&2; exit 1; }
    curl -sS --fail-with-body "$ROUTER_URL/v1/models"
    echo
    echo "kind e2e: passed" >&2
}

down() { "$KIND" delete cluster --name "$CLUSTER"; }

case "${1:-}" in
    up) up ;;
    load) load ;;
    e2e) e2e ;;
    down) down ;;
    *) echo "usage: scripts/kind.sh up|load|e2e|down" >&2; exit 2 ;;
esac
