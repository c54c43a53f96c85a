#!/bin/bash
# kinesis2pg-healthcheck - the image's HEALTHCHECK: GET /healthz (or the path given) from the
# metrics server of the kinesis2pg running in this container, healthy when it answers 200.
# Plain bash (/dev/tcp) and coreutils: the image needs no curl.
#
# Usage: kinesis2pg-healthcheck [PATH]      PATH defaults to /healthz (/readyz: readiness)
#
# Where it connects: $K2P_HEALTHCHECK_ADDR (HOST:PORT) when set, else the --metrics-addr of
# the kinesis2pg process in this container (read from /proc/*/cmdline). A wildcard host
# (0.0.0.0, [::] or none) is reached at 127.0.0.1.
# A kinesis2pg started without --metrics-addr (a batch load, status, reset) has nothing to
# ask: the check passes (the container is healthy while the process runs), unless
# K2P_HEALTHCHECK_REQUIRED=1. No kinesis2pg process at all is unhealthy.
#
# Exit: 0 healthy, 1 unhealthy (Docker's HEALTHCHECK contract). One line on stdout says why.
# (K2P_HEALTHCHECK_PROC replaces /proc, for tests.)
set -u

timeout_s=${K2P_HEALTHCHECK_TIMEOUT:-4}

# --probe HOST PORT PATH: one HTTP/1.0 request; exit 0 on a 200 status line.
if [ "${1:-}" = --probe ]; then
    host=$2 port=$3 path=$4
    exec 3<>"/dev/tcp/$host/$port" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$path" "$host" "$port" >&3
    IFS= read -r -t "$timeout_s" status <&3 || exit 1
    status=${status%$'\r'}
    echo "$status"
    case "$status" in
        "HTTP/1."[01]" 200"*) exit 0 ;;
        *) exit 1 ;;
    esac
fi

path=${1:-/healthz}
case "$path" in /*) ;; *) echo "unhealthy: PATH must start with /: $path"; exit 1 ;; esac

# The --metrics-addr value of a running kinesis2pg, "" if it has none; exit 1 if none runs.
find_metrics_addr() {
    local d args i a found=0
    for d in "${K2P_HEALTHCHECK_PROC:-/proc}"/[0-9]*; do
        args=()
        { mapfile -d "" -t args <"$d/cmdline"; } 2>/dev/null || continue
        ((${#args[@]})) || continue
        [ "${args[0]##*/}" = kinesis2pg ] || continue
        found=1
        for ((i = 1; i < ${#args[@]}; i++)); do
            a=${args[i]}
            case "$a" in
                --metrics-addr=*) echo "${a#--metrics-addr=}"; return 0 ;;
                --metrics-addr) echo "${args[i + 1]:-}"; return 0 ;;
            esac
        done
    done
    ((found)) && { echo ""; return 0; }
    return 1
}

addr=${K2P_HEALTHCHECK_ADDR:-}
if [ -z "$addr" ]; then
    if ! addr=$(find_metrics_addr); then
        echo "unhealthy: no kinesis2pg process in this container"
        exit 1
    fi
    if [ -z "$addr" ] || [ "$addr" = off ]; then
        if [ "${K2P_HEALTHCHECK_REQUIRED:-0}" = 1 ]; then
            echo "unhealthy: kinesis2pg runs without --metrics-addr (K2P_HEALTHCHECK_REQUIRED=1)"
            exit 1
        fi
        echo "healthy: kinesis2pg runs without --metrics-addr (no HTTP check)"
        exit 0
    fi
fi

port=${addr##*:}
host=${addr%:*}
host=${host#[}
host=${host%]}
case "$host" in ""|0.0.0.0|::|"*") host=127.0.0.1 ;; esac
case "$port" in
    ''|*[!0-9]*) echo "unhealthy: bad address '$addr' (want HOST:PORT)"; exit 1 ;;
esac

if command -v timeout >/dev/null 2>&1; then
    out=$(timeout "$((timeout_s + 1))" bash "$0" --probe "$host" "$port" "$path" 2>&1)
else
    out=$(bash "$0" --probe "$host" "$port" "$path" 2>&1)
fi
rc=$?
out=${out%%$'\n'*}
out=${out#"$0: "}
if [ "$rc" = 0 ]; then
    echo "healthy: http://$host:$port$path: $out"
    exit 0
fi
echo "unhealthy: http://$host:$port$path: ${out:-no answer}"
exit 1
