#!/usr/bin/env bash
# smoke.sh - checks that an installed kinesis2pg runs: its libraries resolve, --version and
# --help answer, usage errors exit 2, a runtime failure exits 1 without printing the secret it
# was given, and the health check answers. No network, database or Kinesis needed.
#
# Usage: docker/smoke.sh [BINDIR] [--expect-version X.Y.Z]
#   BINDIR: where kinesis2pg, kinesis2pg-produce and kinesis2pg-healthcheck are
#           (default: the directory of `kinesis2pg` on PATH)
#
# The image runs it on its final stage (so a missing runtime library fails the build), and
# tests/integration/test_packaging.sh runs it on what docker/build.sh installed.
set -euo pipefail

bindir=
expect_version=
while [ $# -gt 0 ]; do
    case "$1" in
        --expect-version) expect_version=${2:?--expect-version needs a value}; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "smoke: unknown option '$1'" >&2; exit 2 ;;
        *) bindir=$1; shift ;;
    esac
done
if [ -z "$bindir" ]; then
    k=$(command -v kinesis2pg) || { echo "smoke: kinesis2pg is not on PATH" >&2; exit 2; }
    bindir=$(dirname "$k")
fi
bindir=$(cd "$bindir" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/k2p-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0
checks=0
ok() { checks=$((checks + 1)); echo "smoke: ok   $*"; }
bad() { checks=$((checks + 1)); failures=$((failures + 1)); echo "smoke: FAIL $*" >&2; }

# Runs a command in an empty directory with a clean environment (no .dlt files, no AWS or
# libpq variables from the caller) and stdin from /dev/null; sets $rc and $out (stdout);
# stdout and stderr stay in $work/out and $work/err.
run() {
    set +e
    (cd "$work/cwd" && env -i PATH="$bindir:/usr/bin:/bin" HOME="$work/home" LANG=C.UTF-8 \
        "$@" </dev/null >"$work/out" 2>"$work/err")
    rc=$?
    set -e
    out=$(cat "$work/out")
}
mkdir -p "$work/cwd" "$work/home"

# Exit status RC and, optionally, a fixed string that stdout+stderr must contain.
expect() {
    local want=$1 grep_for=$2 what=$3
    if [ "$rc" != "$want" ]; then
        bad "$what: exit $rc, want $want; stderr: $(head -c 300 "$work/err")"
    elif [ -n "$grep_for" ] && ! grep -qF -- "$grep_for" "$work/out" "$work/err"; then
        bad "$what: output lacks '$grep_for'"
    else
        ok "$what (exit $rc)"
    fi
}

for f in kinesis2pg kinesis2pg-produce kinesis2pg-healthcheck; do
    if [ -x "$bindir/$f" ]; then ok "$bindir/$f is installed"; else bad "$bindir/$f is missing"; fi
done

if command -v ldd >/dev/null 2>&1; then
    for f in kinesis2pg kinesis2pg-produce; do
        if ! libs=$(ldd "$bindir/$f" 2>&1); then
            bad "ldd $f failed: $libs"
        elif grep -q "not found" <<<"$libs"; then
            bad "$f: missing libraries: $(grep "not found" <<<"$libs" | tr -s ' \t\n' ' ')"
        else
            ok "$f: every shared library found"
        fi
    done
fi

run kinesis2pg --version
expect 0 "kinesis2pg " "kinesis2pg --version"
if [ -n "$expect_version" ]; then
    if [ "$out" = "kinesis2pg $expect_version" ]; then ok "version is $expect_version"
    else bad "version: '$out', want 'kinesis2pg $expect_version'"; fi
fi
run kinesis2pg --help
expect 0 "kinesis2pg load --stream NAME" "kinesis2pg --help"
run kinesis2pg load --help
expect 0 "--metrics-addr" "kinesis2pg load --help"
run kinesis2pg-produce --help
expect 0 "Usage: kinesis2pg-produce" "kinesis2pg-produce --help"

run kinesis2pg --no-such-option
expect 2 "unknown option" "unknown option exits 2"
run kinesis2pg frobnicate
expect 2 "unknown command" "unknown command exits 2"
run kinesis2pg load
expect 2 "no stream" "load without a stream exits 2"
run kinesis2pg load --stream smoke --region us-east-1 --writers 0
expect 2 "--writers" "bad --writers exits 2"
run kinesis2pg reset --stream smoke
expect 2 "--yes" "reset without --yes and without a terminal exits 2"

# A runtime failure (libpq really runs): exit 1, naming what failed, never the password.
run kinesis2pg status --stream smoke --pg "host=$work/no-such-dir user=smoke password=smoke-s3cret-pw"
expect 1 "PostgreSQL" "unreachable PostgreSQL exits 1"
if grep -qF "smoke-s3cret-pw" "$work/out" "$work/err"; then
    bad "the password given with --pg was printed"
else
    ok "the password given with --pg is not printed"
fi

# The health check: a closed port is unhealthy (exit 1), with one line saying why.
run env K2P_HEALTHCHECK_ADDR=127.0.0.1:1 kinesis2pg-healthcheck
expect 1 "unhealthy" "health check of a closed port exits 1"

echo "smoke: $((checks - failures)) passed, $failures failed"
[ "$failures" = 0 ]
