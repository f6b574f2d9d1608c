/* ai-relayctl db: schema, status and Redis -> PostgreSQL copies. */
#include <hiredis.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "entities.h"
#include "migrate.h"
#include "outbox.h"
#include "pg.h"
#include "records.h"
#include "redis.h"

static int need_pg(const struct ctl *c)
{
    if (!ars_pg_enabled(c->cfg)) {
        ctl_fail(CTL_USAGE, "PostgreSQL is not configured: set PG_HOST (and PG_PORT, PG_DATABASE, PG_USER, "
                            "PG_PASSWORD) in the config");
        return 0;
    }
    return 1;
}

static void on_progress(const char *name, void *arg)
{
    (void)arg;
    printf("applying %s\n", name);
}

static int db_init(struct ctl *c)
{
    if (!need_pg(c))
        return CTL_USAGE;
    struct ars_migrate_report rep;
    char err[512];
    enum ars_err e = ars_migrate_apply(c->cfg, &rep, on_progress, NULL, err, sizeof(err));
    if (e)
        return ctl_fail(ctl_code_for(e), "db init: %s", err);
    if (rep.applied_now)
        printf("applied %zu migration(s); schema is at %s\n", rep.applied_now, rep.last);
    else
        printf("nothing to do: all %zu migration(s) already applied; schema is at %s\n", rep.already, rep.last);
    return CTL_OK;
}

/* One entity: every record in Redis, upserted into PostgreSQL. The
 * version guard makes a second run change nothing. */
static int copy_entity(struct ctl *c, struct ars_pg_conn *pg, const struct ars_entity *e, size_t *copied,
                       size_t *current, size_t *failed)
{
    json_object *ids;
    enum ars_err err = ars_rec_redis_ids(c->redis, c->cfg, e, 0, &ids);
    if (err)
        return ctl_fail(CTL_UNAVAILABLE, "Redis: %s", ars_redis_error(c->redis));
    for (size_t i = 0; i < json_object_array_length(ids); i++) {
        const char *id = json_object_get_string(json_object_array_get_idx(ids, i));
        json_object *rec;
        err = ars_rec_redis_get(c->redis, c->cfg, e, id, &rec);
        if (err == ARS_ERR_NOTFOUND)
            continue;
        if (err) {
            json_object_put(ids);
            return ctl_fail(CTL_UNAVAILABLE, "Redis: %s", ars_redis_error(c->redis));
        }
        int applied = 0;
        char msg[512];
        err = ars_rec_pg_upsert(pg, c->cfg, e, rec, &applied, msg, sizeof(msg));
        json_object_put(rec);
        if (err == ARS_ERR_INVALID) {
            (*failed)++;
            fprintf(stderr, "ai-relayctl: %s %s: %s\n", e->name, id, msg);
            continue;
        }
        if (err) {
            json_object_put(ids);
            return ctl_fail(CTL_UNAVAILABLE, "%s", msg);
        }
        if (applied)
            (*copied)++;
        else
            (*current)++;
    }
    json_object_put(ids);
    return CTL_OK;
}

static int db_migrate(struct ctl *c, const char *what)
{
    const struct ars_entity *list[3] = { NULL, NULL, NULL };
    if (!strcmp(what, "keys")) {
        list[0] = &ars_key_entity;       /* API keys and the system settings with them */
        list[1] = &ars_setting_entity;
    } else if (!strcmp(what, "accounts")) {
        list[0] = &ars_account_entity;
        list[1] = &ars_group_entity;
    } else if (!strcmp(what, "settings")) {
        list[0] = &ars_setting_entity;
    } else {
        return ctl_fail(CTL_USAGE, "db migrate: expected keys, accounts or settings");
    }
    if (!need_pg(c))
        return CTL_USAGE;
    char err[512];
    struct ars_pg_conn *pg;
    enum ars_err e = ars_pg_acquire(c->cfg, (long)c->cfg->pg_connect_timeout_ms, &pg, err, sizeof(err));
    if (e)
        return ctl_fail(CTL_UNAVAILABLE, "%s", err);
    int rc = CTL_OK;
    size_t total_copied = 0;
    for (int i = 0; list[i] && rc == CTL_OK; i++) {
        size_t copied = 0, current = 0, failed = 0;
        rc = copy_entity(c, pg, list[i], &copied, &current, &failed);
        if (rc == CTL_OK) {
            printf("%-14s copied %zu, already up to date %zu%s\n", list[i]->table, copied, current,
                   failed ? ", rejected (see above)" : "");
            if (failed)
                rc = CTL_FAILED;
        }
        total_copied += copied;
    }
    ars_pg_release(pg, rc == CTL_UNAVAILABLE);
    if (rc == CTL_OK && total_copied == 0)
        printf("nothing to do: PostgreSQL already matches Redis\n");
    return rc;
}

