#!/usr/bin/env bash
# tmp-postgres.sh - a throw-away PostgreSQL cluster for the demo and for manual experiments.
#
# Usage: tmp-postgres.sh start DIR   initdb into DIR/data (DIR is created if missing), start the
#                                    server on 127.0.0.1 and a free port (trust auth, loopback
#                                    and a private socket in DIR only), and print its libpq
#                                    conninfo on stdout: "host=127.0.0.1 port=N dbname=postgres
#                                    user=postgres".
#        tmp-postgres.sh stop DIR    stop that server (fast, then immediate) and remove DIR.
#
# When run as root the server runs as the `postgres` system user (PostgreSQL refuses root) and
# DIR is handed to that user. Server binaries: $K2P_PG_BINDIR, `pg_config --bindir`, the newest
# /usr/lib/postgresql/N/bin, then PATH. The server log is DIR/server.log.
set -euo pipefail

die() { echo "tmp-postgres: $*" >&2; exit 1; }

find_bindir() {
    local d
    for d in "${K2P_PG_BINDIR:-}" "$(pg_config --bindir 2>/dev/null || true)" \
             $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
        if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
            echo "$d"; return 0
        fi
    done
    d=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
    return 1
}

# Runs a command as the server's user (postgres when we are root).
as_server() {
    if [ "$(id -u)" = 0 ]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u postgres -- "$@"
        else
            su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|stop DIR"

case "$cmd" in
start)
    bindir=$(find_bindir) || die "PostgreSQL server binaries not found (install postgresql or set K2P_PG_BINDIR)"
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || die "running as root and there is no 'postgres' user"
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -e "$dir/data" ] && die "$dir/data already exists"
    chmod 700 "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
        # The server user must be able to reach DIR.
        as_server test -w "$dir" || die "user postgres cannot reach or write $dir (its parent directories must be searchable by postgres, e.g. chmod 711)"
    fi
    as_server "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C \
        --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    sock=$dir
    # A unix socket path must fit in 107 bytes; else TCP only.
    [ ${#dir} -gt 80 ] && sock=""
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        cat >>"$dir/data/postgresql.conf" <<EOF

# tmp-postgres.sh (attempt $attempt)
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock'
fsync = off
full_page_writes = off
timezone = 'UTC'
EOF
        if as_server "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
            >/dev/null 2>&1; then
            echo "$port" >"$dir/port"
            echo "host=127.0.0.1 port=$port dbname=postgres user=postgres"
            exit 0
        fi
        grep -qE "could not bind|already in use|could not create any TCP/IP sockets" \
            "$dir/server.log" 2>/dev/null || break
    done
    tail -n 30 "$dir/server.log" >&2 2>/dev/null || true
    die "the server did not start (log above)"
    ;;
stop)
    [ -d "$dir" ] || exit 0
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/data/postmaster.pid" ]; then
        bindir=$(find_bindir) || die "PostgreSQL server binaries not found"
        as_server "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            as_server "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
            { pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
              [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true; }
    fi
    rm -rf "$dir"
    ;;
*)
    die "usage: $0 start|stop DIR"
    ;;
esac
