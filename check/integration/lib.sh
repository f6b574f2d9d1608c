# shellcheck shell=bash
# Shared by the integration tests (run from `make check`, which exports
# top_srcdir, top_builddir, ARS_RELAY and MOCK_UPSTREAM). Each test gets a
# private directory under /tmp, picks free loopback ports, starts what it
# needs through scripts/lib/services.sh, and stops all of it on exit.
# Results are printed one per line as "ok - ..." / "FAIL - ...".

set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
: "${ARS_RELAY:=$top_builddir/ai-relay}"
: "${MOCK_UPSTREAM:=$top_builddir/check/mock-upstream}"
export ARS_RELAY_BIN=$ARS_RELAY ARS_CONF_DIR=$top_srcdir/conf ARS_QUIET=1
# shellcheck source=../../scripts/lib/services.sh
. "$top_srcdir/scripts/lib/services.sh"

IT_FAILED=0
IT_CHECKS=0
IT_DIR=$(mktemp -d /tmp/ars-it.XXXXXX)
chmod 755 "$IT_DIR"
IT_STOPS=()

it_need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "SKIP: $(basename "$0") needs root (PostgreSQL runs as the postgres user)"
        exit 77
    fi
}

# it_on_exit CMD...: run CMD at exit (last registered first).
it_on_exit() {
    IT_STOPS+=("$*")
}

it_cleanup() {
    local i
    for ((i = ${#IT_STOPS[@]} - 1; i >= 0; i--)); do
        eval "${IT_STOPS[$i]}" >/dev/null 2>&1 || true
    done
    if [ "$IT_FAILED" -ne 0 ]; then
        echo "--- logs of the failed test ($IT_DIR) ---"
        find "$IT_DIR" -name '*.log' -size -2M -print0 2>/dev/null |
            while IFS= read -r -d '' f; do echo "== $f"; tail -n 30 "$f"; done
    fi
    rm -rf "$IT_DIR"
}
trap it_cleanup EXIT

it_ok() { IT_CHECKS=$((IT_CHECKS + 1)); echo "ok - $1"; }
it_fail() { IT_CHECKS=$((IT_CHECKS + 1)); IT_FAILED=$((IT_FAILED + 1)); echo "FAIL - $1${2:+: $2}"; }

# it_check NAME CMD...: passes when CMD succeeds.
it_check() {
    local name=$1
    shift
    if "$@"; then it_ok "$name"; else it_fail "$name"; fi
}

# it_expect_eq NAME GOT WANT
it_expect_eq() {
    if [ "$2" = "$3" ]; then it_ok "$1"; else it_fail "$1" "got '$2', want '$3'"; fi
}

# it_expect_contains NAME HAYSTACK NEEDLE
it_expect_contains() {
    case "$2" in
        *"$3"*) it_ok "$1" ;;
        *) it_fail "$1" "'$3' not in: $(printf '%s' "$2" | head -c 600)" ;;
    esac
}

it_finish() {
    echo "# $IT_CHECKS checks, $IT_FAILED failed"
    [ "$IT_FAILED" -eq 0 ]
    exit $?
}

# it_write_config FILE [KEY=VALUE...]: a relay config with fresh secrets.
it_write_config() {
    local file=$1
    shift
    {
        echo "JWT_SECRET=$(openssl rand -hex 32)"
        echo "ENCRYPTION_KEY=$(openssl rand -hex 16)"
        echo "WORKER_THREADS=16"
        echo "LOG_FORMAT=logfmt"
        echo "PRICING_FILE=$top_srcdir/conf/pricing.json"
        # The --listen socket is 0660: as root, nginx's workers (nobody)
        # reach it through their group, also when a test starts the relay
        # without services.sh.
        [ "$(id -u)" = 0 ] && echo "LISTEN_SOCKET_GROUP=nogroup"
        for kv in "$@"; do echo "$kv"; done
    } >"$file"
}

it_redis() { # DIR -> sets IT_REDIS_PORT
    IT_REDIS_PORT=$(ars_free_port) && ars_start_redis "$1" "$IT_REDIS_PORT" &&
        it_on_exit ars_stop_redis "$1"
}

it_pg() { # DIR -> sets IT_PG_PORT
    IT_PG_PORT=$(ars_free_port) && ars_start_pg "$1" "$IT_PG_PORT" ai-relay-test ars_test ars_test_pw &&
        it_on_exit ars_stop_pg "$1"
}

it_relay() { # DIR CONFIG -> sets IT_SOCK
    IT_SOCK=$1/relay.sock
    ars_start_relay "$1" "$IT_SOCK" "$2" && it_on_exit ars_stop_relay "$1"
}

it_nginx() { # DIR SOCKET -> sets IT_NGINX_PORT
    IT_NGINX_PORT=$(ars_free_port) &&
        ars_start_nginx "$1" "$IT_NGINX_PORT" "$2" "$top_srcdir/static-admin" &&
        it_on_exit ars_stop_nginx "$1"
}

it_lighttpd() { # DIR CONFIG -> sets IT_LIGHTTPD_PORT (lighttpd spawns the relay)
    IT_LIGHTTPD_PORT=$(ars_free_port) &&
        ars_start_lighttpd "$1" "$IT_LIGHTTPD_PORT" "$ARS_RELAY" "$2" "$top_srcdir/static-admin" &&
        it_on_exit ars_stop_lighttpd "$1"
}

# it_status URL [curl args...]: prints the HTTP status code.
it_status() {
    local url=$1
    shift
    curl -s -o /dev/null -w '%{http_code}' --max-time 20 "$@" "$url"
}

# it_body URL [curl args...]: prints the body (any status).
it_body() {
    local url=$1
    shift
    curl -s --max-time 20 "$@" "$url"
}

# it_sse_arrivals URL: prints "MS data" per SSE data line, MS since the
# request started.
it_sse_arrivals() {
    local start line now
    start=$(date +%s%N)
    curl -sN --max-time 30 "$1" | while IFS= read -r line; do
        case "$line" in
            data:*)
                now=$(date +%s%N)
                echo "$(((now - start) / 1000000)) ${line#data: }"
                ;;
        esac
    done
}

# it_sse_streams NAME URL EVENTS INTERVAL_MS: the events must arrive one by
# one: the gap between the first and the last is at least 70% of what the
# generator spends between them (a buffered answer arrives all at once).
it_sse_streams() {
    local name=$1 url=$2 events=$3 interval=$4 out first last count
    out=$(it_sse_arrivals "$url?events=$events&interval_ms=$interval")
    count=$(printf '%s\n' "$out" | grep -c .)
    first=$(printf '%s\n' "$out" | head -n 1 | cut -d' ' -f1)
    last=$(printf '%s\n' "$out" | tail -n 1 | cut -d' ' -f1)
    echo "# $name arrival times (ms): $(printf '%s\n' "$out" | cut -d' ' -f1 | tr '\n' ' ')"
    if [ "$count" = "$events" ] && [ $((last - first)) -ge $(((events - 1) * interval * 7 / 10)) ]; then
        it_ok "$name: $events events arrive incrementally"
    else
        it_fail "$name: $events events arrive incrementally" "got $count events at: $(printf '%s\n' "$out" | tr '\n' ' ')"
    fi
}
