#!/usr/bin/env bash
# Build (and push) the localmodel images with docker, podman or buildah:
#   {REGISTRY}/operator:{TAG}                   operator/Dockerfile (operator and router)
#   {REGISTRY}/runtime:{TAG}-<target>           runtime/Dockerfile, one per build target
# The names match the operator's image table (operator/localmodel_operator/defaults.yaml) and the
# chart's values (`registry`, `tag`).
#
# Usage: scripts/images.sh [build|push|list] [TARGET...]
#   build  build the operator image and the runtime targets (default: every target that builds
#          without a GPU toolchain: operator and the CPU runtime targets; name CUDA targets to build them)
#   push   build, then push every image built
#   list   print the image names (default: all of them, CUDA targets included), build nothing
# Environment:
#   BUILDER     docker, podman or buildah (default: the first of them that works on this machine)
#   REGISTRY    default ghcr.io/localmodel; a registry on 127.0.0.1/localhost is pushed to without TLS
#   TAG         default: the version in pyproject.toml
#   PLATFORM    e.g. linux/amd64 (default: the builder's)
#   BUILD_ARGS  extra build arguments, e.g. "--build-arg PYTHON_IMAGE=mirror/python:3.11.14-slim-bookworm"
#   TORCH_CPU_INDEX  where transformers-cpu, openvino and autogptq-cpu get CPU-only torch (default: the
#               Dockerfile's, download.pytorch.org/whl/cpu); checked before building. https://pypi.org/simple
#               works too but gives the CUDA build (images ~6 GB instead of ~1.5).
#   PYTHON_IMAGE  the Python base (default python:3.11.14-slim-bookworm); when it cannot be pulled,
#               scripts/python-base.sh builds an equivalent one from Debian packages under that name.
# Each image's size and build time are written to .cache/images/sizes.tsv; build logs to .cache/images/logs.
set -euo pipefail
cd "$(dirname "$0")/.."

CPU_TARGETS=(llama-cpp-cpu transformers-cpu openvino autogptq-cpu rwkv)
CUDA_TARGETS=(llama-cpp-cuda vllm-cuda transformers-cuda autogptq-cuda exllamav2-cuda)
ALL_TARGETS=("${CPU_TARGETS[@]}" "${CUDA_TARGETS[@]}")
REGISTRY="${REGISTRY:-ghcr.io/localmodel}"
TAG="${TAG:-$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n1)}"
PYTHON_IMAGE="${PYTHON_IMAGE:-python:3.11.14-slim-bookworm}"
OUT="$PWD/.cache/images"
action="${1:-build}"
[[ $# -gt 0 ]] && shift
targets=("$@")
# By default `list` names every image the project defines; build and push take the ones that build
# without a GPU toolchain.
if [[ ${#targets[@]} -eq 0 ]]; then
    if [[ $action == list ]]; then targets=(operator "${ALL_TARGETS[@]}"); else targets=(operator "${CPU_TARGETS[@]}"); fi
fi

for t in "${targets[@]}"; do
    if [[ " ${ALL_TARGETS[*]} " != *" $t "* && $t != operator ]]; then
        echo "images: unknown target '$t' (known: operator ${ALL_TARGETS[*]})" >&2
        exit 2
    fi
done
if [[ $action != build && $action != push && $action != list ]]; then
    echo "usage: scripts/images.sh [build|push|list] [TARGET...]" >&2
    exit 2
fi

image_of() { # TARGET -> image name
    if [[ $1 == operator ]]; then echo "$REGISTRY/operator:$TAG"; else echo "$REGISTRY/runtime:$TAG-$1"; fi
}
if [[ $action == list ]]; then
    for t in "${targets[@]}"; do image_of "$t"; done
    exit 0
fi

# ------------------------------------------------------------------------------ the registry
# Checked before building, so an unreachable registry costs seconds, not a build.
tls=()
if [[ $action == push ]]; then
    host="${REGISTRY%%/*}"
    if [[ $host == 127.0.0.1:* || $host == localhost:* || $host == localhost || $host == 127.0.0.1 ]]; then
        # A registry on this machine serves plain HTTP (as `registry` does by default); docker
        # treats 127.0.0.0/8 as insecure by itself, podman and buildah are told.
        tls=(--tls-verify=false)
        scheme=http
    else
        scheme=https
    fi
    if ! curl -sS -o /dev/null --max-time 10 "$scheme://$host/v2/" 2>/dev/null; then
        echo "images: registry $host unreachable ($scheme://$host/v2/)" >&2
        exit 1
    fi
fi

# ------------------------------------------------------------------------------ the builder
works() { # BUILDER -> 0 when it can build here (a docker CLI without a daemon does not count)
    case "$1" in
        docker) command -v docker >/dev/null && docker info >/dev/null 2>&1 ;;
        podman | buildah) command -v "$1" >/dev/null && "$1" info >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}
if [[ -n ${BUILDER:-} ]]; then
    works "$BUILDER" || { echo "images: BUILDER=$BUILDER does not work on this machine ('$BUILDER info' fails)" >&2; exit 1; }
else
    for b in docker podman buildah; do
        if works "$b"; then BUILDER=$b; break; fi
    done
    [[ -n ${BUILDER:-} ]] || {
        echo "images: no working container builder: install docker, podman or buildah (or set BUILDER=)" >&2
        exit 1
    }
fi

common=(--label "org.opencontainers.image.version=$TAG" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
case "$BUILDER" in
    docker) build=(docker build) ;;
    podman) build=(podman build --layers) ;;
    buildah) build=(buildah build --layers) ;;
esac
if [[ $BUILDER != docker ]]; then
    # runc refuses to raise rlimits without CAP_SYS_RESOURCE, and podman's default nproc (32768) is
    # above some hosts' hard limit: ask for limits every host grants.
    common+=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
fi
[[ -n ${PLATFORM:-} ]] && common+=(--platform "$PLATFORM")
# shellcheck disable=SC2206  # BUILD_ARGS is a word list on purpose
[[ -n ${BUILD_ARGS:-} ]] && common+=($BUILD_ARGS)

TORCH_TARGETS=(transformers-cpu openvino autogptq-cpu)
torch_index="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
[[ -n ${TORCH_CPU_INDEX:-} ]] && common+=(--build-arg "TORCH_CPU_INDEX=$TORCH_CPU_INDEX")
for t in "${targets[@]}"; do
    if [[ " ${TORCH_TARGETS[*]} " == *" $t "* ]] && ! curl -sS -o /dev/null --max-time 15 "$torch_index/torch/" 2>/dev/null; then
        echo "images: $t needs torch's CPU wheels from $torch_index, which is unreachable: set TORCH_CPU_INDEX to a mirror" >&2
        exit 1
    fi
done

needs_python_base=0
for t in "${targets[@]}"; do
    [[ $t == operator || " ${CPU_TARGETS[*]} vllm-cuda transformers-cuda " == *" $t "* ]] && needs_python_base=1
done
((needs_python_base)) && scripts/python-base.sh "$BUILDER" "$PYTHON_IMAGE"

# llama-cpp-python, compiled once per machine: `make setup` builds its wheel with the llama-cpp-cpu
# target's own CMake flags into .cache/wheels/llama-cpp (see scripts/setup.sh); the image build
# receives that folder as the build context `llama-wheels` and installs the wheel when it was built
# with the same flags and glibc as the image (runtime/Dockerfile checks BUILD_INFO), else compiles.
LLAMA_WHEELS="$PWD/.cache/wheels/llama-cpp"
llama_ctx=()
if [[ -f $LLAMA_WHEELS/BUILD_INFO ]]; then
    llama_ctx=(--build-context "llama-wheels=$LLAMA_WHEELS")
fi

# ------------------------------------------------------------------------------ building
mkdir -p "$OUT/logs"
[[ -f $OUT/sizes.tsv ]] || printf 'image\tbuilder\tbytes\tbuild_seconds\tdate\n' >"$OUT/sizes.tsv"

size_of() { # IMAGE -> bytes
    case "$BUILDER" in
        docker) docker image inspect --format '{{.Size}}' "$1" ;;
        *) "$BUILDER" inspect --type image --format '{{.Size}}' "$1" ;;
    esac
}