static void print_migration(const char *name, const char *at, void *arg)
{
    (*(int *)arg)++;
    printf("  %-24s applied %s\n", name, at);
}

static int db_status(struct ctl *c)
{
    int rc = CTL_OK;
    char err[512];
    long long queued = -1, dead = -1;
    int redis_up = ars_outbox_length(c->redis, c->cfg, &queued) == ARS_OK;
    if (redis_up && ars_outbox_dead_length(c->redis, c->cfg, &dead) != ARS_OK)
        dead = -1;
    printf("redis:      %s (%s:%lld db %lld)\n", redis_up ? "up" : "DOWN", c->cfg->redis_host, c->cfg->redis_port,
           c->cfg->redis_db);
    if (!redis_up)
        rc = CTL_UNAVAILABLE;

    struct ars_pg_conn *pg = NULL;
    int pg_up = 0;
    if (!ars_pg_enabled(c->cfg)) {
        printf("postgres:   disabled (PG_HOST is empty)\n");
    } else {
        pg_up = ars_pg_acquire(c->cfg, (long)c->cfg->pg_connect_timeout_ms, &pg, err, sizeof(err)) == ARS_OK;
        printf("postgres:   %s (%s:%lld/%s)%s%s\n", pg_up ? "up" : "DOWN", c->cfg->pg_host, c->cfg->pg_port,
               c->cfg->pg_database, pg_up ? "" : ": ", pg_up ? "" : err);
        if (!pg_up)
            rc = CTL_UNAVAILABLE;
    }
    if (pg_up) {
        printf("migrations:\n");
        int n = 0;
        if (ars_migrate_status(c->cfg, print_migration, &n, err, sizeof(err)))
            printf("  (cannot read: %s)\n", err);
        else if (n == 0)
            printf("  none applied: run ai-relayctl db init\n");
        size_t pending = ars_migrations_count > (size_t)n ? ars_migrations_count - (size_t)n : 0;
        printf("  %zu pending\n", pending);
    }
    const struct ars_entity *all[] = { &ars_key_entity, &ars_account_entity, &ars_group_entity,
                                       &ars_setting_entity, &ars_user_entity };
    printf("%-16s %10s %10s\n", "records", "redis", "postgres");
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        long long in_redis = -1, in_pg = -1;
        if (redis_up && ars_rec_redis_count(c->redis, c->cfg, all[i], &in_redis) != ARS_OK)
            in_redis = -1;
        if (pg_up && ars_rec_pg_count(pg, c->cfg, all[i], &in_pg, err, sizeof(err)))
            in_pg = -1;
        char a[24], b[24];
        snprintf(a, sizeof(a), in_redis < 0 ? "-" : "%lld", in_redis);
        snprintf(b, sizeof(b), in_pg < 0 ? "-" : "%lld", in_pg);
        printf("%-16s %10s %10s\n", all[i]->table, a, b);
    }
    if (redis_up)
        printf("outbox:     %lld queued, %lld dead\n", queued, dead);
    ars_pg_release(pg, 0);
    return rc;
}

/* Every record of one entity in Redis against its PostgreSQL row. */
static int verify_entity(struct ctl *c, struct ars_pg_conn *pg, const struct ars_entity *e, size_t *checked,
                         size_t *differ)
{
    json_object *ids;
    if (ars_rec_redis_ids(c->redis, c->cfg, e, 0, &ids))
        return ctl_fail(CTL_UNAVAILABLE, "Redis: %s", ars_redis_error(c->redis));
    char err[512];
    for (size_t i = 0; i < json_object_array_length(ids); i++) {
        const char *id = json_object_get_string(json_object_array_get_idx(ids, i));
        json_object *in_redis = NULL, *in_pg = NULL;
        const char *field = NULL;
        if (ars_rec_redis_get(c->redis, c->cfg, e, id, &in_redis) == ARS_ERR_NOTFOUND)
            continue;
        enum ars_err pe = ars_rec_pg_get(pg, c->cfg, e, e->id_field, id, &in_pg, err, sizeof(err));
        (*checked)++;
        if (pe == ARS_ERR_NOTFOUND) {
            (*differ)++;
            printf("%s %s: in Redis, missing in PostgreSQL\n", e->table, id);
        } else if (pe) {
            json_object_put(in_redis);
            json_object_put(ids);
            return ctl_fail(CTL_UNAVAILABLE, "%s", err);
        } else if (!ars_rec_same_master(e, in_redis, in_pg, &field)) {
            /* Runtime fields (a key's last_used_at) are left out: the
             * request path writes them to Redis only, so they differ on
             * every live system without anything being lost. */
            (*differ)++;
            json_object *vr = NULL, *vp = NULL;
            json_object_object_get_ex(in_redis, "version", &vr);
            json_object_object_get_ex(in_pg, "version", &vp);
            printf("%s %s: differs in %s (Redis version %lld, PostgreSQL version %lld)\n", e->table, id, field,
                   (long long)json_object_get_int64(vr), (long long)json_object_get_int64(vp));
        }
        json_object_put(in_redis);
        json_object_put(in_pg);
    }
    json_object_put(ids);
    long long pg_count = 0;
    if (ars_rec_pg_count(pg, c->cfg, e, &pg_count, err, sizeof(err)) == ARS_OK && (size_t)pg_count > *checked) {
        printf("%s: PostgreSQL has %lld row(s), Redis %zu record(s)\n", e->table, pg_count, *checked);
        (*differ)++;
    }
    return CTL_OK;
}

