#!/usr/bin/env bash
# Build a Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) and helm from Go modules into .cache/bin/.
#
# Why from modules: kind needs Docker, which these machines do not run, and only the Go
# module proxy is reachable (no release tarballs). See DESIGN.md, "Testing on a real
# control plane without Docker".
#
# Idempotent: every binary has a stamp file (.cache/bin/.stamps/NAME) holding the pinned
# version it was built at; a binary whose stamp matches is not rebuilt. Go's default module
# and build caches are used, so a rebuild on the same machine is fast.
#
# Environment knobs: GO_BUILD_P (parallelism, default 2 -- the machines are small and
# shared), K8S_VERSION / ETCD_VERSION / HELM_VERSION to override the pins.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
GO_BUILD_P="${GO_BUILD_P:-2}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.cache/bin"
STAMPS="$BIN/.stamps"
WORK="$ROOT/.cache/k8s-build"
mkdir -p "$BIN" "$STAMPS" "$WORK"

# shellcheck source=scripts/go-build-lib.sh
source "$ROOT/scripts/go-build-lib.sh"
command -v go >/dev/null || { echo "build-k8s: 'go' not found on PATH" >&2; exit 1; }

# A released version "vX.Y.Z" -> the staging modules' "v0.Y.Z".
k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# ---------------------------------------------------------------- etcd
if is_current etcd "$ETCD_VERSION"; then
    echo "etcd: $ETCD_VERSION (cached)"
else
    # server/v3's own go.mod has `replace ../api` lines, so `go install` fails; as a
    # dependency those replaces are ignored and sibling modules resolve at their tags.
    d="$WORK/etcd-$ETCD_VERSION"
    write_module "$d" localmodel.test/etcdbuild go.etcd.io/etcd/server/v3
    (cd "$d" && go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy)
    rm -f "$BIN/etcd"
    build_in "$d" "$BIN/etcd" "-X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}" -- go.etcd.io/etcd/server/v3
    echo "$ETCD_VERSION" >"$STAMPS/etcd"
    echo "etcd: $ETCD_VERSION (built)"
fi

# ---------------------------------------------------------------- kubernetes
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
# NODE=1 (scripts/build-node.sh): a real node's kubelet and kube-proxy too, from the same build module.
if [[ ${NODE:-0} == 1 ]]; then K8S_BINS+=(kubelet kube-proxy); fi
k8s_todo=()
for b in "${K8S_BINS[@]}"; do
    if is_current "$b" "$K8S_VERSION"; then echo "$b: $K8S_VERSION (cached)"; else k8s_todo+=("$b"); fi
done
if ((${#k8s_todo[@]})); then
    d="$WORK/kubernetes-$K8S_VERSION"
    pkgs=(); for b in "${k8s_todo[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
    write_module "$d" localmodel.test/k8sbuild "${K8S_BINS[@]/#/k8s.io/kubernetes/cmd/}"
    (
        cd "$d"
        go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
        # k8s.io/kubernetes requires its staging modules at v0.0.0, which the proxy does not
        # have: replace EVERY one of them (the list grows each release, so read it from the
        # tagged go.mod rather than hard-coding it) with its published v0.Y.Z.
        kmod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')"
        staging="$(grep -E '^\s*k8s\.io/[A-Za-z0-9._/-]+ v0\.0\.0(\s|$)' "$kmod" | awk '{print $1}' | sort -u)"
        [[ -n "$staging" ]] || { echo "build-k8s: no staging modules found in $kmod" >&2; exit 1; }
        for m in $staging; do go mod edit -replace="$m=$m@$STAGING_VERSION"; done
        go mod tidy
    )
    # What hack/lib/version.sh stamps, for both version packages, so /version reports the
    # pinned release (and compatibility-version checks see a real version, not v0.0.0).
    ld=""
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor"
        ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$BUILD_DATE -X $p.gitCommit=module-$K8S_VERSION"
    done
    rm -f "${k8s_todo[@]/#/$BIN/}"
    build_in "$d" "$BIN/" "$ld" -- "${pkgs[@]}"
    for b in "${k8s_todo[@]}"; do
        echo "$K8S_VERSION" >"$STAMPS/$b"
        echo "$b: $K8S_VERSION (built)"
    done
fi

# ---------------------------------------------------------------- helm
# The stamp names what the build bakes in besides the version: helm's Makefile stamps the Kubernetes
# version of its client-go into chartutil (and the linter), and a helm built without it takes itself
# for Kubernetes v1.20 and refuses any chart with a newer `kubeVersion`.
HELM_STAMP="$HELM_VERSION+kubeversion"
if is_current helm "$HELM_STAMP"; then
    echo "helm: $HELM_VERSION (cached)"
else
    d="$WORK/helm-$HELM_VERSION"
    write_module "$d" localmodel.test/helmbuild helm.sh/helm/v3/cmd/helm
    (cd "$d" && go mod edit -require="helm.sh/helm/v3@$HELM_VERSION" && go mod tidy)
    # client-go v0.Y.Z is Kubernetes v1.Y.Z.
    client_go="$(cd "$d" && go list -m -f '{{.Version}}' k8s.io/client-go)"
    kube_minor="${client_go#v0.}"; kube_minor="${kube_minor%%.*}"
    ld="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    ld+=" -X helm.sh/helm/v3/internal/version.gitCommit=module-$HELM_VERSION"
    for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
        ld+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$kube_minor"
    done
    rm -f "$BIN/helm"
    build_in "$d" "$BIN/helm" "$ld" -- helm.sh/helm/v3/cmd/helm
    echo "$HELM_STAMP" >"$STAMPS/helm"
    echo "helm: $HELM_VERSION, Kubernetes v1.$kube_minor (built)"
fi
