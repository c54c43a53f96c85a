#!/usr/bin/env bash
# run.sh - `make bench`: a reproducible end-to-end benchmark of kinesis2pg (docs/benchmarks.md).
#
# Builds kinesis2pg and mock_kinesis (RelWithDebInfo, in $BENCH_BUILD), starts a durable
# throw-away PostgreSQL on a free loopback port (fsync on, synchronous_commit on), then runs
# bench/bench.py, which starts mock_kinesis for each phase and measures, in the same run on
# the same rows: the sink limit (2 x psql \copy), kinesis2pg, and a dlt-style Python peer; a
# shard sweep; and a throttled (--limits) run. It prints tables and one `BENCH {json}` line.
# Everything it started is stopped on exit (the trap below), whatever happens.
#
# Environment (all optional):
#   BENCH_QUICK=1                 smoke test: 100k rows, smaller peer subsets
#   BENCH_RECORDS, BENCH_SHARDS   main phase: rows (1,000,000) and shards (4)
#   BENCH_SIZE                    bytes per JSON record (400)
#   BENCH_SWEEP_RECORDS           rows per sweep point (BENCH_RECORDS)
#   BENCH_SWEEP_SHARDS            sweep points ("4 16 64 256")
#   BENCH_LIMITS_SHARDS, BENCH_LIMITS_RECORDS, BENCH_LIMITS_PEER_SHARDS
#                                 throttled phase: shards (64), rows (BENCH_RECORDS), and the
#                                 shards the peer reads before extrapolating (4; quick: 2)
#   BENCH_PEER_SHARDS             main phase: shards the peer reads (0 = all)
#   BENCH_REPEAT                  rounds of the main phase (3; quick: 1), medians reported
#   BENCH_SWEEP_REPEAT            runs per sweep point (4; quick: 1)
#   BENCH_LOADER_ARGS             extra kinesis2pg flags for every run (e.g. "--writers 3")
#   BENCH_VARIANT_ARGS            flags of a second kinesis2pg row in the main phase
#                                 ("--batch-rows 50000", the default before 2026-12-04; empty to skip)
#   BENCH_PHASES                  "main sweep limits" (any subset, in that order)
#   BENCH_PERF=1                  also profile one kinesis2pg run with perf record -g
#   BENCH_OUT=FILE                also write the results as JSON to FILE
#   BENCH_MD=FILE                 also write the result tables as Markdown to FILE
#   BENCH_BUILD                   build directory (build-bench)
#   BENCH_TMP                     parent of the temporary directory (/tmp)
#   BENCH_KEEP=1                  keep the temporary directory (logs, server log)
#   BENCH_HUGE_PAGES              auto (default): shared_buffers = 1GB in huge pages, reserving
#                                 them (vm.nr_hugepages, as root; put back on exit) if needed,
#                                 else shared_buffers = 128MB; off: 128MB, no huge pages
#   K2P_PG_BINDIR                 PostgreSQL server binaries (else the newest installed)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=${BENCH_BUILD:-$here/build-bench}
python=/usr/bin/python3
work=""
pgdata=""
child=""
bindir=""
hugepages_restore="" # vm.nr_hugepages to put back on exit, when we raised it

