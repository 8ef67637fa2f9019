#!/usr/bin/env bash
# Install the container tools the image builds and the image tests use, from Debian's packages:
# podman and buildah (builders), runc (the OCI runtime: crun refuses hybrid cgroup v1 layouts),
# containernetworking-plugins and iptables (bridge networking with NAT for builds that fetch from
# PyPI), debootstrap (the offline Python base, scripts/python-base.sh).
#
# Idempotent: nothing is installed when every command is already there. Debian's stable versions
# are not pinned to an exact patch release: a point release replaces them on the mirror and an exact
# pin would then fail to install. The versions this project was checked with are bookworm's
# podman 4.3, buildah 1.28, runc 1.1.5 and debootstrap 1.0.128; major versions below those are refused.
set -euo pipefail

need=()
command -v podman >/dev/null || need+=(podman)
command -v buildah >/dev/null || need+=(buildah)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v iptables >/dev/null || need+=(iptables)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)

if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-container-tools: needs root to install ${need[*]} (apt-get)" >&2
        exit 1
    fi
    command -v apt-get >/dev/null || {
        echo "install-container-tools: no apt-get; install ${need[*]} with this system's package manager" >&2
        exit 1
    }
    echo "install-container-tools: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # uidmap/slirp4netns/fuse-overlayfs are for rootless use; as root, overlay and CNI suffice.
    apt-get install -y -qq --no-install-recommends "${need[@]}" ca-certificates >/dev/null
fi

podman_major="$(podman version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)"
if [[ -z $podman_major || $podman_major -lt 4 ]]; then
    echo "install-container-tools: podman 4 or newer is needed (found '$(podman --version 2>&1)')" >&2
    exit 1
fi
echo "install-container-tools: $(podman --version), $(buildah --version | cut -d' ' -f1-3), $(runc --version | head -n1)" >&2
