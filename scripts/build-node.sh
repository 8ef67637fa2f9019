#!/usr/bin/env bash
# Build the Go programs the container tests need into .cache/bin/, from Go modules:
#   registry   the CNCF distribution registry (github.com/distribution/distribution/v3/cmd/registry),
#              the registry `make images PUSH=1` pushes to in the tests, as a user's own registry would be.
#   containerd, ctr, containerd-shim-runc-v2 (with NODE=1; a real node's CRI runtime, see
#              /work/shared/reference/real-node.md: Debian's containerd 1.6 is older than kubelet 1.36 wants)
#   kubelet, kube-proxy (with NODE=1; the control plane's Kubernetes version)
#   pause      (with NODE=1) the pod sandbox program, tests/node/pause/main.go: the upstream pause image
#              cannot be pulled here, so tests/support/pauseimage.py wraps this binary in an image
#
# Same helpers as scripts/build-k8s.sh (scripts/go-build-lib.sh): pinned versions, a stamp per binary
# (.cache/bin/.stamps/NAME holds the version it was built at; a matching stamp means no rebuild),
# a throwaway module per program under .cache/node-build, Go's default module and build caches,
# GOTOOLCHAIN=local, static binaries (CGO_ENABLED=0).
#
# Environment knobs: GO_BUILD_P (parallelism, default 2), NODE=1 for the node's programs,
# REGISTRY_VERSION / CONTAINERD_VERSION / K8S_VERSION to override the pins.
set -euo pipefail

REGISTRY_VERSION="${REGISTRY_VERSION:-v3.1.2}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
K8S_VERSION="${K8S_VERSION:-v1.36.3}"
NODE="${NODE:-0}"
GO_BUILD_P="${GO_BUILD_P:-2}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.cache/bin"
STAMPS="$BIN/.stamps"
WORK="$ROOT/.cache/node-build"
mkdir -p "$BIN" "$STAMPS" "$WORK"

# shellcheck source=scripts/go-build-lib.sh
source "$ROOT/scripts/go-build-lib.sh"
command -v go >/dev/null || { echo "build-node: 'go' not found on PATH" >&2; exit 1; }

# ---------------------------------------------------------------- registry
if is_current registry "$REGISTRY_VERSION"; then
    echo "registry: $REGISTRY_VERSION (cached)"
else
    d="$WORK/registry-$REGISTRY_VERSION"
    pkg=github.com/distribution/distribution/v3/cmd/registry
    write_module "$d" localmodel.test/registrybuild "$pkg"
    (cd "$d" && go mod edit -require="github.com/distribution/distribution/v3@$REGISTRY_VERSION" && go mod tidy)
    rm -f "$BIN/registry"
    # version.version is what `registry --version` and the Docker-Distribution-API-Version header report.
    build_in "$d" "$BIN/registry" "-X github.com/distribution/distribution/v3/version.version=$REGISTRY_VERSION" \
        -- "$pkg"
    echo "$REGISTRY_VERSION" >"$STAMPS/registry"
    echo "registry: $REGISTRY_VERSION (built)"
fi

((NODE)) || exit 0

# ---------------------------------------------------------------- containerd
c_bins=(containerd ctr containerd-shim-runc-v2)
c_todo=()
for b in "${c_bins[@]}"; do
    if is_current "$b" "$CONTAINERD_VERSION"; then echo "$b: $CONTAINERD_VERSION (cached)"; else c_todo+=("$b"); fi
done
if ((${#c_todo[@]})); then
    d="$WORK/containerd-$CONTAINERD_VERSION"
    mod=github.com/containerd/containerd/v2
    write_module "$d" localmodel.test/containerdbuild "${c_bins[@]/#/$mod/cmd/}"
    (cd "$d" && go mod edit -require="$mod@$CONTAINERD_VERSION" && go mod tidy)
    rm -f "${c_todo[@]/#/$BIN/}"
    # Without cgo the btrfs/devmapper/zfs/aufs snapshotters cannot build; overlayfs is the one used.
    build_in "$d" "$BIN/" "-X $mod/version.Version=$CONTAINERD_VERSION" \
        -tags "no_btrfs no_devmapper no_zfs no_aufs" -- "${c_todo[@]/#/$mod/cmd/}"
    for b in "${c_todo[@]}"; do
        echo "$CONTAINERD_VERSION" >"$STAMPS/$b"
        echo "$b: $CONTAINERD_VERSION (built)"
    done
fi

# ---------------------------------------------------------------- pause
# Stamped with the source's hash, so an edit to main.go rebuilds it.
pause_version="$(sha256sum "$ROOT/tests/node/pause/main.go" | cut -c1-16)"
if is_current pause "$pause_version"; then
    echo "pause: $pause_version (cached)"
else
    d="$WORK/pause"
    mkdir -p "$d"
    cp "$ROOT/tests/node/pause/main.go" "$d/main.go"
    printf 'module localmodel.test/pause\n\ngo 1.26.0\n' >"$d/go.mod"
    build_in "$d" "$BIN/pause" "" -- .
    echo "$pause_version" >"$STAMPS/pause"
    echo "pause: $pause_version (built)"
fi

# ---------------------------------------------------------------- kubelet, kube-proxy
# From the control plane's build module, at its Kubernetes version (one recipe for every k8s binary).
NODE=1 K8S_VERSION="$K8S_VERSION" GO_BUILD_P="$GO_BUILD_P" "$ROOT/scripts/build-k8s.sh"
