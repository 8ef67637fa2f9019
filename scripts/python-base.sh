#!/usr/bin/env bash
# Make the Python base image the Dockerfiles start from (PYTHON_IMAGE) available to the builder.
#
# Users with registry access get python:3.11.14-slim-bookworm pulled as usual. Where no registry can
# be reached (this project's CI machines), an equivalent base is built from Debian bookworm's own
# packages with debootstrap -- Debian's python3.11 with venv/ensurepip, apt, the passwd tools the
# Dockerfiles use -- and tagged under the same name, so the Dockerfiles build unchanged.
#
# Usage: scripts/python-base.sh BUILDER [IMAGE]   (BUILDER: podman, buildah or docker)
# Cache: the root filesystem tarball is kept in .cache/python-base/<key>.tar, where <key> hashes the
# recipe and the host's CA bundle, so a second run (or a fresh builder store) imports it in ~2 s
# instead of bootstrapping again (~1.5 min).
# Environment: DEBIAN_MIRROR (default: the first URI in this host's apt sources, else deb.debian.org).
set -euo pipefail
cd "$(dirname "$0")/.."

builder="${1:?usage: scripts/python-base.sh BUILDER [IMAGE]}"
image="${2:-python:3.11.14-slim-bookworm}"
# What `FROM python:...` resolves to in a builder's local store.
case "$image" in
    */*) full="$image" ;;
    *) full="docker.io/library/$image" ;;
esac

exists() {
    case "$builder" in
        docker) docker image inspect "$full" >/dev/null 2>&1 ;;
        *) "$builder" inspect --type image "$full" >/dev/null 2>&1 ;;
    esac
}

if exists; then
    echo "python-base: $full present" >&2
    exit 0
fi
# Pull quietly when a registry is reachable; time-box it so an unreachable registry fails fast.
if timeout 60 "$builder" pull "$full" >/dev/null 2>&1; then
    echo "python-base: pulled $full" >&2
    exit 0
fi
if [[ $full != */python:3.11*bookworm* ]]; then
    echo "python-base: cannot pull $full (only python:3.11-*bookworm has an offline equivalent here)" >&2
    exit 1
fi
echo "python-base: cannot pull $full; making an equivalent base from Debian packages" >&2

CACHE="$PWD/.cache/python-base"
# The cache key: what goes into the root (bump RECIPE when the steps below change) and the host CA
# bundle copied into it.
RECIPE="v1 bookworm minbase ca-certificates python3.11 python3.11-venv python-is-python3"
key="$({ echo "$RECIPE"; cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null; } | sha256sum | cut -c1-16)"
tarball="$CACHE/bookworm-python3.11-$key.tar"
mkdir -p "$CACHE"

if [[ ! -f $tarball ]]; then
    command -v debootstrap >/dev/null || { echo "python-base: debootstrap not found (scripts/install-container-tools.sh installs it)" >&2; exit 1; }
    mirror="${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)}"
    mirror="${mirror:-http://deb.debian.org/debian}"
    root="$(mktemp -d "$CACHE/root.XXXXXX")"
    # debootstrap mounts /proc and /sys inside the root while it configures packages: never let a
    # cleanup after a failure or an interrupt delete through a mount into the host.
    cleanup() {
        findmnt -rn -o TARGET | grep -F "$root/" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
        rm -rf --one-file-system "$root"
    }
    trap cleanup EXIT
    # debootstrap installs only the minimal base (its --include cannot order python3.11-venv's
    # configuration); apt-get inside the root adds the rest: python3.11-venv brings ensurepip (the
    # Dockerfiles run `python -m venv`), python-is-python3 gives `python`.
    debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" \
        >"$CACHE/debootstrap.log" 2>&1 || {
        echo "python-base: debootstrap failed; last lines of $CACHE/debootstrap.log:" >&2
        tail -n 15 "$CACHE/debootstrap.log" >&2
        exit 1
    }
    chroot "$root" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends python3.11 python3.11-venv python-is-python3' \
        >>"$CACHE/debootstrap.log" 2>&1 || {
        echo "python-base: installing python3.11 into the root failed; last lines of $CACHE/debootstrap.log:" >&2
        tail -n 15 "$CACHE/debootstrap.log" >&2
        exit 1
    }
    # This host may reach the network through a TLS-inspecting proxy whose CA only the host's bundle
    # holds: add the host bundle as a local CA, so update-ca-certificates (run by later apt installs)
    # keeps it rather than regenerating the bundle without it.
    if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
        cp /etc/ssl/certs/ca-certificates.crt "$root/usr/local/share/ca-certificates/host-ca-bundle.crt"
        chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
    fi
    # What python:slim also leaves out: apt's lists and caches, documentation, manual pages, locales.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log \
        "$root"/debootstrap
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
    tar --numeric-owner --one-file-system -C "$root" -cf "$tarball.tmp" .
    rm -f "$CACHE"/bookworm-python3.11-*.tar  # older recipes
    mv "$tarball.tmp" "$tarball"
    cleanup
    trap - EXIT
fi

changes=(
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    --change 'ENV LANG=C.UTF-8'
    --change 'CMD ["python3"]'
)
case "$builder" in
    docker) docker import "${changes[@]}" "$tarball" "$full" >/dev/null ;;
    buildah)
        # buildah has no `import`; podman and buildah share containers/storage, so use podman when present.
        if command -v podman >/dev/null; then podman import --quiet "${changes[@]}" "$tarball" "$full" >/dev/null
        else
            ctr="$(buildah from scratch)"
            buildah add "$ctr" "$tarball" / >/dev/null
            buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
                --env LANG=C.UTF-8 --cmd python3 "$ctr"
            buildah commit -q "$ctr" "$full" >/dev/null
            buildah rm "$ctr" >/dev/null
        fi ;;
    *) "$builder" import --quiet "${changes[@]}" "$tarball" "$full" >/dev/null ;;
esac
echo "python-base: $full built from Debian bookworm packages ($(du -h "$tarball" | cut -f1) root filesystem)" >&2
