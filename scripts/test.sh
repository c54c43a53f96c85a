#!/usr/bin/env bash
# test.sh - the one command that installs what is missing, builds, and runs every test
# (ASan+UBSan and TSan builds of the suite, a short libFuzzer run of each fuzz target, then the
# normal build's suite). Works on a fresh Debian 12 as root; `make test` is the same once the
# build tools are installed. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec make test
