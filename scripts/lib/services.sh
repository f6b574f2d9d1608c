# shellcheck shell=bash
# ai-relay-service: local services for quickstart, tests and bench.
#
# Source it from bash:   . scripts/lib/services.sh
#
# Every service lives in a directory of its own (DIR) that holds its pid
# file, its log and its generated config. Services are stopped by pid file
# only, never by name (other programs on the machine may run their own
# nginx or redis). Every function prints a clear error on stderr (with the
# tail of the server's log) and returns non-zero on failure; starting a
# service whose pid file names a live process says so and returns 0.
#
# Public functions:
#   ars_free_port                          print a free loopback TCP port (20000 to the ephemeral range)
#   ars_running PIDFILE                    true (and prints the pid) if the pid file names a live process
#   ars_start_redis DIR PORT               / ars_stop_redis DIR
#   ars_start_pg DIR PORT DBNAME USER PASSWORD  / ars_stop_pg DIR
#   ars_start_relay DIR SOCKET CONFIG      / ars_stop_relay DIR
#   ars_start_nginx DIR PORT RELAY_SOCKET STATIC_DIR      / ars_stop_nginx DIR
#   ars_start_lighttpd DIR PORT RELAY_BIN RELAY_CONFIG STATIC_DIR / ars_stop_lighttpd DIR
#   ars_wait_http URL [TIMEOUT_SECONDS]    wait for a 2xx answer
#   ars_install_deps                       apt-get install the missing build/run packages
#
# Environment knobs (all optional):
#   ARS_CONF_DIR        where ai-relay.conf templates live (default: <repo>/conf)
#   ARS_RELAY_BIN       relay binary for ars_start_relay (default: <repo>/ai-relay,
#                       else ai-relay from PATH)
#   ARS_BIND            listen address of nginx/lighttpd (default 127.0.0.1)
#   ARS_NGINX_WORKERS   nginx worker_processes (default auto)
#   ARS_NGINX_ACCESS_LOG  "off" (default) or a path
#   ARS_STOP_TIMEOUT    seconds to wait for a process to exit (default 15)
#   ARS_SOCKET_GROUP    group given the relay socket when run as root (default nogroup)
#   ARS_QUIET=1         no progress messages (errors are still printed)
# After ars_stop_relay, ARS_RELAY_EXIT_STATUS holds the relay's exit status
# when the calling shell started it (else it is empty).

ARS_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ARS_TOP_DIR=$(cd "$ARS_LIB_DIR/../.." && pwd)
ARS_RELAY_EXIT_STATUS=

# Debian packages needed to build, test and run the relay locally.
ARS_DEPS="jq libfcgi-dev libfcgi-bin libcurl4-openssl-dev libhiredis-dev libpq-dev
libjson-c-dev libssl-dev check pkg-config autoconf automake libtool make gcc
lighttpd nginx redis-server postgresql spawn-fcgi wrk curl ca-certificates
procps iproute2
clang libclang-rt-14-dev"   # the fuzz targets (check/fuzz, run by make check)

# ---------------------------------------------------------------- helpers

_ars_msg() { [ "${ARS_QUIET:-0}" = 1 ] || printf '%s\n' "$*"; }
_ars_err() { printf 'error: %s\n' "$*" >&2; }

# _ars_tail FILE [N]: show the last N lines of a log on stderr.
_ars_tail() {
    local file=$1 n=${2:-25}
    if [ -s "$file" ]; then
        printf -- '--- last %s lines of %s ---\n' "$n" "$file" >&2
        tail -n "$n" "$file" >&2
        printf -- '---\n' >&2
    else
        printf -- '(%s is empty or missing)\n' "$file" >&2
    fi
}

_ars_conf_dir() { printf '%s\n' "${ARS_CONF_DIR:-$ARS_TOP_DIR/conf}"; }

# _ars_alive PID: the process exists and is not a zombie. PID 1 on these
# machines does not reap orphans, so `kill -0` alone would still succeed
# for a server that has exited.
_ars_alive() {
    local stat
    case $1 in ''|*[!0-9]*) return 1 ;; esac
    stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    case $stat in ''|Z*) return 1 ;; esac
    return 0
}

# ars_running PIDFILE: print the pid and succeed if PIDFILE names a live
# process. Postgres' postmaster.pid (pid on its first line) works too.
ars_running() {
    local pid
    [ -r "$1" ] || return 1
    pid=$(head -n 1 "$1" 2>/dev/null | tr -d '[:space:]')
    _ars_alive "$pid" || return 1
    printf '%s\n' "$pid"
}

# _ars_wait_gone PID TIMEOUT: wait until PID is gone (or a zombie).
_ars_wait_gone() {
    local pid=$1 timeout=$2 i
    for ((i = 0; i < timeout * 10; i++)); do
        _ars_alive "$pid" || return 0
        sleep 0.1
    done
    ! _ars_alive "$pid"
}

