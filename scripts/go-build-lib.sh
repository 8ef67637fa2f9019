# Shared by scripts/build-k8s.sh and scripts/build-node.sh (sourced, after BIN, STAMPS and GO_BUILD_P are
# set): building pinned Go programs from the module proxy into .cache/bin with a version stamp each.

# Never let `go` fetch a newer toolchain (that would need network beyond the proxy), build static
# binaries (no cgo toolchain needed), and do not stamp VCS info of this repo.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

is_current() { # NAME VERSION -> 0 when .cache/bin/NAME exists and was built at VERSION
    [[ -x "$BIN/$1" && -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]
}

# Write a throwaway module DIR whose tools.go blank-imports the main packages, so that
# `go mod tidy` records every dependency in go.sum (the tools.go pattern).
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

build_in() { # DIR OUTPUT LDFLAGS [GO BUILD FLAGS...] -- PACKAGE... (OUTPUT ending in / = one binary per package)
    local dir="$1" out="$2" ldflags="$3"; shift 3
    local flags=()
    while [[ $# -gt 0 && $1 != -- ]]; do flags+=("$1"); shift; done
    [[ ${1:-} == -- ]] && shift
    (cd "$dir" && go build -p "$GO_BUILD_P" -trimpath "${flags[@]}" -ldflags "-s -w $ldflags" -o "$out" "$@")
}
