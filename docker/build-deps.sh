#!/usr/bin/env bash
# build-deps.sh - the Debian 12 packages needed to build kinesis2pg (compiler, CMake and the
# -dev packages of the libraries it links). The image's builder stage runs it; so can a host.
#
# Usage: docker/build-deps.sh           install what is missing (needs root; apt only runs
#                                       when something is missing, so a second run is instant)
#        docker/build-deps.sh --print   print the package names, one a line
#        docker/build-deps.sh --check   exit 0 if all are installed, else 1 and name the rest
#
# libcmocka-dev is only for the unit tests, and libnghttp2-dev only for tests/mock_kinesis (its
# HTTP/2 server), but tests/CMakeLists.txt needs both at configure time.
set -euo pipefail

pkgs=(gcc libc6-dev make cmake pkg-config
      libcurl4-openssl-dev libmbedtls-dev libpq-dev libzstd-dev zlib1g-dev libcjson-dev libmicrohttpd-dev
      libcmocka-dev libnghttp2-dev)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

mode=${1:-install}
case "$mode" in
    --print) printf '%s\n' "${pkgs[@]}"; exit 0 ;;
    --check|install) ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deps: unknown argument '$mode' (use --print or --check)" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
    installed "$p" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    [ "$mode" = --check ] || echo "build-deps: all ${#pkgs[@]} packages installed" >&2
    exit 0
fi
if [ "$mode" = --check ]; then
    echo "build-deps: missing: ${missing[*]}" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "build-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
fi
echo "build-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
