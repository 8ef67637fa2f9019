#!/usr/bin/env bash
# Build the Go programs the container tests need into .cache/bin/, from Go modules:
#   registry   the CNCF distribution registry (github.com/distribution/distribution/v3/cmd/registry),
#              the registry `make images PUSH=1` pushes to in the tests, as a user's own registry would be.
#
# Same conventions as scripts/build-k8s.sh: pinned versions, a stamp per binary
# (.cache/bin/.stamps/NAME holds the version it was built at; a matching stamp means no rebuild),
# a throwaway module per program under .cache/node-build, Go's default module and build caches,
# GOTOOLCHAIN=local, static binaries (CGO_ENABLED=0).
#
# Environment knobs: GO_BUILD_P (parallelism, default 2), REGISTRY_VERSION to override the pin.
set -euo pipefail

REGISTRY_VERSION="${REGISTRY_VERSION:-v3.1.2}"
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
