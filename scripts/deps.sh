#!/usr/bin/env bash
# Installs the Debian packages that building, testing and running Sandflow need.
# Idempotent: packages already present are skipped, and apt-get is not called at all
# when nothing is missing. Boost must be 1.81 (libboost-dev pulls 1.74, which conflicts).
set -euo pipefail

packages=(
    g++ cmake ninja-build ccache make pkg-config
    libboost1.81-dev libboost-json1.81-dev
    libcli11-dev libspdlog-dev libfmt-dev libexpected-dev
    libgtest-dev libgmock-dev
    libseccomp-dev
    libsqlite3-dev  # the durable state store (src/runtime/state/sqlite_store.cpp)
    redis-server  # tests and bench of the redis state store start their own
    bubblewrap  # only the baseline of bench/sandbox_bench; Sandflow does not use it
    python3 nodejs
    python3-websockets
    python3-yaml python3-numpy  # tests of package sets: a Python actor importing them
    runsc tini  # the gvisor backend and its sandboxes' init
    runc iproute2  # tests/container: the container matrix (runc containers, network namespaces)
    qemu-system-x86  # the microvm backend (QEMU's microvm machine); its guest kernel is fetched, not installed (scripts/microvm-image.sh)
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing missing Debian packages: ${missing[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
    else
        SUDO=
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The npm packages the tests of package sets use, exactly as package-lock.json pins them, from
# npm's registry into tests/data/npm/node_modules (not in git). Skipped when present; without
# npm or the registry the tests that need them report themselves skipped.
npm_dir="$(dirname "$0")/../tests/data/npm"
if [ ! -f "$npm_dir/node_modules/.package-lock.json" ]; then
    if command -v npm >/dev/null; then
        echo "deps: installing the tests' npm packages into $npm_dir/node_modules" >&2
        npm ci --prefix "$npm_dir" --no-audit --no-fund --loglevel=error >&2 ||
            echo "deps: npm ci failed; the tests that use npm packages will be skipped" >&2
    else
        echo "deps: npm is missing; the tests that use npm packages will be skipped" >&2
    fi
fi
