#!/usr/bin/env bash
# Install the headless browser the console's tests drive (tests/console): Debian's chromium and
# chromium-driver, the driver matching the browser because both come from one source package. Selenium
# (the dev extra) talks to /usr/bin/chromedriver; nothing is downloaded at test time.
#
# Idempotent: nothing is installed when both commands are already there. Debian's packages are not
# pinned to an exact patch release (a security update replaces them on the mirror and an exact pin would
# then fail to install); the tests were checked with bookworm-security's 156.0.8078.129-1~deb12u1, and
# a major version below 120 is refused.
set -euo pipefail

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)

if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-browser: needs root to install ${need[*]} (apt-get)" >&2
        exit 1
    fi
    command -v apt-get >/dev/null || {
        echo "install-browser: no apt-get; install ${need[*]} with this system's package manager" >&2
        exit 1
    }
    echo "install-browser: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" fonts-dejavu-core >/dev/null
fi

major="$(chromium --version 2>/dev/null | grep -oE '[0-9]+' | head -n1)"
if [[ -z $major || $major -lt 120 ]]; then
    echo "install-browser: chromium 120 or newer is needed (found '$(chromium --version 2>&1)')" >&2
    exit 1
fi
echo "install-browser: $(chromium --version), $(chromedriver --version | cut -d' ' -f1-2)" >&2