die() { echo "bench: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

# Runs a command as the server's user (postgres when we are root; PostgreSQL refuses root).
as_server() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$child" ]; then
        # bench.py stops its mock and any measured program on SIGTERM.
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    if [ -n "$work" ] && [ -f "$work/pids" ]; then
        # mock_kinesis processes started by bench.py (they also exit when its pipes close).
        # Only if the pid is still a mock_kinesis (pids get reused).
        while read -r pid; do
            if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q mock_kinesis; then
                kill "$pid" 2>/dev/null || true
            fi
        done <"$work/pids"
    fi
    if [ -n "$pgdata" ] && [ -f "$pgdata/postmaster.pid" ]; then
        as_server "$bindir/pg_ctl" -D "$pgdata" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            as_server "$bindir/pg_ctl" -D "$pgdata" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
            { pid=$(head -n 1 "$pgdata/postmaster.pid" 2>/dev/null || true)
              [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true; }
    fi
    if [ -n "$hugepages_restore" ]; then
        echo "$hugepages_restore" >/proc/sys/vm/nr_hugepages 2>/dev/null ||
            say "could not put vm.nr_hugepages back to $hugepages_restore"
    fi
    if [ -n "$work" ] && [ -d "$work" ]; then
        if [ "${BENCH_KEEP:-0}" != 0 ]; then
            say "kept $work (logs in $work/logs, server log in $work/pg/server.log)"
        elif [ "$rc" != 0 ]; then
            # Keep the logs (small) for the post-mortem, not the data (gigabytes).
            cp "$work/pg/server.log" "$work/logs/" 2>/dev/null || true
            find "$work" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
            say "logs kept in $work/logs"
        else
            rm -rf "$work"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

find_bindir() {
    local d
    for d in "${K2P_PG_BINDIR:-}" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r) \
             "$(pg_config --bindir 2>/dev/null || true)"; do
        if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
            echo "$d"; return 0
        fi
    done
    return 1
}

free_port() {
    "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- prerequisites -------------------------------------------------------------------------
case "${BENCH_HUGE_PAGES:-auto}" in
auto | off) ;;
*) die "BENCH_HUGE_PAGES must be auto or off, not '$BENCH_HUGE_PAGES'" ;;
esac
[ -x "$python" ] || die "$python not found (apt-get install python3)"
command -v psql >/dev/null || die "psql not found (apt-get install postgresql-client)"
command -v cmake >/dev/null || die "cmake not found (run scripts/setup.sh as root)"
bindir=$(find_bindir) || die "PostgreSQL server binaries not found (apt-get install postgresql or set K2P_PG_BINDIR)"
need=()
"$python" -c 'import boto3' 2>/dev/null || need+=(python3-boto3)
"$python" -c 'import psycopg2' 2>/dev/null || need+=(python3-psycopg2)
if ((${#need[@]})); then
    [ "$(id -u)" = 0 ] || die "the dlt-style peer needs ${need[*]}: run as root or apt-get install them"
    say "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } ||
        die "could not install ${need[*]}"
fi
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root and there is no 'postgres' user"
fi

# ---- build -----------------------------------------------------------------------------------
work=$(mktemp -d "${BENCH_TMP:-/tmp}/k2p-bench.XXXXXX")
chmod 711 "$work"
mkdir -p "$work/logs"
say "building kinesis2pg and mock_kinesis in $build"
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$work/logs/cmake.log" 2>&1 ||
    { cat "$work/logs/cmake.log" >&2; die "cmake configure failed"; }
cmake --build "$build" -j "$(nproc)" --target kinesis2pg mock_kinesis >"$work/logs/build.log" 2>&1 ||
    { tail -n 40 "$work/logs/build.log" >&2; die "build failed (log: $work/logs/build.log)"; }
loader=$build/kinesis2pg
mock=$(find "$build" -type f -name mock_kinesis -perm -u+x | head -n 1)
[ -x "$loader" ] || die "$loader was not built"
[ -n "$mock" ] || die "mock_kinesis was not built under $build"

# ---- PostgreSQL ------------------------------------------------------------------------------
pgdata=$work/pg
mkdir -p "$pgdata"
[ "$(id -u)" = 0 ] && chown postgres: "$pgdata"
chmod 700 "$pgdata"
as_server "$bindir/initdb" -D "$pgdata" -U postgres -A trust -E UTF8 --locale=C \
    >"$work/logs/initdb.log" 2>&1 || { cat "$work/logs/initdb.log" >&2; die "initdb failed"; }
base_conf=$(cat "$pgdata/postgresql.conf")

# Shared memory. A backend maps each 4 KiB page of shared_buffers on first touch: with 1GB and
# no huge pages, every new connection pays a page fault per page it reaches, and COPY's 16 MB
# ring starts on fresh buffers at every statement. That cost PostgreSQL ~20 % more CPU per row
# for COPYs of 10-20k rows (the loader's transactions) than for two 500k-row COPYs, and the
# sink got slower too (docs/benchmarks.md, 2026-12-04). PostgreSQL's documentation advises
# huge pages for large shared_buffers; where they cannot be had, the default 128MB.
shm_conf="shared_buffers = 128MB
huge_pages = off"
if [ "${BENCH_HUGE_PAGES:-auto}" = auto ]; then
    want=$(as_server "$bindir/postgres" -D "$pgdata" -c shared_buffers=1GB \
               -C shared_memory_size_in_huge_pages 2>/dev/null || true)
    # Free pages include those another server has reserved (mapped, not yet touched).
    hp_free() { awk '/^HugePages_Free:/ {f = $2} /^HugePages_Rsvd:/ {r = $2}
                     END {if (f != "") print f - r}' /proc/meminfo; }
    if [[ "$want" =~ ^[0-9]+$ ]] && [ "$want" -gt 0 ] && [ -n "$(hp_free)" ]; then
        if [ "$(hp_free)" -lt "$want" ] && [ "$(id -u)" = 0 ] && [ -w /proc/sys/vm/nr_hugepages ]; then
            orig=$(cat /proc/sys/vm/nr_hugepages)
            if echo $((orig + want - $(hp_free))) >/proc/sys/vm/nr_hugepages 2>/dev/null; then
                hugepages_restore=$orig
            fi
        fi
        if [ "$(hp_free)" -ge "$want" ]; then
            shm_conf="shared_buffers = 1GB
huge_pages = on"
            say "shared_buffers 1GB in $want huge pages"
        fi
    fi
    [ "${shm_conf#*huge_pages = }" = on ] ||
        say "no huge pages for a 1GB shared_buffers (needs root or vm.nr_hugepages): 128MB instead"
fi
started=""
for _ in 1 2 3 4 5; do
    port=$(free_port)
    # Durable: fsync, full_page_writes and synchronous_commit on (the defaults, stated).
    # Autovacuum off so that the only children of the postmaster that exit during a phase are
    # that phase's backends (bench.py's CPU accounting) and no vacuum runs inside a timing.
    { echo "$base_conf"; cat <<EOF

# bench/run.sh
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = on
full_page_writes = on
synchronous_commit = on
wal_level = replica
$shm_conf
max_wal_size = 4GB
min_wal_size = 1GB
checkpoint_timeout = 30min
checkpoint_completion_target = 0.9
autovacuum = off
max_connections = 100
timezone = 'UTC'
log_checkpoints = on
EOF
    } >"$work/postgresql.conf"
    cp "$work/postgresql.conf" "$pgdata/postgresql.conf"
    [ "$(id -u)" = 0 ] && chown postgres: "$pgdata/postgresql.conf"
    if as_server "$bindir/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 start >/dev/null 2>&1; then
        started=1
        break
    fi
    grep -qE "could not bind|already in use|could not create any TCP/IP sockets" \
        "$pgdata/server.log" 2>/dev/null || break
done
[ -n "$started" ] || { tail -n 20 "$pgdata/server.log" >&2; die "PostgreSQL did not start"; }
say "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($pgdata)"

# ---- measure ---------------------------------------------------------------------------------
# In the background and waited for, so that a signal to this script runs the trap at once.
"$python" "$here/bench/bench.py" --work "$work" --pgdata "$pgdata" --pgport "$port" \
    --loader "$loader" --mock "$mock" --psql "$(command -v psql)" &
child=$!
wait "$child"
child=""