built=()
for t in "${targets[@]}"; do
    image="$(image_of "$t")"
    log="$OUT/logs/$t.log"
    if [[ $t == operator ]]; then
        args=(-f operator/Dockerfile)
    else
        args=(-f runtime/Dockerfile --target "$t")
        [[ $t == llama-cpp-cpu ]] && args+=("${llama_ctx[@]}")
    fi
    echo "images: building $image with $BUILDER (log: $log)" >&2
    start=$SECONDS
    if ! "${build[@]}" "${common[@]}" "${args[@]}" -t "$image" . >"$log" 2>&1; then
        # The last step the builder announced: podman/buildah print "[stage/stages] STEP n/m: ...",
        # BuildKit "#n [stage n/m] ...".
        step="$(grep -E '^((\[[0-9]+/[0-9]+\] )?STEP [0-9]+/[0-9]+: |#[0-9]+ \[)' "$log" | tail -n1 | cut -c1-200)"
        echo "images: building target $t failed at: ${step:-(no step reached)}" >&2
        tail -n 15 "$log" | sed 's/^/images:   /' >&2
        exit 1
    fi
    secs=$((SECONDS - start))
    bytes="$(size_of "$image")"
    printf '%s\t%s\t%s\t%s\t%s\n' "$image" "$BUILDER" "$bytes" "$secs" "$(date -u +%FT%TZ)" >>"$OUT/sizes.tsv"
    echo "images: built $image: $((bytes / 1000000)) MB in ${secs}s" >&2
    built+=("$image")
done

# ------------------------------------------------------------------------------ pushing
if [[ $action == push ]]; then
    [[ $BUILDER == docker ]] && tls=()  # docker has no --tls-verify (and needs none for 127.0.0.1)
    for image in "${built[@]}"; do
        echo "images: pushing $image" >&2
        "$BUILDER" push "${tls[@]}" "$image" >"$OUT/logs/push.log" 2>&1 || {
            echo "images: pushing $image failed:" >&2
            tail -n 5 "$OUT/logs/push.log" | sed 's/^/images:   /' >&2
            exit 1
        }
    done
fi
