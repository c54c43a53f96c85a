#!/usr/bin/env bash
# latency.sh - follow-mode latency: PutRecords to committed row, at a steady put rate.
#
# Starts a throw-away PostgreSQL with track_commit_timestamp on and mock_kinesis on loopback,
# runs `kinesis2pg load --follow` while kinesis2pg-produce puts RATE records/s for SECONDS,
# then reports percentiles of (commit time of the row's transaction - the record's
# ApproximateArrivalTimestamp, set by the mock when PutRecords arrived). Not a test: numbers
# for docs/benchmarks.md. Usage: bench/latency.sh [RATE] [SECONDS] [SHARDS]
# MODE=fanout reads with enhanced fan-out (--consumer k2p-latency: SubscribeToShard over
# HTTP/2 from the same mock) instead of GetRecords polling; LOADER_ARGS adds loader flags.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
RATE=${1:-10000}
SECONDS_=${2:-30}
SHARDS=${3:-8}
BUILD=${BUILD:-$here/build}
MODE=${MODE:-polling}
LOADER_ARGS=${LOADER_ARGS:-}
case "$MODE" in
polling) mode_args="" ;;
fanout) mode_args="--consumer k2p-latency" ;;
*) echo "latency.sh: MODE is polling or fanout" >&2; exit 2 ;;
esac
work=$(mktemp -d /tmp/k2p-latency.XXXXXX)
chmod 711 "$work"
mock_pid=""
loader_pid=""
keeper_pid=""
cleanup() {
    set +e
    [ -n "$loader_pid" ] && kill "$loader_pid" 2>/dev/null && wait "$loader_pid" 2>/dev/null
    [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
    [ -n "$keeper_pid" ] && kill "$keeper_pid" 2>/dev/null
    [ -d "$work/pg" ] && bash "$here/scripts/tmp-postgres.sh" stop "$work/pg" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

cmake -S "$here" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target kinesis2pg kinesis2pg-produce mock_kinesis >/dev/null

pg=$(bash "$here/scripts/tmp-postgres.sh" start "$work/pg")
psql "$pg" -qc "ALTER SYSTEM SET track_commit_timestamp = on" >/dev/null
pg_ctl=$(ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)
if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$pg_ctl" -D "$work/pg/data" -w restart -m fast >/dev/null
else
    "$pg_ctl" -D "$work/pg/data" -w restart -m fast >/dev/null
fi

mock=$(find "$BUILD" -name mock_kinesis -type f -perm -u+x | head -1)
mkfifo "$work/keep"
sleep infinity > "$work/keep" &   # the mock's stdin: it exits when this closes
keeper_pid=$!
"$mock" --port 0 > "$work/mock.port" < "$work/keep" &
mock_pid=$!
for _ in $(seq 100); do [ -s "$work/mock.port" ] && break; sleep 0.05; done
endpoint="http://127.0.0.1:$(head -1 "$work/mock.port")"
export AWS_ACCESS_KEY_ID=AKIDLATENCY AWS_SECRET_ACCESS_KEY=not-a-secret AWS_REGION=us-east-1
"$BUILD/kinesis2pg-produce" --endpoint "$endpoint" --stream lat --create-stream "$SHARDS" --count 0 2>/dev/null

# shellcheck disable=SC2086 # word splitting of the flag lists is intended
"$BUILD/kinesis2pg" load --stream lat --endpoint "$endpoint" --pg "$pg" --from trim_horizon \
    --follow $mode_args $LOADER_ARGS 2> "$work/loader.log" &
loader_pid=$!
sleep 2
"$BUILD/kinesis2pg-produce" --endpoint "$endpoint" --stream lat --count $((RATE * SECONDS_)) \
    --rate "$RATE" --size 400 --batch 100 2>&1 | tail -1
sleep 3
kill -TERM "$loader_pid"; wait "$loader_pid" || true; loader_pid=""
psql "$pg" -At -F ' ' -c "
  SELECT count(*),
         round(1000 * percentile_cont(0.50) WITHIN GROUP (ORDER BY l)::numeric, 1),
         round(1000 * percentile_cont(0.90) WITHIN GROUP (ORDER BY l)::numeric, 1),
         round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY l)::numeric, 1),
         round(1000 * max(l)::numeric, 1)
  FROM (SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - _kinesis__ts) AS l
        FROM kinesis.lat) s" | {
    read -r n p50 p90 p99 pmax
    echo "LATENCY {\"mode\":\"$MODE\",\"rate\":$RATE,\"seconds\":$SECONDS_,\"shards\":$SHARDS,\"rows\":$n,\"p50_ms\":$p50,\"p90_ms\":$p90,\"p99_ms\":$p99,\"max_ms\":$pmax}"
    printf '%s: rows %s at %s records/s over %s shards: p50 %s ms, p90 %s ms, p99 %s ms, max %s ms\n' \
        "$MODE" "$n" "$RATE" "$SHARDS" "$p50" "$p90" "$p99" "$pmax"
}
