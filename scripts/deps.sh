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

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "deps: installing missing Debian packages: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
