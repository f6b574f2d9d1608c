#include "pg.h"
#include "clock.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"

struct ars_pg_conn {
    PGconn *conn;
    const struct ars_config *cfg;   /* config it was opened with */
    double last_used_ms;
    struct ars_pg_conn *next;       /* idle list */
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static struct ars_pg_conn *idle_list;
static long open_count;            /* idle + in use */


int ars_pg_enabled(const struct ars_config *cfg)
{
    return cfg->pg_host[0] != '\0';
}

static void conn_close(struct ars_pg_conn *c)
{
    if (c->conn)
        PQfinish(c->conn);
    free(c);
}

/* Waits until the socket is ready for what libpq asked, or the deadline. */
static int wait_socket(PGconn *conn, int for_write, double deadline)
{
    int fd = PQsocket(conn);
    if (fd < 0)
        return -1;
    for (;;) {
        double left = deadline - ((double)ars_mono_us() / 1000.0);
        if (left <= 0)
            return 0;
        struct pollfd p = { .fd = fd, .events = (short)(for_write ? POLLOUT : POLLIN) };
        int rc = poll(&p, 1, (int)left + 1);
        if (rc > 0)
            return 1;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

static void copy_error(char *errbuf, size_t errlen, const char *prefix, const char *msg)
{
    /* libpq messages end in a newline; keep the log one line. */
    snprintf(errbuf, errlen, "%s%s", prefix, msg && *msg ? msg : "unknown error");
    size_t n = strlen(errbuf);
    while (n && (errbuf[n - 1] == '\n' || errbuf[n - 1] == ' '))
        errbuf[--n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (errbuf[i] == '\n')
            errbuf[i] = ' ';
}

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static enum ars_err conn_open(const struct ars_config *cfg, double deadline, struct ars_pg_conn **out,
                              char *errbuf, size_t errlen)
{
    char port[16], timeout_opt[64];
    snprintf(port, sizeof(port), "%lld", cfg->pg_port);
    snprintf(timeout_opt, sizeof(timeout_opt), "-c statement_timeout=%lld", cfg->pg_statement_timeout_ms);
    const char *kw[] = { "host", "port", "dbname", "user", "password", "sslmode",
                         "application_name", "options", "connect_timeout", NULL };
    const char *val[] = { cfg->pg_host, port, cfg->pg_database, cfg->pg_user, cfg->pg_password,
                          cfg->pg_ssl ? "require" : "prefer", "ai-relay", timeout_opt, "10", NULL };
    PGconn *conn = PQconnectStartParams(kw, val, 0);
    if (!conn || PQstatus(conn) == CONNECTION_BAD) {
        copy_error(errbuf, errlen, "postgres connect: ", conn ? PQerrorMessage(conn) : "out of memory");
        PQfinish(conn);
        return ARS_ERR_UNAVAILABLE;
    }
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    for (;;) {
        if (st == PGRES_POLLING_OK)
            break;
        if (st == PGRES_POLLING_FAILED) {
            copy_error(errbuf, errlen, "postgres connect: ", PQerrorMessage(conn));
            PQfinish(conn);
            return ARS_ERR_UNAVAILABLE;
        }
        int w = wait_socket(conn, st == PGRES_POLLING_WRITING, deadline);
        if (w <= 0) {
            copy_error(errbuf, errlen, "postgres connect: ", w == 0 ? "timed out" : "socket error");
            PQfinish(conn);
            return w == 0 ? ARS_ERR_TIMEOUT : ARS_ERR_UNAVAILABLE;
        }
        st = PQconnectPoll(conn);
    }
    /* Server NOTICEs (e.g. "already exists, skipping") are not errors. */
    PQsetNoticeProcessor(conn, ignore_notice, NULL);
    if (PQsetnonblocking(conn, 1) != 0) {
        copy_error(errbuf, errlen, "postgres: ", PQerrorMessage(conn));
        PQfinish(conn);
        return ARS_ERR_UNAVAILABLE;
    }
    struct ars_pg_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        PQfinish(conn);
        return ARS_ERR_NOMEM;
    }
    c->conn = conn;
    c->cfg = cfg;
    *out = c;
    return ARS_OK;
}

enum ars_err ars_pg_acquire(const struct ars_config *cfg, long timeout_ms,
                            struct ars_pg_conn **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    if (!ars_pg_enabled(cfg)) {
        snprintf(errbuf, errlen, "postgres disabled (PG_HOST empty)");
        return ARS_ERR_UNAVAILABLE;
    }
    double deadline = ((double)ars_mono_us() / 1000.0) + (double)timeout_ms;
    struct ars_pg_conn *stale = NULL;
    pthread_mutex_lock(&pool_lock);
    for (;;) {
        /* Prefer the most recently used idle connection; close ones idle
         * too long or opened under an older config. */
        while (idle_list) {
            struct ars_pg_conn *c = idle_list;
            idle_list = c->next;
            if (c->cfg != cfg || ((double)ars_mono_us() / 1000.0) - c->last_used_ms > (double)cfg->pg_idle_timeout_ms) {
                open_count--;
                c->next = stale;
                stale = c;
                continue;
            }
            pthread_mutex_unlock(&pool_lock);
            while (stale) { struct ars_pg_conn *n = stale->next; conn_close(stale); stale = n; }
            *out = c;
            return ARS_OK;
        }
        if (open_count < cfg->pg_pool_max) {
            open_count++;
            break;
        }
        double left = deadline - ((double)ars_mono_us() / 1000.0);
        if (left <= 0) {
            pthread_mutex_unlock(&pool_lock);
            while (stale) { struct ars_pg_conn *n = stale->next; conn_close(stale); stale = n; }
            snprintf(errbuf, errlen, "postgres pool exhausted (PG_POOL_MAX=%lld)", cfg->pg_pool_max);
            return ARS_ERR_TIMEOUT;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long long ns = ts.tv_nsec + (long long)(left * 1e6);
        ts.tv_sec += (time_t)(ns / 1000000000LL);
        ts.tv_nsec = (long)(ns % 1000000000LL);
        pthread_cond_timedwait(&pool_cond, &pool_lock, &ts);
    }
    pthread_mutex_unlock(&pool_lock);
    while (stale) { struct ars_pg_conn *n = stale->next; conn_close(stale); stale = n; }

    enum ars_err err = conn_open(cfg, deadline, out, errbuf, errlen);
    if (err) {
        pthread_mutex_lock(&pool_lock);
        open_count--;
        pthread_cond_signal(&pool_cond);
        pthread_mutex_unlock(&pool_lock);
    }
    return err;
}

void ars_pg_release(struct ars_pg_conn *c, int broken)
{
    if (!c)
        return;
    if (!broken && PQstatus(c->conn) != CONNECTION_OK)
        broken = 1;
    pthread_mutex_lock(&pool_lock);
    if (broken) {
        open_count--;
    } else {
        c->last_used_ms = ((double)ars_mono_us() / 1000.0);
        c->next = idle_list;
        idle_list = c;
    }
    pthread_cond_signal(&pool_cond);
    pthread_mutex_unlock(&pool_lock);
    if (broken)
        conn_close(c);
}

static void cancel_query(PGconn *conn)
{
    PGcancel *cancel = PQgetCancel(conn);
    if (cancel) {
        char buf[256];
        PQcancel(cancel, buf, sizeof(buf));
        PQfreeCancel(cancel);
    }
}

/* Errors worth retrying later rather than treating the statement as bad:
 * connection exceptions (08), operator intervention such as a shutdown
 * (57), insufficient resources (53), transaction rollbacks (40). */
static int transient_sqlstate(const char *state)
{
    if (!state || strlen(state) != 5)
        return 1;
    return !strncmp(state, "08", 2) || !strncmp(state, "57", 2) || !strncmp(state, "53", 2) ||
           !strncmp(state, "40", 2);
}

/* After a query was sent: flush it, wait for every result within the
 * deadline, keep the last one. The first SQL error wins. */
static enum ars_err collect(PGconn *conn, double deadline, PGresult **res, char *errbuf, size_t errlen)
{
    *res = NULL;
    /* Non-blocking send: flush until the whole query is out. */
    int f;
    while ((f = PQflush(conn)) == 1) {
        int w = wait_socket(conn, 1, deadline);
        if (w <= 0)
            goto timed_out;
    }
    if (f < 0) {
        copy_error(errbuf, errlen, "postgres: ", PQerrorMessage(conn));
        return ARS_ERR_UNAVAILABLE;
    }
    PGresult *last = NULL;
    enum ars_err err = ARS_OK;
    for (;;) {
        while (PQisBusy(conn)) {
            int w = wait_socket(conn, 0, deadline);
            if (w <= 0) {
                PQclear(last);
                goto timed_out;
            }
            if (!PQconsumeInput(conn)) {
                PQclear(last);
                copy_error(errbuf, errlen, "postgres: ", PQerrorMessage(conn));
                return ARS_ERR_UNAVAILABLE;
            }
        }
        PGresult *r = PQgetResult(conn);
        if (!r)
            break;
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && !err) {
            copy_error(errbuf, errlen, "postgres: ", PQresultErrorMessage(r));
            err = transient_sqlstate(PQresultErrorField(r, PG_DIAG_SQLSTATE)) || PQstatus(conn) == CONNECTION_BAD
                      ? ARS_ERR_UNAVAILABLE : ARS_ERR_INVALID;
        }
        PQclear(last);
        last = r;
    }
    if (err || !last) {
        PQclear(last);
        if (!err)
            copy_error(errbuf, errlen, "postgres: ", "no result");
        return err ? err : ARS_ERR_UNAVAILABLE;
    }
    *res = last;
    return ARS_OK;

timed_out:
    cancel_query(conn);
    copy_error(errbuf, errlen, "postgres: ", "query timed out");
    return ARS_ERR_TIMEOUT;
}

enum ars_err ars_pg_exec(struct ars_pg_conn *c, const char *sql, int nparams,
                         const char *const *params, long timeout_ms, PGresult **res,
                         char *errbuf, size_t errlen)
{
    *res = NULL;
    double deadline = ((double)ars_mono_us() / 1000.0) + (double)timeout_ms;
    if (!PQsendQueryParams(c->conn, sql, nparams, NULL, params, NULL, NULL, 0)) {
        copy_error(errbuf, errlen, "postgres: ", PQerrorMessage(c->conn));
        return ARS_ERR_UNAVAILABLE;
    }
    return collect(c->conn, deadline, res, errbuf, errlen);
}

enum ars_err ars_pg_exec_script(struct ars_pg_conn *c, const char *sql, long timeout_ms,
                                char *errbuf, size_t errlen)
{
    double deadline = ((double)ars_mono_us() / 1000.0) + (double)timeout_ms;
    if (!PQsendQuery(c->conn, sql)) {
        copy_error(errbuf, errlen, "postgres: ", PQerrorMessage(c->conn));
        return ARS_ERR_UNAVAILABLE;
    }
    PGresult *res = NULL;
    enum ars_err err = collect(c->conn, deadline, &res, errbuf, errlen);
    PQclear(res);
    return err;
}

enum ars_err ars_pg_ping(const struct ars_config *cfg, long timeout_ms, double *latency_ms,
                         char *errbuf, size_t errlen)
{
    double t0 = ((double)ars_mono_us() / 1000.0);
    struct ars_pg_conn *c;
    enum ars_err err = ars_pg_acquire(cfg, timeout_ms, &c, errbuf, errlen);
    if (err)
        return err;
    long left = timeout_ms - (long)(((double)ars_mono_us() / 1000.0) - t0);
    PGresult *res;
    err = ars_pg_exec(c, "SELECT 1", 0, NULL, left > 10 ? left : 10, &res, errbuf, errlen);
    PQclear(res);
    ars_pg_release(c, err != ARS_OK);
    *latency_ms = ((double)ars_mono_us() / 1000.0) - t0;
    return err;
}

void ars_pg_pool_shutdown(void)
{
    pthread_mutex_lock(&pool_lock);
    struct ars_pg_conn *c = idle_list;
    idle_list = NULL;
    while (c) {
        struct ars_pg_conn *n = c->next;
        open_count--;
        conn_close(c);
        c = n;
    }
    pthread_mutex_unlock(&pool_lock);
}