# _ars_port_in_use PORT: a socket holds this local TCP port. TIME-WAIT
# leftovers of closed connections don't count: servers bind with
# SO_REUSEADDR.
_ars_port_in_use() {
    [ -n "$(ss -Htan exclude time-wait "sport = :$1" 2>/dev/null)" ]
}

_ars_port_listening() {
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

# _ars_wait_port PORT TIMEOUT PIDFILE LOG NAME: wait until PORT listens;
# fail early when the process in PIDFILE is gone.
_ars_wait_port() {
    local port=$1 timeout=$2 pidfile=$3 log=$4 name=$5 i
    for ((i = 0; i < timeout * 10; i++)); do
        _ars_port_listening "$port" && return 0
        if [ "$i" -ge 10 ] && [ -n "$pidfile" ] && ! ars_running "$pidfile" >/dev/null; then
            _ars_err "$name exited during startup"
            _ars_tail "$log"
            return 1
        fi
        sleep 0.1
    done
    _ars_err "$name is not listening on 127.0.0.1:$port after ${timeout}s"
    _ars_tail "$log"
    return 1
}

# _ars_check_port PORT NAME: fail if PORT is busy or not a number.
_ars_check_port() {
    case $1 in
        ''|*[!0-9]*) _ars_err "$2: invalid port '$1'"; return 1 ;;
    esac
    if [ "$1" -lt 1 ] || [ "$1" -gt 65535 ]; then
        _ars_err "$2: invalid port '$1'"; return 1
    fi
    # Only a listener conflicts: our servers bind with SO_REUSEADDR, so
    # connections left over from a previous run on this port (FIN-WAIT,
    # CLOSE-WAIT) do not stop a restart on the same port.
    if _ars_port_listening "$1"; then
        _ars_err "$2: port $1 is already in use:"
        ss -Hltnp "sport = :$1" >&2 2>/dev/null || true
        return 1
    fi
}

# _ars_abs PATH: absolute path (the file need not exist).
_ars_abs() {
    case $1 in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$(pwd)" "$1" ;;
    esac
}

# _ars_sed_value VALUE: escape VALUE for the right-hand side of s|..|..|.
_ars_sed_value() {
    printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'
}

# _ars_subst IN OUT TOKEN=VALUE...: copy IN to OUT replacing @TOKEN@.
_ars_subst() {
    local in=$1 out=$2 kv key val script=
    shift 2
    [ -r "$in" ] || { _ars_err "template $in not found (set ARS_CONF_DIR?)"; return 1; }
    for kv in "$@"; do
        key=${kv%%=*}
        val=$(_ars_sed_value "${kv#*=}")
        script="${script}s|@${key}@|${val}|g;"
    done
    sed -e "$script" "$in" >"$out.tmp" || { _ars_err "cannot write $out"; return 1; }
    mv -f "$out.tmp" "$out"
    if grep -n '@[A-Z_][A-Z_]*@' "$out" | grep -v '^[0-9]*:[[:space:]]*#' >&2; then
        _ars_err "unreplaced placeholder in $out (lines above)"
        return 1
    fi
}

# _ars_spawn PIDFILE LOG CMD...: run CMD in the background in its own
# session (no terminal signals), stdin from /dev/null, stdout+stderr
# appended to LOG. PIDFILE gets the pid of CMD itself. `setsid -w` stays
# CMD's parent and reaps it (no zombie), and is this shell's child, so
# `wait $_ARS_SPAWN_WAITER` yields CMD's exit status.
_ARS_SPAWN_WAITER=
_ars_spawn() {
    local pidfile=$1 log=$2 i
    shift 2
    rm -f "$pidfile"
    # shellcheck disable=SC2016  # $$ and $1 expand in the inner sh
    setsid -w sh -c 'echo $$ >"$1"; shift; exec "$@"' sh "$pidfile" "$@" \
        </dev/null >>"$log" 2>&1 &
    _ARS_SPAWN_WAITER=$!
    for ((i = 0; i < 50; i++)); do
        [ -s "$pidfile" ] && return 0
        sleep 0.02
    done
    _ars_err "could not start $1 (it exited at once)"
    _ars_tail "$log"
    return 1
}

# _ars_stop_pid NAME PID SIGNAL LOG: send SIGNAL, wait ARS_STOP_TIMEOUT
# seconds, then SIGKILL (and fail).
_ars_stop_pid() {
    local name=$1 pid=$2 sig=$3 log=$4 timeout=${ARS_STOP_TIMEOUT:-15}
    kill "-$sig" "$pid" 2>/dev/null || true
    if _ars_wait_gone "$pid" "$timeout"; then
        return 0
    fi
    _ars_err "$name (pid $pid) still running ${timeout}s after SIG$sig; sending SIGKILL"
    [ -n "$log" ] && _ars_tail "$log"
    kill -KILL "$pid" 2>/dev/null || true
    _ars_wait_gone "$pid" 5 || _ars_err "$name (pid $pid) survived SIGKILL"
    return 1
}

