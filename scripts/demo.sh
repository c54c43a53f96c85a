#!/usr/bin/env bash
# demo.sh - kinesis2pg end to end on this machine, with nothing left behind (`make demo`).
#
# Installs what is missing (scripts/setup.sh), builds into build/, starts kinesalite (a local
# Kinesis emulator) and a throw-away PostgreSQL (scripts/tmp-postgres.sh), creates a 4-shard
# stream, puts ~10,000 JSON events of which 5 are invalid, loads them with
# `kinesis2pg load --from trim_horizon`, shows the run summary, the row count, a few rows, the
# dead letters and the runs table, then runs the loader again to show that nothing new is
# loaded. Both servers are stopped and the temp dir removed on exit, also when a step fails or
# the demo is interrupted.
#
# The emulator accepts any credentials: the demo sets dummy AWS keys for its own processes.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

STREAM=demo
EVENTS=10000
INVALID=5
BUILD=${BUILD:-build}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

work=""
kl_pid=""
pg_started=0

cleanup() {
    local rc=$?
    set +e
    if [ -n "$kl_pid" ]; then
        exec 3>&- # kinesalite exits when its stdin closes
        kill "$kl_pid" 2>/dev/null
        wait "$kl_pid" 2>/dev/null
    fi
    if [ "$pg_started" = 1 ]; then
        bash "$here/scripts/tmp-postgres.sh" stop "$work/pg"
    fi
    [ -n "$work" ] && rm -rf "$work"
    if [ "$rc" != 0 ]; then
        echo "demo: failed (exit $rc); servers stopped" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "setup (installs missing packages; quick when everything is there)"
bash scripts/setup.sh

step "build into $BUILD/"
cmake -S . -B "$BUILD" >/dev/null
if ! cmake --build "$BUILD" -j "$(nproc)" --target kinesis2pg kinesis2pg-produce \
    >"$BUILD/demo-build.log" 2>&1; then
    cat "$BUILD/demo-build.log" >&2
    exit 1
fi
echo "built $BUILD/kinesis2pg and $BUILD/kinesis2pg-produce"
loader="$here/$BUILD/kinesis2pg"
produce="$here/$BUILD/kinesis2pg-produce"

work=$(mktemp -d "${TMPDIR:-/tmp}/k2p-demo-XXXXXX")
chmod 711 "$work" # the PostgreSQL server user must reach $work/pg when we are root

step "start kinesalite on 127.0.0.1"
mkfifo "$work/kinesalite.in"
(cd tests/emulators && exec node kinesalite-server.js 0 <"$work/kinesalite.in" >"$work/kinesalite.port") &
kl_pid=$!
# Hold its stdin open until cleanup (read-write: opening never blocks, even if node failed).
exec 3<>"$work/kinesalite.in"
for _ in $(seq 300); do
    [ -s "$work/kinesalite.port" ] && break
    kill -0 "$kl_pid" 2>/dev/null || { echo "demo: kinesalite exited" >&2; exit 1; }
    sleep 0.1
done
[ -s "$work/kinesalite.port" ] || { echo "demo: kinesalite did not start in 30 s" >&2; exit 1; }
endpoint="http://127.0.0.1:$(head -n 1 "$work/kinesalite.port")"
echo "kinesalite: $endpoint"

step "start a throw-away PostgreSQL"
pg_started=1
conninfo=$(bash scripts/tmp-postgres.sh start "$work/pg" 3>&-) # the server must not hold fd 3
echo "PostgreSQL: $conninfo"
psql_() { psql "$conninfo" -X -q -P pager=off -v ON_ERROR_STOP=1 "$@"; }

export AWS_ACCESS_KEY_ID=AKIDKINESIS2PGDEMO AWS_SECRET_ACCESS_KEY=demo-secret-not-real AWS_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_KINESIS

step "create stream '$STREAM' (4 shards) and put $EVENTS JSON events, $INVALID of them invalid"
"$produce" --endpoint "$endpoint" --region us-east-1 --stream "$STREAM" --create-stream 4 \
    --count "$EVENTS" --kind json --size 200 --keys 100 --invalid "$INVALID"

load() {
    echo "\$ kinesis2pg load --stream $STREAM --endpoint $endpoint --pg '...' $*"
    "$loader" load --stream "$STREAM" --endpoint "$endpoint" --region us-east-1 \
        --pg "$conninfo" "$@"
}

step "load everything from the start of the stream (the run summary goes to stderr)"
load --from trim_horizon

step "rows in kinesis.$STREAM"
psql_ -c "SELECT count(*) AS rows FROM kinesis.$STREAM"

step "a few rows"
psql_ -c "SELECT _kinesis__shard_id AS shard, _kinesis__partition AS key,
                 _kinesis__ts AS arrived, left(data::text, 70) AS data
          FROM kinesis.$STREAM ORDER BY _kinesis__ts, _kinesis__seq_no LIMIT 5"

step "dead letters (payloads jsonb cannot hold: nothing is dropped silently)"
psql_ -c "SELECT shard_id, right(seq_no::text, 12) AS seq_tail, reason,
                 left(encode(data, 'escape'), 40) AS data
          FROM kinesis2pg.dead_letters WHERE stream = '$STREAM' ORDER BY seq_no"

step "load again: nothing new"
load

step "runs"
psql_ -c "SELECT id, started_at, finished_at - started_at AS took, rows, dead_letters, status
          FROM kinesis2pg.runs WHERE stream = '$STREAM' ORDER BY id"

step "KPL aggregates of gzip-compressed events: one row per user record"
"$produce" --endpoint "$endpoint" --region us-east-1 --stream "$STREAM-kpl" --create-stream 2 \
    --count 1000 --kind json --size 200 --keys 20 --compress gzip --aggregate 100
echo "\$ kinesis2pg load --stream $STREAM-kpl --endpoint $endpoint --pg '...' --from trim_horizon"
"$loader" load --stream "$STREAM-kpl" --endpoint "$endpoint" --region us-east-1 \
    --pg "$conninfo" --from trim_horizon
psql_ -c "SELECT right(_kinesis__seq_no::text, 12) AS seq_tail, _kinesis__sub_seq AS sub_seq,
                 _kinesis__partition AS key, left(data::text, 50) AS data
          FROM kinesis.\"$STREAM-kpl\" ORDER BY _kinesis__seq_no, _kinesis__sub_seq LIMIT 4"
kpl_rows=$(psql_ -tA -c "SELECT count(*) FROM kinesis.\"$STREAM-kpl\"")
[ "$kpl_rows" = 1000 ] || { echo "demo: expected 1000 rows from the aggregates, found $kpl_rows" >&2; exit 1; }

rows=$(psql_ -tA -c "SELECT count(*) FROM kinesis.$STREAM")
dead=$(psql_ -tA -c "SELECT count(*) FROM kinesis2pg.dead_letters WHERE stream = '$STREAM'")
if [ "$rows" != $((EVENTS - INVALID)) ] || [ "$dead" != "$INVALID" ]; then
    echo "demo: expected $((EVENTS - INVALID)) rows and $INVALID dead letters, found $rows and $dead" >&2
    exit 1
fi
step "done: $rows rows + $dead dead letters = $EVENTS events, each exactly once"
