# shellcheck shell=bash
# Shared by the integration tests (run from `make check`, which exports
# top_srcdir, top_builddir, ARS_RELAY and MOCK_UPSTREAM). Each test gets a
# private directory under /tmp, picks free loopback ports, starts what it
# needs through scripts/lib/services.sh, and stops all of it on exit.
# Results are printed one per line as "ok - ..." / "FAIL - ...".
#
# A test declares how many checks it makes (`it_plan N` at the top) and ends
# with `it_finish`, which fails the test when another number ran (a test that
# stopped early must not pass). `it_finish` (or the exit trap, for a test that
# exits early) then stops everything the test started and adds, for every
# test: each relay stopped cleanly (exit status 0, no worker process left,
# no hang), no sanitizer report in any file under IT_DIR, and no secret
# registered with `it_secret` in any log or saved response under IT_DIR.
# Under CI (ARS_CI=1, set by scripts/test) a test that would skip fails.

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
IT_PLAN=
IT_DIR=$(mktemp -d /tmp/ars-it.XXXXXX)
chmod 755 "$IT_DIR"
IT_STOPS=()
# The secrets and patterns are kept in files (excluded from the search by
# their .env suffix) so that it_secret works in $(...) subshells too.
IT_SECRETS=$IT_DIR/.it-secrets.env
IT_SECRET_PATTERNS=$IT_DIR/.it-secret-patterns.env
: >"$IT_SECRETS"
: >"$IT_SECRET_PATTERNS"
IT_ENDED=0

# it_skip REASON: exit 77 (automake's SKIP); under CI (ARS_CI=1) a skip is
# a hard error (99): CI must not print green for tests that did not run.
it_skip() {
    if [ "${ARS_CI:-0}" = 1 ]; then
        echo "FAIL - $(basename "$0") cannot run under CI: $1"
        IT_FAILED=$((IT_FAILED + 1))
        it_end_checks
        exit 99
    fi
    echo "SKIP: $(basename "$0"): $1"
    it_end_checks
    exit 77
}

it_need_root() {
    if [ "$(id -u)" != 0 ]; then
        it_skip "needs root (PostgreSQL runs as the postgres user)"
    fi
}

# it_plan N: the test makes exactly N checks (it_ok/it_fail/it_check/...);
# it_finish fails the test when another number ran.
it_plan() {
    IT_PLAN=$1
    echo "# plan: $1 checks"
}

# it_run_checks NAME CMD...: run a program that prints its plan ("# plan: N
# checks") and "ok - ..." / "FAIL - ..." lines; each line is a check of this
# test, N is added to this test's plan, and its exit status is one more
# check (counted in the plan here). Other lines are shown as they are; the
# output stays in IT_DIR, where the end checks search it for secrets.
it_run_checks() {
    local name=$1 line n rc=0 out=$IT_DIR/run_checks.$IT_CHECKS.out
    shift
    IT_PLAN=$((${IT_PLAN:-0} + 1))
    "$@" >"$out" 2>&1 || rc=$?
    while IFS= read -r line; do
        case "$line" in
            "# plan: "*" checks")
                n=${line#\# plan: }
                n=${n% checks}
                IT_PLAN=$((IT_PLAN + n))
                echo "# $name plans $n checks"
                ;;
            "ok - "*) it_ok "${line#ok - }" ;;
            "FAIL - "*) it_fail "${line#FAIL - }" ;;
            *) echo "$line" ;;
        esac
    done <"$out"
    it_expect_eq "$name exits 0" "$rc" 0
}

# it_secret VALUE...: a secret the test used (client key, account API key,
# OAuth token, password). At the end every file under IT_DIR (logs, saved
# responses; not the config files that hold the secrets on purpose) is
# searched for it. it_secret_pattern ERE: the same for secrets only known
# by their shape (tokens the mock upstream issues).
it_secret() {
    local v
    for v in "$@"; do
        # Shorter values would match by accident: every secret the suite
        # uses has 6 characters or more.
        if [ "${#v}" -lt 6 ]; then
            echo "# it_secret: '$v' is too short to search for" >&2
            continue
        fi
        printf '%s\n' "$v" >>"$IT_SECRETS"
    done
    return 0
}
it_secret_pattern() {
    printf '%s\n' "$1" >>"$IT_SECRET_PATTERNS"
}