# _ars_make_traversable DIR: every parent of DIR must be o+x so that the
# postgres user (or nginx's nobody workers) can reach DIR.
_ars_make_traversable() {
    local d
    d=$(dirname "$(_ars_abs "$1")")
    while [ "$d" != / ] && [ -n "$d" ]; do
        if [ -d "$d" ] && [ "$(stat -c %A "$d" | cut -c10)" != x ] &&
           [ "$(stat -c %A "$d" | cut -c10)" != t ]; then
            _ars_msg "note: chmod o+x $d (so that unprivileged servers can reach $1)"
            chmod o+x "$d" || { _ars_err "cannot chmod o+x $d"; return 1; }
        fi
        d=$(dirname "$d")
    done
}

# --------------------------------------------------------------- ports

# ars_free_port: print a random loopback TCP port that nothing uses right
# now, below the kernel's ephemeral range (20000 up to it): a server that
# is stopped and started again on its port must not find it taken by some
# client's outgoing connection meanwhile.
ars_free_port() {
    local i port low=20000 high=32767 eph
    if read -r eph _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null && [ "$eph" -gt $((low + 1000)) ]; then
        high=$((eph - 1))
    fi
    for ((i = 0; i < 200; i++)); do
        port=$(shuf -i "$low-$high" -n 1) || { _ars_err "shuf failed"; return 1; }
        if ! _ars_port_in_use "$port"; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    _ars_err "no free port found in $low-$high"
    return 1
}

# ----------------------------------------------------------------- Redis

