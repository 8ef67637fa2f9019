#!/usr/bin/env bash
# Build (and push) the localmodel images where Docker exists:
#   {REGISTRY}/operator:{TAG}                   operator/Dockerfile (operator and router)
#   {REGISTRY}/runtime:{TAG}-<target>           runtime/Dockerfile, one per build target
# The names match the operator's image table (operator/localmodel_operator/defaults.yaml) and the
# chart's values (`registry`, `tag`).
#
# Usage: scripts/images.sh [build|push|list] [TARGET...]
#   build  build the operator image and the runtime targets (default: all of them)
#   push   build, then push every image built
#   list   print the image names, build nothing
# Environment: REGISTRY (default ghcr.io/localmodel), TAG (default: the version in pyproject.toml),
#   DOCKER (default docker), PLATFORM (e.g. linux/amd64; default: the builder's), BUILD_ARGS (extra
#   arguments for `docker build`, e.g. "--build-arg PYTHON_IMAGE=mirror/python:3.11.14-slim-bookworm").
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_TARGETS=(llama-cpp-cpu llama-cpp-cuda vllm-cuda transformers-cpu transformers-cuda openvino
             autogptq-cpu autogptq-cuda exllamav2-cuda rwkv)
REGISTRY="${REGISTRY:-ghcr.io/localmodel}"
TAG="${TAG:-$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n1)}"
DOCKER="${DOCKER:-docker}"
action="${1:-build}"
[[ $# -gt 0 ]] && shift
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=("${ALL_TARGETS[@]}")

for t in "${targets[@]}"; do
    if [[ " ${ALL_TARGETS[*]} " != *" $t "* && $t != operator ]]; then
        echo "images: unknown target '$t' (known: operator ${ALL_TARGETS[*]})" >&2
        exit 2
    fi
done

operator_image="$REGISTRY/operator:$TAG"
runtime_image() { echo "$REGISTRY/runtime:$TAG-$1"; }

images=()
[[ $# -eq 0 || " ${targets[*]} " == *" operator "* ]] && images+=("$operator_image")
for t in "${targets[@]}"; do [[ $t == operator ]] || images+=("$(runtime_image "$t")"); done

if [[ $action == list ]]; then
    printf '%s\n' "${images[@]}"
    exit 0
fi
if [[ $action != build && $action != push ]]; then
    echo "usage: scripts/images.sh [build|push|list] [TARGET...]" >&2
    exit 2
fi

command -v "$DOCKER" >/dev/null || { echo "images: '$DOCKER' not found; images need Docker" >&2; exit 1; }
common=(--label "org.opencontainers.image.version=$TAG")
[[ -n ${PLATFORM:-} ]] && common+=(--platform "$PLATFORM")
# shellcheck disable=SC2206  # BUILD_ARGS is a word list on purpose
[[ -n ${BUILD_ARGS:-} ]] && common+=($BUILD_ARGS)

for image in "${images[@]}"; do
    if [[ $image == "$operator_image" ]]; then
        echo "images: building $image" >&2
        "$DOCKER" build "${common[@]}" -f operator/Dockerfile -t "$image" .
    else
        target="${image##*:"$TAG"-}"
        echo "images: building $image (target $target)" >&2
        "$DOCKER" build "${common[@]}" -f runtime/Dockerfile --target "$target" -t "$image" .
    fi
done
if [[ $action == push ]]; then
    for image in "${images[@]}"; do
        echo "images: pushing $image" >&2
        "$DOCKER" push "$image"
    done
fi
