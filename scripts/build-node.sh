#!/usr/bin/env bash
# Build the Go programs the container tests need into .cache/bin/, from Go modules:
#   registry   the CNCF distribution registry (github.com/distribution/distribution/v3/cmd/registry),
#              the registry `make images PUSH=1` pushes to in the tests, as a user's own registry would be.
#   containerd, ctr, containerd-shim-runc-v2 (with NODE=1; a real node's CRI runtime, see
#              /work/shared/reference/real-node.md: Debian's containerd 1.6 is older than kubelet 1.36 wants)
#   kubelet, kube-proxy (with NODE=1; the control plane's Kubernetes version)
#
# Same conventions as scripts/build-k8s.sh: pinned versions, a stamp per binary
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

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
command -v go >/dev/null || { echo "build-node: 'go' not found on PATH" >&2; exit 1; }

is_current() { # NAME VERSION -> 0 when .cache/bin/NAME exists and was built at VERSION
    [[ -x "$BIN/$1" && -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]
}

# A throwaway module DIR whose tools.go blank-imports the main packages, so `go mod tidy` records
# every dependency in go.sum (the tools.go pattern, as in build-k8s.sh).
write_module() { # DIR MODULE_NAME PACKAGE...
    local dir="$1" name="$2"; shift 2
    mkdir -p "$dir"
    printf 'module %s\n\ngo 1.26.0\n' "$name" >"$dir/go.mod"
    {
        printf '//go:build tools\n\npackage tools\n\nimport (\n'
        printf '\t_ "%s"\n' "$@"
        printf ')\n'
    } >"$dir/tools.go"
}

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
    (cd "$d" && go build -p "$GO_BUILD_P" -trimpath \
        -ldflags "-s -w -X github.com/distribution/distribution/v3/version.version=$REGISTRY_VERSION" \
        -o "$BIN/registry" "$pkg")
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
    (cd "$d" && go build -p "$GO_BUILD_P" -trimpath -tags "no_btrfs no_devmapper no_zfs no_aufs" \
        -ldflags "-s -w -X $mod/version.Version=$CONTAINERD_VERSION" -o "$BIN/" "${c_todo[@]/#/$mod/cmd/}")
    for b in "${c_todo[@]}"; do
        echo "$CONTAINERD_VERSION" >"$STAMPS/$b"
        echo "$b: $CONTAINERD_VERSION (built)"
    done
fi

# ---------------------------------------------------------------- kubelet, kube-proxy
k_bins=(kubelet kube-proxy)
k_todo=()
for b in "${k_bins[@]}"; do
    if is_current "$b" "$K8S_VERSION"; then echo "$b: $K8S_VERSION (cached)"; else k_todo+=("$b"); fi
done
if ((${#k_todo[@]})); then
    d="$WORK/kubernetes-node-$K8S_VERSION"
    staging_version="v0.${K8S_VERSION#v1.}"
    k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
    write_module "$d" localmodel.test/k8snodebuild "${k_bins[@]/#/k8s.io/kubernetes/cmd/}"
    (
        cd "$d"
        go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
        # k8s.io/kubernetes requires its staging modules at v0.0.0: replace every one (read from the
        # tagged go.mod; kubelet needs more of them than the control plane) with its v0.Y.Z.
        kmod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')"
        staging="$(grep -E '^\s*k8s\.io/[A-Za-z0-9._/-]+ v0\.0\.0(\s|$)' "$kmod" | awk '{print $1}' | sort -u)"
        [[ -n "$staging" ]] || { echo "build-node: no staging modules found in $kmod" >&2; exit 1; }
        for m in $staging; do go mod edit -replace="$m=$m@$staging_version"; done
        go mod tidy
    )
    ld=""
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor"
        ld+=" -X $p.gitTreeState=clean -X $p.gitCommit=module-$K8S_VERSION"
    done
    rm -f "${k_todo[@]/#/$BIN/}"
    (cd "$d" && go build -p "$GO_BUILD_P" -trimpath -ldflags "-s -w $ld" -o "$BIN/" "${k_todo[@]/#/k8s.io/kubernetes/cmd/}")
    for b in "${k_todo[@]}"; do
        echo "$K8S_VERSION" >"$STAMPS/$b"
        echo "$b: $K8S_VERSION (built)"
    done
fi