# ars_start_redis DIR PORT: redis-server on 127.0.0.1:PORT as the relay needs
# it in production: the append-only file (fsync every second) in DIR, so a
# restart keeps keys, accounts, leases and usage; noeviction, so a full
# Redis refuses writes (the relay queues usage, answers 503) instead of
# silently dropping counters or records. pid DIR/redis.pid, log DIR/redis.log.
ars_start_redis() {
    local dir port pid i
    [ $# -eq 2 ] || { _ars_err "usage: ars_start_redis DIR PORT"; return 2; }
    dir=$(_ars_abs "$1"); port=$2
    mkdir -p "$dir" || { _ars_err "cannot create $dir"; return 1; }
    if pid=$(ars_running "$dir/redis.pid"); then
        _ars_msg "redis: already running (pid $pid, port $(cat "$dir/port" 2>/dev/null || echo '?'))"
        return 0
    fi
    command -v redis-server >/dev/null || { _ars_err "redis-server not installed (apt-get install redis-server)"; return 1; }
    _ars_check_port "$port" redis || return 1
    rm -f "$dir/redis.pid"
    if ! redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
            --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
            --save '' --appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
            >>"$dir/redis-start.log" 2>&1; then
        _ars_err "redis-server failed to start"
        _ars_tail "$dir/redis-start.log" 10
        _ars_tail "$dir/redis.log"
        return 1
    fi
    for ((i = 0; i < 100; i++)); do
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
            printf '%s\n' "$port" >"$dir/port"
            _ars_msg "redis: running on 127.0.0.1:$port (pid $(cat "$dir/redis.pid" 2>/dev/null), log $dir/redis.log)"
            return 0
        fi
        sleep 0.1
    done
    _ars_err "redis does not answer PING on 127.0.0.1:$port"
    _ars_tail "$dir/redis.log"
    return 1
}

# ars_stop_redis DIR
ars_stop_redis() {
    local dir pid
    [ $# -eq 1 ] || { _ars_err "usage: ars_stop_redis DIR"; return 2; }
    dir=$(_ars_abs "$1")
    if ! pid=$(ars_running "$dir/redis.pid"); then
        rm -f "$dir/redis.pid"
        _ars_msg "redis: not running"
        return 0
    fi
    _ars_stop_pid redis "$pid" TERM "$dir/redis.log" || return 1
    rm -f "$dir/redis.pid"
    _ars_msg "redis: stopped"
}

# ------------------------------------------------------------ PostgreSQL

# _ars_pg_bindir: newest /usr/lib/postgresql/*/bin.
_ars_pg_bindir() {
    local d
    d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$d" ] || [ ! -x "$d/pg_ctl" ]; then
        _ars_err "PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)"
        return 1
    fi
    printf '%s\n' "$d"
}

# _ars_as_postgres CMD...: run as the postgres user from a directory it can read.
_ars_as_postgres() {
    (cd / && runuser -u postgres -- "$@")
}

# ars_start_pg DIR PORT DBNAME USER PASSWORD: a private cluster in DIR/data
# on 127.0.0.1:PORT (unix socket in DIR), fsync off; creates (or updates)
# role USER with PASSWORD and database DBNAME owned by it. Local socket
# connections are trusted; TCP connections need the password (scram).
ars_start_pg() {
    local dir port db user pw bin pgdata pid sockpath started=0
    [ $# -eq 5 ] || { _ars_err "usage: ars_start_pg DIR PORT DBNAME USER PASSWORD"; return 2; }
    dir=$(_ars_abs "$1"); port=$2; db=$3; user=$4; pw=$5
    bin=$(_ars_pg_bindir) || return 1
    id postgres >/dev/null 2>&1 || { _ars_err "user 'postgres' missing (apt-get install postgresql)"; return 1; }
    [ "$(id -u)" = 0 ] || { _ars_err "ars_start_pg must run as root (it uses runuser -u postgres)"; return 1; }
    pgdata=$dir/data
    sockpath="$dir/.s.PGSQL.$port"
    if [ "${#sockpath}" -gt 100 ]; then
        _ars_err "postgres: socket path $sockpath is too long (max ~100 chars); use a shorter DIR"
        return 1
    fi
    mkdir -p "$dir" || { _ars_err "cannot create $dir"; return 1; }
    _ars_make_traversable "$dir" || return 1
    if ! chown postgres:postgres "$dir" || ! chmod 0700 "$dir"; then
        _ars_err "cannot chown $dir to postgres"
        return 1
    fi

    if pid=$(ars_running "$pgdata/postmaster.pid"); then
        _ars_msg "postgres: already running (pid $pid, port $(sed -n 4p "$pgdata/postmaster.pid"))"
        port=$(sed -n 4p "$pgdata/postmaster.pid")
    else
        if [ ! -s "$pgdata/PG_VERSION" ]; then
            if ! _ars_as_postgres "$bin/initdb" -D "$pgdata" -U postgres \
                    --auth-local=trust --auth-host=scram-sha-256 \
                    -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1; then
                _ars_err "initdb failed"
                _ars_tail "$dir/initdb.log"
                return 1
            fi
        fi
        _ars_check_port "$port" postgres || return 1
        # A crashed server leaves a stale postmaster.pid; pg_ctl copes with
        # that itself when the pid is not a postgres process.
        if ! _ars_as_postgres "$bin/pg_ctl" -D "$pgdata" -l "$dir/postgres.log" -w -t 60 \
                -o "-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
                start >"$dir/pg_ctl.log" 2>&1; then
            _ars_err "postgres failed to start on 127.0.0.1:$port"
            _ars_tail "$dir/pg_ctl.log" 10
            _ars_tail "$dir/postgres.log"
            return 1
        fi
        started=1
    fi

    # Role and database, idempotently. Values go in through psql variables
    # on stdin (not argv) and are quoted by format(%I, %L) in SQL; inside a
    # psql single-quoted \set value a quote is written twice.
    local q="'" qq="''" quser qpw qdb
    quser=${user//$q/$qq}; qpw=${pw//$q/$qq}; qdb=${db//$q/$qq}
    if ! "$bin/psql" -X -q -A -t -h "$dir" -p "$port" -U postgres -d postgres \
            -v ON_ERROR_STOP=1 >"$dir/setup.log" 2>&1 <<SQL
\\set ars_user '$quser'
\\set ars_pw '$qpw'
\\set ars_db '$qdb'
SELECT format('CREATE ROLE %I LOGIN', :'ars_user') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'ars_user')\\gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'ars_user', :'ars_pw')\\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'ars_db', :'ars_user') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'ars_db')\\gexec
SQL
    then
        _ars_err "postgres: creating role '$user' / database '$db' failed"
        _ars_tail "$dir/setup.log"
        return 1
    fi
    # Prove the application's credentials work over TCP.
    if ! PGPASSWORD=$pw PGCONNECT_TIMEOUT=5 "$bin/psql" -X -q -A -t -h 127.0.0.1 -p "$port" \
            -U "$user" -d "$db" -c 'SELECT 1' >"$dir/check.log" 2>&1; then
        _ars_err "postgres: cannot log in as '$user' to '$db' on 127.0.0.1:$port"
        _ars_tail "$dir/check.log"
        return 1
    fi
    printf '%s\n' "$port" >"$dir/port"
    if [ "$started" = 1 ]; then
        _ars_msg "postgres: running on 127.0.0.1:$port, database $db, user $user (log $dir/postgres.log)"
    fi
    return 0
}