static int db_verify(struct ctl *c)
{
    if (!need_pg(c))
        return CTL_USAGE;
    char err[512];
    struct ars_pg_conn *pg;
    enum ars_err e = ars_pg_acquire(c->cfg, (long)c->cfg->pg_connect_timeout_ms, &pg, err, sizeof(err));
    if (e)
        return ctl_fail(CTL_UNAVAILABLE, "%s", err);
    const struct ars_entity *all[] = { &ars_key_entity, &ars_account_entity, &ars_group_entity,
                                       &ars_setting_entity, &ars_user_entity };
    int rc = CTL_OK;
    size_t total_differ = 0;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]) && rc == CTL_OK; i++) {
        size_t checked = 0, differ = 0;
        rc = verify_entity(c, pg, all[i], &checked, &differ);
        if (rc == CTL_OK)
            printf("%-16s %zu checked, %zu differ\n", all[i]->table, checked, differ);
        total_differ += differ;
    }
    ars_pg_release(pg, rc == CTL_UNAVAILABLE);
    if (rc == CTL_OK && total_differ) {
        printf("Redis and PostgreSQL differ (queued outbox writes, or run: ai-relayctl db migrate keys|accounts)\n");
        return CTL_FAILED;
    }
    if (rc == CTL_OK)
        printf("Redis and PostgreSQL hold the same records\n");
    return rc;
}

static int db_outbox(struct ctl *c, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "drain"))
        return ctl_fail(CTL_USAGE, "usage: ai-relayctl db outbox drain");
    if (!need_pg(c))
        return CTL_USAGE;
    struct ars_outbox_result res;
    char err[512];
    enum ars_err e = ars_outbox_drain(c->redis, c->cfg, &res, err, sizeof(err));
    if (res.busy) {
        printf("another process is draining the outbox now; %lld queued\n", res.left);
        return CTL_OK;
    }
    printf("outbox: applied %zu, dead %zu, %lld left\n", res.applied, res.dead, res.left);
    if (e)
        return ctl_fail(ctl_code_for(e), "%s", err[0] ? err : ars_redis_error(c->redis));
    return CTL_OK;
}

int ctl_db(struct ctl *c, int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        printf("usage: ai-relayctl db init | status | verify | migrate keys|accounts|settings | outbox drain\n"
               "  init      apply pending schema migrations (idempotent)\n"
               "  status    applied migrations, record counts in Redis and PostgreSQL, outbox length\n"
               "  verify    compare every record in Redis with its PostgreSQL row (master data: not last_used_at)\n"
               "  migrate   copy records from Redis into PostgreSQL (idempotent; keys includes settings)\n"
               "  outbox    replay PostgreSQL writes queued while it was unreachable\n");
        return argc < 2 ? CTL_USAGE : CTL_OK;
    }
    if (!strcmp(argv[1], "init"))
        return db_init(c);
    if (!strcmp(argv[1], "status"))
        return db_status(c);
    if (!strcmp(argv[1], "migrate"))
        return argc < 3 ? ctl_fail(CTL_USAGE, "db migrate: expected keys, accounts or settings")
                        : db_migrate(c, argv[2]);
    if (!strcmp(argv[1], "outbox"))
        return db_outbox(c, argc - 1, argv + 1);
    if (!strcmp(argv[1], "verify"))
        return db_verify(c);
    return ctl_fail(CTL_USAGE, "db: unknown subcommand '%s'", argv[1]);
}
