#!/usr/bin/env bash
# build.sh - configure, build and install kinesis2pg for packaging: a Release build of the two
# programs (kinesis2pg, kinesis2pg-produce), installed stripped under PREFIX/bin together with
# the container health check (PREFIX/bin/kinesis2pg-healthcheck).
#
# The image's builder stage runs it (docker/Dockerfile), and so does
# tests/integration/test_packaging.sh on the host, so what the image does is tested by CI.
#
# Usage: docker/build.sh [options]
#   --source DIR     the kinesis2pg source tree (default: the one holding this script)
#   --build-dir DIR  CMake build directory (default: SOURCE/build-release; reused if present)
#   --prefix DIR     install prefix (default: /usr/local)
#   --destdir DIR    stage the install under DIR (DESTDIR): files land in DIR/PREFIX/bin
#   --jobs N         parallel build jobs (default: nproc)
#   --unit-tests     also build the unit tests and run them (ctest -L unit)
#
# Needs what docker/build-deps.sh installs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
build=
prefix=/usr/local
destdir=
jobs=$(nproc 2>/dev/null || echo 2)
unit=0

die() { echo "build: $*" >&2; exit 2; }
need() { if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value"; fi; }

while [ $# -gt 0 ]; do
    case "$1" in
        --source) need "$@"; src=$(cd "$2" && pwd); shift 2 ;;
        --build-dir) need "$@"; build=$2; shift 2 ;;
        --prefix) need "$@"; prefix=$2; shift 2 ;;
        --destdir) need "$@"; destdir=$2; shift 2 ;;
        --jobs) need "$@"; jobs=$2; shift 2 ;;
        --unit-tests) unit=1; shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[ -f "$src/CMakeLists.txt" ] || die "no CMakeLists.txt in $src"
case "$prefix" in /*) ;; *) die "--prefix must be an absolute path" ;; esac
[ -n "$build" ] || build=$src/build-release
if [ -n "$destdir" ]; then
    mkdir -p "$destdir"
    destdir=$(cd "$destdir" && pwd)
fi

echo "build: configure $src -> $build (Release)" >&2
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DK2P_INTEGRATION=OFF >/dev/null

echo "build: compile kinesis2pg and kinesis2pg-produce (-j$jobs)" >&2
cmake --build "$build" -j "$jobs" --target kinesis2pg kinesis2pg-produce

if [ "$unit" = 1 ]; then
    echo "build: unit tests" >&2
    cmake --build "$build" -j "$jobs"
    (cd "$build" && ctest --output-on-failure -L unit -j "$jobs")
fi

echo "build: install into ${destdir}${prefix} (stripped)" >&2
DESTDIR=$destdir cmake --install "$build" --prefix "$prefix" --strip >/dev/null
install -m 0755 "$here/healthcheck.sh" "${destdir}${prefix}/bin/kinesis2pg-healthcheck"

for f in kinesis2pg kinesis2pg-produce kinesis2pg-healthcheck; do
    [ -x "${destdir}${prefix}/bin/$f" ] || die "${destdir}${prefix}/bin/$f was not installed"
done
ls -l "${destdir}${prefix}/bin" >&2