# it_on_exit CMD...: run CMD at exit (last registered first).
it_on_exit() {
    IT_STOPS+=("$*")
}

# it_stop_all: run the registered stops, newest first. A stop that fails
# (a relay that exited non-zero, hung, or left worker processes) is a
# failed check of the test.
it_stop_all() {
    local i
    # Not in a $(...) subshell: ars_stop_relay reads the relay's exit
    # status with `wait`, which only this shell (its parent) can do.
    for ((i = ${#IT_STOPS[@]} - 1; i >= 0; i--)); do
        if ! eval "${IT_STOPS[$i]}" >"$IT_DIR/stop.out" 2>&1; then
            # The reasons, not the log tails the stop functions print.
            it_end_fail "stopped cleanly: ${IT_STOPS[$i]}" \
                "$(grep -a -v -E '^(time=|\{"time"|---|\(.* is empty)' "$IT_DIR/stop.out" | tail -n 4 | tr '\n' ' ')"
        fi
    done
    rm -f "$IT_DIR/stop.out"
    IT_STOPS=()
}

# _it_scan_files: the files under IT_DIR that the end checks read: every
# log and saved response, but not the PostgreSQL and Redis data files, the
# config files that hold the secrets on purpose, nor what the mock upstream
# (the account's side of the connection) printed.
_it_scan_files() {
    find "$IT_DIR" -type d \( -name data -o -name node_modules -o -name home \) -prune -o -type f \
        ! -name '*.env' ! -name '*.conf' ! -name '*.rdb' ! -name '*.aof' ! -name 'mock.*' \
        ! -name '*.pid' -size -64M -print0 2>/dev/null
}

# it_end_checks: stop everything, then the checks every test gets.
it_end_checks() {
    local s hits
    [ "$IT_ENDED" = 1 ] && return 0
    IT_ENDED=1
    it_stop_all
    # Sanitizer reports (the --enable-debug pass) in any program's log.
    hits=$(_it_scan_files | xargs -0 -r grep -l -a -E 'runtime error:|Sanitizer' 2>/dev/null)
    if [ -n "$hits" ]; then
        it_end_fail "no sanitizer report in the logs" "$(tr '\n' ' ' <<<"$hits")"
        printf '%s\n' "$hits" | while IFS= read -r f; do
            echo "== $f"; grep -a -m 5 -A 12 -E 'runtime error:|Sanitizer' "$f"
        done
    fi
    # Secrets in logs or saved responses.
    while IFS= read -r s; do
        hits=$(_it_scan_files | xargs -0 -r grep -l -a -F -e "$s" 2>/dev/null)
        [ -z "$hits" ] || it_end_fail "a secret (${s:0:3}..., ${#s} chars) never reaches a log or response" \
            "found in $(tr '\n' ' ' <<<"$hits")"
    done <"$IT_SECRETS"
    while IFS= read -r s; do
        hits=$(_it_scan_files | xargs -0 -r grep -l -a -E -e "$s" 2>/dev/null)
        [ -z "$hits" ] || it_end_fail "no secret matching /$s/ reaches a log or response" \
            "found in $(tr '\n' ' ' <<<"$hits")"
    done <"$IT_SECRET_PATTERNS"
    return 0
}

# it_end_fail NAME [DETAIL]: a failed end-of-test check (not in the plan).
it_end_fail() {
    IT_FAILED=$((IT_FAILED + 1))
    echo "FAIL - $1${2:+: $2}"
}

it_cleanup() {
    local rc=$?
    if [ "$IT_ENDED" = 0 ]; then
        it_end_checks
        # A test that exits early (`|| exit 1`) fails anyway; one that
        # exits 0 without it_finish fails here.
        if [ "$rc" = 0 ]; then
            it_end_fail "$(basename "$0") ends with it_finish"
            rc=1
        fi
    fi
    if [ "$IT_FAILED" -ne 0 ]; then
        echo "--- logs of the failed test ($IT_DIR) ---"
        find "$IT_DIR" -name '*.log' -size -2M -print0 2>/dev/null |
            while IFS= read -r -d '' f; do echo "== $f"; tail -n 30 "$f"; done
    fi
    rm -rf "$IT_DIR"
    exit "$rc"
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
    local ran=$IT_CHECKS
    if [ -z "$IT_PLAN" ]; then
        it_end_fail "$(basename "$0") declares its plan (it_plan N)"
    elif [ "$ran" != "$IT_PLAN" ]; then
        it_end_fail "$(basename "$0") ran the checks it planned" "$ran of $IT_PLAN"
    fi
    it_end_checks
    echo "# $ran checks (plan ${IT_PLAN:-none}), $IT_FAILED failed"
    [ "$IT_FAILED" -eq 0 ]
    exit $?
}

# it_write_config FILE [KEY=VALUE...]: a relay config with fresh secrets.
it_write_config() {
    local file=$1
    shift
    local jwt enc kv
    jwt=$(openssl rand -hex 32)
    enc=$(openssl rand -hex 16)
    it_secret "$jwt" "$enc"
    {
        echo "JWT_SECRET=$jwt"
        echo "ENCRYPTION_KEY=$enc"
        echo "WORKER_THREADS=16"
        echo "LOG_FORMAT=logfmt"
        echo "PRICING_FILE=$top_srcdir/conf/pricing.json"
        # The --listen socket is 0660: as root, nginx's workers (nobody)
        # reach it through their group, also when a test starts the relay
        # without services.sh.
        [ "$(id -u)" = 0 ] && echo "LISTEN_SOCKET_GROUP=nogroup"
        for kv in "$@"; do echo "$kv"; done
    } >"$file"
    for kv in "$@"; do
        case ${kv%%=*} in
            *PASSWORD* | *SECRET* | *TOKEN | ENCRYPTION_KEY) it_secret "${kv#*=}" ;;
        esac
    done
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
    ars_start_relay "$1" "$IT_SOCK" "$2" && it_on_exit it_stop_relay "$1"
}

# it_stop_relay DIR: ars_stop_relay, and fail unless the relay exited with
# status 0 on SIGTERM (a sanitizer's leak report or a crash at shutdown is
# a non-zero status), within the stop timeout, leaving no worker process.
it_stop_relay() {
    # Already stopped by the test itself (which checked that stop): done.
    [ -e "$1/relay.pid" ] || [ -e "$1/relay.waiter" ] || return 0
    ars_stop_relay "$1" || return 1
    if [ "$ARS_RELAY_EXIT_STATUS" != 0 ]; then
        echo "relay in $1 exited with status '${ARS_RELAY_EXIT_STATUS}' (want 0)" >&2
        return 1
    fi
}

it_nginx() { # DIR SOCKET -> sets IT_NGINX_PORT
    IT_NGINX_PORT=$(ars_free_port) &&
        ars_start_nginx "$1" "$IT_NGINX_PORT" "$2" "$top_srcdir/static-admin" &&
        it_on_exit ars_stop_nginx "$1"
}

it_lighttpd() { # DIR CONFIG -> sets IT_LIGHTTPD_PORT (lighttpd spawns the relay)
    IT_LIGHTTPD_PORT=$(ars_free_port) &&
        ars_start_lighttpd "$1" "$IT_LIGHTTPD_PORT" "$ARS_RELAY" "$2" "$top_srcdir/static-admin" &&
        it_on_exit it_stop_lighttpd "$1"
}

# it_stop_lighttpd DIR: ars_stop_lighttpd (which fails when the relay it
# spawned hangs on stop or lighttpd logs its abnormal exit), and the relay
# must have logged its clean stop: lighttpd reaps it, so its exit status
# cannot be read here (a leak or sanitizer report in its stderr is still
# found by the log scan).
it_stop_lighttpd() {
    ars_stop_lighttpd "$1" || return 1
    if ! grep -q 'event=stopped' "$1/relay.log"; then
        echo "the relay spawned by lighttpd in $1 did not log event=stopped" >&2
        return 1
    fi
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