# ars_stop_pg DIR
ars_stop_pg() {
    local dir bin
    [ $# -eq 1 ] || { _ars_err "usage: ars_stop_pg DIR"; return 2; }
    dir=$(_ars_abs "$1")
    if ! ars_running "$dir/data/postmaster.pid" >/dev/null; then
        _ars_msg "postgres: not running"
        return 0
    fi
    bin=$(_ars_pg_bindir) || return 1
    if ! _ars_as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w -t "${ARS_STOP_TIMEOUT:-15}" \
            stop >"$dir/pg_ctl.log" 2>&1; then
        _ars_err "postgres did not stop"
        _ars_tail "$dir/pg_ctl.log" 10
        _ars_tail "$dir/postgres.log"
        return 1
    fi
    _ars_msg "postgres: stopped"
}

# ----------------------------------------------------------------- relay

_ars_relay_bin() {
    if [ -n "${ARS_RELAY_BIN:-}" ]; then
        printf '%s\n' "$ARS_RELAY_BIN"
    elif [ -x "$ARS_TOP_DIR/ai-relay" ]; then
        printf '%s\n' "$ARS_TOP_DIR/ai-relay"
    elif command -v ai-relay >/dev/null; then
        command -v ai-relay
    else
        _ars_err "ai-relay binary not found (build it with make, or set ARS_RELAY_BIN)"
        return 1
    fi
}

# _ars_unix_listening PATH: a process listens on unix socket PATH.
_ars_unix_listening() {
    ss -Hlx 2>/dev/null | awk -v p="$1" '$5 == p { found = 1 } END { exit !found }'
}

# ars_start_relay DIR SOCKET CONFIG: `ai-relay --listen unix:SOCKET --config
# CONFIG` in the background; log DIR/relay.log, pid DIR/relay.pid. Waits
# until the socket accepts connections.
ars_start_relay() {
    local dir sock config bin pid i
    [ $# -eq 3 ] || { _ars_err "usage: ars_start_relay DIR SOCKET CONFIG"; return 2; }
    dir=$(_ars_abs "$1"); sock=$(_ars_abs "$2"); config=$(_ars_abs "$3")
    mkdir -p "$dir" "$(dirname "$sock")" || { _ars_err "cannot create $dir"; return 1; }
    if pid=$(ars_running "$dir/relay.pid"); then
        _ars_msg "relay: already running (pid $pid, socket $sock)"
        return 0
    fi
    bin=$(_ars_relay_bin) || return 1
    [ -r "$config" ] || { _ars_err "relay config $config not readable"; return 1; }
    if [ "${#sock}" -gt 100 ]; then
        _ars_err "relay socket path $sock is too long (max ~100 chars)"
        return 1
    fi
    if _ars_unix_listening "$sock"; then
        _ars_err "another process already listens on $sock"
        return 1
    fi
    # The relay's socket is mode 0660: as root, hand it to the group the
    # private nginx's workers run as (nobody:nogroup, nginx's built-in
    # default) unless the config or the environment names a group.
    local group_env=()
    if [ "$(id -u)" = 0 ] && [ -z "${LISTEN_SOCKET_GROUP+x}" ] && ! grep -q '^LISTEN_SOCKET_GROUP=' "$config"; then
        group_env=(env "LISTEN_SOCKET_GROUP=${ARS_SOCKET_GROUP:-nogroup}")
    fi
    printf '%s starting %s --listen unix:%s --config %s\n' "$(date '+%F %T')" "$bin" "$sock" "$config" >>"$dir/relay.log"
    _ars_spawn "$dir/relay.pid" "$dir/relay.log" "${group_env[@]}" "$bin" --listen "unix:$sock" --config "$config" || return 1
    printf '%s\n' "$_ARS_SPAWN_WAITER" >"$dir/relay.waiter"
    for ((i = 0; i < 150; i++)); do
        if _ars_unix_listening "$sock"; then
            _ars_msg "relay: running (pid $(cat "$dir/relay.pid"), socket $sock, log $dir/relay.log)"
            return 0
        fi
        if ! ars_running "$dir/relay.pid" >/dev/null; then
            _ars_err "ai-relay exited during startup"
            _ars_tail "$dir/relay.log"
            return 1
        fi
        sleep 0.1
    done
    _ars_err "ai-relay does not listen on $sock after 15s"
    _ars_tail "$dir/relay.log"
    return 1
}

# ars_stop_relay DIR: SIGTERM (the relay drains in-flight requests), wait
# up to ARS_STOP_TIMEOUT (15) seconds, then SIGKILL and fail. Sets
# ARS_RELAY_EXIT_STATUS when this shell started the relay (also when the
# relay had already exited: a crash is reported, not taken for a stop),
# and fails when the relay's worker processes (--processes) outlive it.
ars_stop_relay() {
    local dir pid waiter kids k left="" rc=0 st
    [ $# -eq 1 ] || { _ars_err "usage: ars_stop_relay DIR"; return 2; }
    dir=$(_ars_abs "$1")
    ARS_RELAY_EXIT_STATUS=
    waiter=$(cat "$dir/relay.waiter" 2>/dev/null || true)
    if pid=$(ars_running "$dir/relay.pid"); then
        kids=$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -s '[:space:]' ' ')
        _ars_stop_pid relay "$pid" TERM "$dir/relay.log" || rc=1
        # Worker processes must be gone with their supervisor (they are
        # reparented, not reaped, when it exits first).
        for k in $kids; do
            if ! _ars_wait_gone "$k" 2; then
                left="$left $k"
                kill -KILL "$k" 2>/dev/null || true
            fi
        done
        if [ -n "$left" ]; then
            _ars_err "relay (pid $pid) exited but left worker processes:$left (killed)"
            rc=1
        fi
    elif [ -z "$waiter" ]; then
        rm -f "$dir/relay.pid"
        _ars_msg "relay: not running"
        return 0
    fi
    if [ -n "$waiter" ] && [ "$rc" = 0 ]; then
        # Only works if this shell is the waiter's parent; 127 = not our child.
        st=0
        wait "$waiter" 2>/dev/null || st=$?
        [ "$st" != 127 ] && ARS_RELAY_EXIT_STATUS=$st
    fi
    rm -f "$dir/relay.pid" "$dir/relay.waiter"
    if [ "$rc" = 0 ]; then
        _ars_msg "relay: stopped${ARS_RELAY_EXIT_STATUS:+ (exit status $ARS_RELAY_EXIT_STATUS)}"
    fi
    return "$rc"
}

# ----------------------------------------------------------------- nginx

# _ars_nginx DIR ARGS...: nginx with the private prefix in DIR.
_ars_nginx() {
    local dir=$1
    shift
    nginx -p "$dir/" -c nginx.conf -e "$dir/logs/error.log" "$@"
}

# ars_start_nginx DIR PORT RELAY_SOCKET STATIC_DIR: a private nginx (prefix
# DIR, pid DIR/nginx.pid, log DIR/logs/error.log) on ARS_BIND:PORT with the
# site config conf/nginx/ai-relay.conf in front of the relay at RELAY_SOCKET.
ars_start_nginx() {
    local dir port sock static conf pid bind
    [ $# -eq 4 ] || { _ars_err "usage: ars_start_nginx DIR PORT RELAY_SOCKET STATIC_DIR"; return 2; }
    dir=$(_ars_abs "$1"); port=$2; sock=$(_ars_abs "$3"); static=$(_ars_abs "$4")
    bind=${ARS_BIND:-127.0.0.1}
    conf=$(_ars_conf_dir)
    mkdir -p "$dir/logs" "$dir/tmp" || { _ars_err "cannot create $dir"; return 1; }
    if pid=$(ars_running "$dir/nginx.pid"); then
        _ars_msg "nginx: already running (pid $pid, port $(cat "$dir/port" 2>/dev/null || echo '?'))"
        return 0
    fi
    command -v nginx >/dev/null || { _ars_err "nginx not installed (apt-get install nginx)"; return 1; }
    _ars_check_port "$port" nginx || return 1
    [ -d "$static" ] || { _ars_err "static dir $static does not exist"; return 1; }
    cp /etc/nginx/fastcgi_params /etc/nginx/mime.types "$dir/" ||
        { _ars_err "cannot copy /etc/nginx/fastcgi_params and mime.types"; return 1; }
    _ars_subst "$conf/nginx/nginx-standalone.conf.in" "$dir/nginx.conf" \
        "WORKER_PROCESSES=${ARS_NGINX_WORKERS:-auto}" \
        "ACCESS_LOG=${ARS_NGINX_ACCESS_LOG:-off}" || return 1
    _ars_subst "$conf/nginx/ai-relay.conf" "$dir/ai-relay.conf" \
        "RELAY_SOCKET=$sock" "STATIC_DIR=$static" || return 1
    sed -i -e "s|^\\([[:space:]]*\\)listen 127\\.0\\.0\\.1:3000;|\\1listen $bind:$port;|" "$dir/ai-relay.conf"
    grep -q "listen $bind:$port;" "$dir/ai-relay.conf" ||
        { _ars_err "could not set the listen port in $dir/ai-relay.conf"; return 1; }
    # nginx workers run as nobody: they must reach the static files.
    if ! runuser -u nobody -- test -r "$static" 2>/dev/null; then
        _ars_msg "warning: $static is not readable by user nobody; nginx will answer 403/404 for /admin/"
    fi
    if ! _ars_nginx "$dir" -t -q >"$dir/logs/nginx-t.log" 2>&1; then
        _ars_err "nginx config test failed ($dir/nginx.conf)"
        _ars_tail "$dir/logs/nginx-t.log"
        return 1
    fi
    rm -f "$dir/nginx.pid"
    if ! _ars_nginx "$dir" >>"$dir/logs/error.log" 2>&1; then
        _ars_err "nginx failed to start"
        _ars_tail "$dir/logs/error.log"
        return 1
    fi
    _ars_wait_port "$port" 10 "$dir/nginx.pid" "$dir/logs/error.log" nginx || return 1
    printf '%s\n' "$port" >"$dir/port"
    _ars_msg "nginx: running on http://$bind:$port/ (pid $(cat "$dir/nginx.pid"), log $dir/logs/error.log)"
}

# ars_stop_nginx DIR: graceful quit (open streams get worker_shutdown_timeout).
ars_stop_nginx() {
    local dir pid rc=0
    [ $# -eq 1 ] || { _ars_err "usage: ars_stop_nginx DIR"; return 2; }
    dir=$(_ars_abs "$1")
    if ! pid=$(ars_running "$dir/nginx.pid"); then
        _ars_msg "nginx: not running"
        return 0
    fi
    _ars_nginx "$dir" -s quit >>"$dir/logs/error.log" 2>&1 || kill -QUIT "$pid" 2>/dev/null || true
    if ! _ars_wait_gone "$pid" "${ARS_STOP_TIMEOUT:-15}"; then
        _ars_stop_pid nginx "$pid" TERM "$dir/logs/error.log" || rc=1
    fi
    rm -f "$dir/nginx.pid"
    [ "$rc" = 0 ] && _ars_msg "nginx: stopped"
    return "$rc"
}

# -------------------------------------------------------------- lighttpd

# ars_start_lighttpd DIR PORT RELAY_BIN RELAY_CONFIG STATIC_DIR: a private
# lighttpd (config DIR/lighttpd.conf, pid DIR/lighttpd.pid, log
# DIR/error.log) on ARS_BIND:PORT that spawns the relay itself
# ("bin-path"). The relay's log goes to DIR/relay.log.
ars_start_lighttpd() {
    local dir port bin config static conf pid bind
    [ $# -eq 5 ] || { _ars_err "usage: ars_start_lighttpd DIR PORT RELAY_BIN RELAY_CONFIG STATIC_DIR"; return 2; }
    dir=$(_ars_abs "$1"); port=$2; bin=$(_ars_abs "$3"); config=$(_ars_abs "$4"); static=$(_ars_abs "$5")
    bind=${ARS_BIND:-127.0.0.1}
    conf=$(_ars_conf_dir)
    mkdir -p "$dir/uploads" || { _ars_err "cannot create $dir"; return 1; }
    if pid=$(ars_running "$dir/lighttpd.pid"); then
        _ars_msg "lighttpd: already running (pid $pid, port $(cat "$dir/port" 2>/dev/null || echo '?'))"
        return 0
    fi
    command -v lighttpd >/dev/null || { _ars_err "lighttpd not installed (apt-get install lighttpd)"; return 1; }
    _ars_check_port "$port" lighttpd || return 1
    [ -x "$bin" ] || { _ars_err "relay binary $bin not found or not executable"; return 1; }
    [ -r "$config" ] || { _ars_err "relay config $config not readable"; return 1; }
    [ -d "$static" ] || { _ars_err "static dir $static does not exist"; return 1; }
    case "$bin$config" in
        *[[:space:]]*) _ars_err "lighttpd bin-path cannot hold paths with spaces: $bin $config"; return 1 ;;
    esac
    if [ "${#dir}" -gt 90 ]; then
        _ars_err "lighttpd dir $dir is too long for a unix socket path"
        return 1
    fi
    _ars_subst "$conf/lighttpd/ai-relay.conf" "$dir/ai-relay.conf" \
        "RELAY_SOCKET=$dir/ai-relay.sock" "STATIC_DIR=$static" || return 1
    _ars_subst "$conf/lighttpd/lighttpd-standalone.conf.in" "$dir/lighttpd.conf" \
        "STATE_DIR=$dir" "BIND=$bind" "PORT=$port" "ERRORLOG=$dir/error.log" \
        "STATIC_DIR=$static" "SITE_CONF=$dir/ai-relay.conf" \
        "RELAY_BIN=$bin" "RELAY_CONFIG=$config" || return 1
    if ! lighttpd -tt -f "$dir/lighttpd.conf" >"$dir/lighttpd-tt.log" 2>&1; then
        _ars_err "lighttpd config test failed ($dir/lighttpd.conf)"
        _ars_tail "$dir/lighttpd-tt.log"
        return 1
    fi
    # lighttpd keeps running (and respawning) when the relay it spawns
    # exits at once, so check the relay's config first.
    if "$bin" --help 2>/dev/null | grep -q -- --check-config &&
       ! "$bin" --config "$config" --check-config >"$dir/check-config.log" 2>&1; then
        _ars_err "the relay refuses its configuration ($config)"
        _ars_tail "$dir/check-config.log" 10
        return 1
    fi
    printf '%s starting lighttpd -D -f %s (relay: %s --config %s)\n' \
        "$(date '+%F %T')" "$dir/lighttpd.conf" "$bin" "$config" >>"$dir/relay.log"
    local logsize
    logsize=$(stat -c %s "$dir/error.log" 2>/dev/null || echo 0)
    _ars_spawn "$dir/lighttpd.pid" "$dir/relay.log" lighttpd -D -f "$dir/lighttpd.conf" || return 1
    if ! _ars_wait_port "$port" 15 "$dir/lighttpd.pid" "$dir/relay.log" lighttpd; then
        _ars_tail "$dir/error.log"
        return 1
    fi
    # The relay is spawned before lighttpd listens; a relay that died at
    # startup shows up as "child exited" in lighttpd's log.
    sleep 0.2
    if tail -c "+$((logsize + 1))" "$dir/error.log" 2>/dev/null | grep -q 'child exited'; then
        _ars_err "the relay spawned by lighttpd exited"
        _ars_tail "$dir/relay.log"
        _ars_tail "$dir/error.log" 10
        ars_stop_lighttpd "$dir" >/dev/null 2>&1 || true
        return 1
    fi
    printf '%s\n' "$port" >"$dir/port"
    _ars_msg "lighttpd: running on http://$bind:$port/ (pid $(cat "$dir/lighttpd.pid"), log $dir/error.log, relay log $dir/relay.log)"
}

# ars_stop_lighttpd DIR: graceful stop (SIGINT: finish in-flight requests,
# up to server.graceful-shutdown-timeout); lighttpd then sends SIGTERM to
# the relay it spawned. Waits for both.
ars_stop_lighttpd() {
    local dir pid kids k logsize rc=0
    [ $# -eq 1 ] || { _ars_err "usage: ars_stop_lighttpd DIR"; return 2; }
    dir=$(_ars_abs "$1")
    if ! pid=$(ars_running "$dir/lighttpd.pid"); then
        rm -f "$dir/lighttpd.pid"
        _ars_msg "lighttpd: not running"
        return 0
    fi
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -s '[:space:]' ' ')
    logsize=$(stat -c %s "$dir/error.log" 2>/dev/null || echo 0)
    ARS_STOP_TIMEOUT=$(( ${ARS_STOP_TIMEOUT:-15} + 5 )) _ars_stop_pid lighttpd "$pid" INT "$dir/error.log" || rc=1
    for k in $kids; do
        if ! _ars_wait_gone "$k" "${ARS_STOP_TIMEOUT:-15}"; then
            _ars_stop_pid "relay (spawned by lighttpd)" "$k" TERM "$dir/relay.log" || rc=1
        fi
    done
    # lighttpd reaps the relay it spawned: a non-zero exit or a signal
    # other than its own SIGTERM shows up only in its log.
    if tail -c "+$((logsize + 1))" "$dir/error.log" 2>/dev/null | grep -E 'child (exited|signal)' >&2; then
        _ars_err "the relay spawned by lighttpd did not exit cleanly (lines above, $dir/error.log)"
        rc=1
    fi
    rm -f "$dir/lighttpd.pid"
    [ "$rc" = 0 ] && _ars_msg "lighttpd: stopped (and the relay it spawned)"
    return "$rc"
}

# ------------------------------------------------------------------ misc

# ars_wait_http URL [TIMEOUT]: wait until URL answers 2xx (default 30 s).
ars_wait_http() {
    local url=$1 timeout=${2:-30} code=000 i
    [ -n "$url" ] || { _ars_err "usage: ars_wait_http URL [TIMEOUT]"; return 2; }
    for ((i = 0; i < timeout * 5; i++)); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null) || true
        case $code in 2??) return 0 ;; esac
        sleep 0.2
    done
    _ars_err "$url did not answer 2xx within ${timeout}s (last status: ${code:-none})"
    return 1
}

# ars_install_deps: apt-get install those of ARS_DEPS that are missing
# (apt-get update only then).
ars_install_deps() {
    local p missing=
    for p in $ARS_DEPS; do
        if [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" != "ii " ]; then
            missing="$missing $p"
        fi
    done
    if [ -z "$missing" ]; then
        _ars_msg "dependencies: all installed"
        return 0
    fi
    _ars_msg "dependencies: installing$missing"
    if [ "$(id -u)" != 0 ]; then
        _ars_err "missing packages:$missing; run as root or: sudo apt-get install$missing"
        return 1
    fi
    # shellcheck disable=SC2086  # word splitting of the package list is intended
    if ! DEBIAN_FRONTEND=noninteractive apt-get update -q ||
       ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing; then
        _ars_err "apt-get install failed for:$missing"
        return 1
    fi
}
