#!/usr/bin/env bash
# runtime-deps.sh - the Debian 12 packages an installed kinesis2pg needs to run: the shared
# libraries CMakeLists.txt links (libc6 is in every Debian image) and the CA certificates
# libcurl verifies AWS endpoints with. Nothing else: the image's health check is a bash
# script (bash and coreutils are in every Debian image).
#
# Usage: docker/runtime-deps.sh             print the package names, one a line
#        docker/runtime-deps.sh --install   install the missing ones with apt (root; apt only
#                                           runs when something is missing)
#        docker/runtime-deps.sh --check     exit 0 if all are installed, else 1
#
# tests/integration/test_packaging.sh checks this list against the built binaries (ldd +
# dpkg -S): a library added to the link line without a package here fails that test.
set -euo pipefail

pkgs=(libcurl4 libmbedcrypto7 libpq5 libzstd1 zlib1g libcjson1 libmicrohttpd12 ca-certificates)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

mode=${1:---print}
case "$mode" in
    --print) printf '%s\n' "${pkgs[@]}"; exit 0 ;;
    --install|--check) ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "runtime-deps: unknown argument '$mode' (use --install or --check)" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ "$mode" = --check ]; then
    if ((${#missing[@]})); then
        echo "runtime-deps: missing: ${missing[*]}" >&2
        exit 1
    fi
    exit 0
fi
if ((${#missing[@]} == 0)); then
    echo "runtime-deps: all ${#pkgs[@]} packages installed" >&2
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "runtime-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
fi
echo "runtime-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
