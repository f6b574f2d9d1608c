#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "pg.h"

#define MIGRATE_TIMEOUT_MS 120000
/* pg_advisory_xact_lock key: any constant shared by every ai-relay binary. */
#define MIGRATE_LOCK_KEY "7261796c6572"

long ars_migration_version(const char *name)
{
    if (!name || name[0] < '0' || name[0] > '9')
        return -1;
    long v = 0;
    const char *p = name;
    while (*p >= '0' && *p <= '9') {
        if (v > 100000000)
            return -1;
        v = v * 10 + (*p - '0');
        p++;
    }
    if (p - name < 3 || *p != '_' || p[1] == '\0')
        return -1;
    return v;
}

enum ars_err ars_migrations_plan(const struct ars_migration *list, size_t n, size_t *order,
                                 char *errbuf, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        if (ars_migration_version(list[i].name) < 0) {
            snprintf(errbuf, errlen, "migration \"%s\": name must be NNN_name", list[i].name);
            return ARS_ERR_INVALID;
        }
        order[i] = i;
    }
    /* Insertion sort: the list is short and this keeps it obvious. */
    for (size_t i = 1; i < n; i++) {
        size_t x = order[i];
        long vx = ars_migration_version(list[x].name);
        size_t j = i;
        while (j > 0 && ars_migration_version(list[order[j - 1]].name) > vx) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = x;
    }
    for (size_t i = 1; i < n; i++) {
        if (ars_migration_version(list[order[i]].name) == ars_migration_version(list[order[i - 1]].name)) {
            snprintf(errbuf, errlen, "migrations \"%s\" and \"%s\" share a number",
                     list[order[i - 1]].name, list[order[i]].name);
            return ARS_ERR_INVALID;
        }
    }
    return ARS_OK;
}

int ars_migration_applied(const long *applied, size_t napplied, long v)
{
    for (size_t i = 0; i < napplied; i++)
        if (applied[i] == v)
            return 1;
    return 0;
}

static enum ars_err exec(struct ars_pg_conn *c, const char *sql, int n, const char *const *params,
                         PGresult **res, char *errbuf, size_t errlen)
{
    PGresult *r = NULL;
    enum ars_err err = ars_pg_exec(c, sql, n, params, MIGRATE_TIMEOUT_MS, &r, errbuf, errlen);
    if (res)
        *res = r;
    else
        PQclear(r);
    return err;
}

static const char create_table_sql[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY,"
    " name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

enum ars_err ars_migrate_apply(const struct ars_config *cfg, struct ars_migrate_report *rep,
                               void (*progress)(const char *name, void *arg), void *arg,
                               char *errbuf, size_t errlen)
{
    memset(rep, 0, sizeof(*rep));
    size_t *order = calloc(ars_migrations_count ? ars_migrations_count : 1, sizeof(*order));
    if (!order)
        return ARS_ERR_NOMEM;
    struct ars_pg_conn *c = NULL;
    enum ars_err err = ars_migrations_plan(ars_migrations, ars_migrations_count, order, errbuf, errlen);
    if (err)
        goto out;
    err = ars_pg_acquire(cfg, (long)cfg->pg_connect_timeout_ms, &c, errbuf, errlen);
    if (err)
        goto out;
    err = exec(c, create_table_sql, 0, NULL, NULL, errbuf, errlen);
    for (size_t i = 0; !err && i < ars_migrations_count; i++) {
        const struct ars_migration *m = &ars_migrations[order[i]];
        char version[24];
        snprintf(version, sizeof(version), "%ld", ars_migration_version(m->name));
        const char *params[] = { version, m->name };
        PGresult *res = NULL;
        /* One transaction per migration; the advisory lock makes a second
         * concurrent `db init` wait, then see the row and skip. */
        err = exec(c, "BEGIN", 0, NULL, NULL, errbuf, errlen);
        if (!err)
            err = exec(c, "SELECT pg_advisory_xact_lock(x'" MIGRATE_LOCK_KEY "'::bigint)", 0, NULL, NULL,
                       errbuf, errlen);
        if (!err)
            err = exec(c, "SELECT 1 FROM schema_migrations WHERE version = $1::integer", 1, params, &res,
                       errbuf, errlen);
        if (err) {
            PQclear(res);
            break;
        }
        int done = PQntuples(res) > 0;
        PQclear(res);
        if (done) {
            rep->already++;
            err = exec(c, "COMMIT", 0, NULL, NULL, errbuf, errlen);
            continue;
        }
        if (progress)
            progress(m->name, arg);
        /* Embedded, trusted SQL with several statements: the simple
         * query protocol, never used with user input. */
        err = ars_pg_exec_script(c, m->sql, MIGRATE_TIMEOUT_MS, errbuf, errlen);
        if (!err)
            err = exec(c, "INSERT INTO schema_migrations (version, name) VALUES ($1::integer, $2)", 2, params,
                       NULL, errbuf, errlen);
        if (!err)
            err = exec(c, "COMMIT", 0, NULL, NULL, errbuf, errlen);
        if (err) {
            char first[512];
            snprintf(first, sizeof(first), "%s", errbuf);
            char ignore[64];
            exec(c, "ROLLBACK", 0, NULL, NULL, ignore, sizeof(ignore));
            snprintf(errbuf, errlen, "migration %s failed: %s", m->name, first);
            break;
        }
        rep->applied_now++;
    }
    if (!err) {
        PGresult *res = NULL;
        err = exec(c, "SELECT name FROM schema_migrations ORDER BY version DESC LIMIT 1", 0, NULL, &res,
                   errbuf, errlen);
        if (!err && PQntuples(res) > 0)
            snprintf(rep->last, sizeof(rep->last), "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
    }
out:
    ars_pg_release(c, err == ARS_ERR_UNAVAILABLE || err == ARS_ERR_TIMEOUT);
    free(order);
    return err;
}

enum ars_err ars_migrate_status(const struct ars_config *cfg,
                                void (*cb)(const char *name, const char *applied_at, void *arg),
                                void *arg, char *errbuf, size_t errlen)
{
    struct ars_pg_conn *c;
    enum ars_err err = ars_pg_acquire(cfg, (long)cfg->pg_connect_timeout_ms, &c, errbuf, errlen);
    if (err)
        return err;
    PGresult *res = NULL;
    err = exec(c, "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL, &res, errbuf, errlen);
    int exists = !err && PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    res = NULL;
    if (!err && exists) {
        err = exec(c, "SELECT name, to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                      "FROM schema_migrations ORDER BY version", 0, NULL, &res, errbuf, errlen);
        for (int i = 0; !err && i < PQntuples(res); i++)
            cb(PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), arg);
        PQclear(res);
    }
    ars_pg_release(c, err == ARS_ERR_UNAVAILABLE || err == ARS_ERR_TIMEOUT);
    return err;
}
