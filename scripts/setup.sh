#!/usr/bin/env bash
# setup.sh - installs everything kinesis2pg's build, tests and demo need on Debian 12.
#
# Idempotent and quick when everything is already there: it installs only missing apt
# packages, and reinstalls the npm emulators only when their lockfile changed.
# Run as root (it uses apt-get); as another user it only checks and reports.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)

apt_pkgs=(build-essential make cmake pkg-config clang libclang-rt-14-dev
          libcurl4-openssl-dev libnghttp2-dev libmbedtls-dev libpq-dev libzstd-dev zlib1g-dev libcjson-dev libjansson-dev libcmocka-dev libmicrohttpd-dev
          postgresql postgresql-client python3 python3-botocore python3-boto3 ca-certificates
          procps util-linux)

missing=()
for p in "${apt_pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
# Node.js: any node + npm on PATH will do (Debian's nodejs/npm, or another build).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    missing+=(nodejs npm)
fi

if ((${#missing[@]})); then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing packages: ${missing[*]} (run this script as root to install)" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian postgresql package starts a system cluster; tests never use it (they initdb their
# own on a free loopback port), so leave it alone.

# Kinesis emulators from npm, pinned by package-lock.json, in a project-local folder.
emu="$here/tests/emulators"
stamp="$emu/node_modules/.k2p-lock-sha"
want=$(sha256sum "$emu/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing Kinesis emulators (npm ci)" >&2
    (cd "$emu" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" > "$stamp"
fi
# promtool (validates the /metrics exposition in tests), taken from Debian's prometheus package
# without installing it: installing would register a Prometheus server daemon on this machine.
prom="$here/.deps/prometheus"
if [ ! -x "$prom/usr/bin/promtool" ]; then
    echo "setup: extracting promtool from Debian's prometheus package" >&2
    mkdir -p "$here/.deps/dl"
    if ! (cd "$here/.deps/dl" && apt-get download prometheus >/dev/null 2>&1); then
        apt-get update -qq   # package lists may be missing on a machine that had everything else
        (cd "$here/.deps/dl" && apt-get download prometheus >/dev/null)
    fi
    dpkg-deb -x "$here"/.deps/dl/prometheus_*.deb "$prom.tmp"
    rm -rf "$prom" && mv "$prom.tmp" "$prom"
    rm -rf "$here/.deps/dl"
fi
exit 0
