#include "outbox.h"

#include <hiredis.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "crypto.h"
#include "entities.h"
#include "log.h"
#include "pg.h"
#include "redis.h"

#define LOCK_TTL_MS "30000"
#define MAX_ENTRY_BYTES (4 * 1024 * 1024)

static void name_of(const struct ars_config *cfg, const char *suffix, char *out, size_t n)
{
    snprintf(out, n, "%s%s", cfg->redis_key_prefix, suffix);
}

static enum ars_err llen(struct ars_redis *r, const struct ars_config *cfg, const char *suffix, long long *n)
{
    char key[256];
    name_of(cfg, suffix, key, sizeof(key));
    const char *argv[] = { "LLEN", key };
    redisReply *rep;
    enum ars_err err = ars_redis_cmd(r, cfg, &rep, 2, argv, NULL);
    if (err)
        return err;
    *n = rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
    err = rep->type == REDIS_REPLY_INTEGER ? ARS_OK : ARS_ERR_UNAVAILABLE;
    freeReplyObject(rep);
    return err;
}

enum ars_err ars_outbox_length(struct ars_redis *r, const struct ars_config *cfg, long long *n)
{
    return llen(r, cfg, "outbox", n);
}

enum ars_err ars_outbox_dead_length(struct ars_redis *r, const struct ars_config *cfg, long long *n)
{
    return llen(r, cfg, "outbox:dead", n);
}

enum ars_err ars_outbox_push(struct ars_redis *r, const struct ars_config *cfg, const char *entity,
                             const char *op, const char *id, long long version, json_object *rec, int dead)
{
    json_object *entry = json_object_new_object();
    if (!entry)
        return ARS_ERR_NOMEM;
    json_object_object_add(entry, "entity", json_object_new_string(entity));
    json_object_object_add(entry, "op", json_object_new_string(op));
    json_object_object_add(entry, "id", json_object_new_string(id));
    json_object_object_add(entry, "version", json_object_new_int64(version));
    json_object_object_add(entry, "queued_at", json_object_new_int64((int64_t)time(NULL)));
    if (rec)
        json_object_object_add(entry, "record", json_object_get(rec));
    char key[256];
    name_of(cfg, dead ? "outbox:dead" : "outbox", key, sizeof(key));
    size_t n;
    const char *text = json_object_to_json_string_length(entry, JSON_C_TO_STRING_PLAIN, &n);
    const char *argv[] = { "RPUSH", key, text };
    size_t lens[] = { 5, strlen(key), n };
    redisReply *rep;
    enum ars_err err = ars_redis_cmd(r, cfg, &rep, 3, argv, lens);
    if (!err) {
        if (rep->type != REDIS_REPLY_INTEGER)
            err = ARS_ERR_UNAVAILABLE;
        freeReplyObject(rep);
    }
    json_object_put(entry);
    return err;
}

/* Compare-and-delete / compare-and-extend: only the holder's token acts. */
static struct ars_redis_script unlock_script = ARS_REDIS_SCRIPT(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n");
/* Pops the head only if it is still the entry we applied. */
static struct ars_redis_script pop_script = ARS_REDIS_SCRIPT(
    "if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then\n"
    "  redis.call('LPOP', KEYS[1])\n"
    "  if ARGV[2] == '1' then redis.call('RPUSH', KEYS[2], ARGV[1]) end\n"
    "  return 1\n"
    "end\n"
    "return 0\n");

static enum ars_err simple(struct ars_redis *r, const struct ars_config *cfg, int argc, const char **argv,
                           const size_t *lens, redisReply **rep)
{
    enum ars_err err = ars_redis_cmd(r, cfg, rep, argc, argv, lens);
    if (!err && (*rep)->type == REDIS_REPLY_ERROR) {
        freeReplyObject(*rep);
        *rep = NULL;
        err = ARS_ERR_UNAVAILABLE;
    }
    return err;
}

/* Applies one entry; ARS_ERR_INVALID means the entry itself is bad. */
static enum ars_err apply(struct ars_pg_conn *c, const struct ars_config *cfg, json_object *entry,
                          char *errbuf, size_t errlen)
{
    json_object *ent_v, *op_v, *id_v, *rec = NULL;
    if (!json_object_object_get_ex(entry, "entity", &ent_v) || !json_object_object_get_ex(entry, "op", &op_v) ||
        !json_object_object_get_ex(entry, "id", &id_v)) {
        snprintf(errbuf, errlen, "outbox entry without entity/op/id");
        return ARS_ERR_INVALID;
    }
    const struct ars_entity *e = ars_entity_by_name(json_object_get_string(ent_v));
    if (!e) {
        snprintf(errbuf, errlen, "outbox entry for unknown entity %s", json_object_get_string(ent_v));
        return ARS_ERR_INVALID;
    }
    const char *op = json_object_get_string(op_v);
    if (strcmp(op, "delete") == 0)
        return ars_rec_pg_delete(c, cfg, e, json_object_get_string(id_v), errbuf, errlen);
    if (strcmp(op, "upsert") != 0 || !json_object_object_get_ex(entry, "record", &rec)) {
        snprintf(errbuf, errlen, "outbox entry with bad op or no record");
        return ARS_ERR_INVALID;
    }
    int applied;
    return ars_rec_pg_upsert(c, cfg, e, rec, &applied, errbuf, errlen);
}

enum ars_err ars_outbox_drain(struct ars_redis *r, const struct ars_config *cfg,
                              struct ars_outbox_result *res, char *errbuf, size_t errlen)
{
    memset(res, 0, sizeof(*res));
    errbuf[0] = '\0';
    char lock[256], queue[256], dead[256], token[33];
    name_of(cfg, "lock:outbox", lock, sizeof(lock));
    name_of(cfg, "outbox", queue, sizeof(queue));
    name_of(cfg, "outbox:dead", dead, sizeof(dead));
    if (ars_crypto_random_hex(token, 16))
        return ARS_ERR_NOMEM;

    redisReply *rep = NULL;
    const char *set_argv[] = { "SET", lock, token, "NX", "PX", LOCK_TTL_MS };
    enum ars_err err = simple(r, cfg, 6, set_argv, NULL, &rep);
    if (err)
        return err;
    int locked = rep->type == REDIS_REPLY_STATUS;
    freeReplyObject(rep);
    if (!locked) {
        res->busy = 1;
        return ars_outbox_length(r, cfg, &res->left);
    }

    struct ars_pg_conn *c = NULL;
    for (;;) {
        const char *idx_argv[] = { "LINDEX", queue, "0" };
        err = simple(r, cfg, 3, idx_argv, NULL, &rep);
        if (err)
            break;
        if (rep->type != REDIS_REPLY_STRING) {
            freeReplyObject(rep);
            break;   /* empty */
        }
        char *text = rep->len <= MAX_ENTRY_BYTES ? strndup(rep->str, rep->len) : NULL;
        size_t text_len = rep->len;
        freeReplyObject(rep);
        json_object *entry = text ? json_tokener_parse(text) : NULL;
        enum ars_err aerr;
        if (!entry) {
            snprintf(errbuf, errlen, "outbox entry is not JSON or too large");
            aerr = ARS_ERR_INVALID;
        } else {
            if (!c && (err = ars_pg_acquire(cfg, (long)cfg->pg_connect_timeout_ms, &c, errbuf, errlen))) {
                json_object_put(entry);
                free(text);
                break;
            }
            aerr = apply(c, cfg, entry, errbuf, errlen);
        }
        json_object_put(entry);
        if (aerr && aerr != ARS_ERR_INVALID) {
            free(text);
            err = aerr;
            break;
        }
        if (aerr == ARS_ERR_INVALID) {
            struct ars_logline l;
            ars_log_begin(&l, ARS_LOG_ERROR, NULL, "outbox_dead");
            ars_log_str(&l, "msg", "PostgreSQL rejected an outbox entry; moved to the dead list");
            ars_log_str(&l, "detail", errbuf);
            ars_log_end(&l);
        }
        const char *keys_args[] = { queue, dead, text ? text : "", aerr ? "1" : "0" };
        size_t lens[] = { strlen(queue), strlen(dead), text ? text_len : 0, 1 };
        err = ars_redis_eval(r, cfg, &pop_script, &rep, 2, 2, keys_args, lens);
        free(text);
        if (err)
            break;
        freeReplyObject(rep);
        if (aerr)
            res->dead++;
        else
            res->applied++;
        /* Keep the lock while a long queue drains. */
        if ((res->applied + res->dead) % 100 == 0) {
            const char *ext_argv[] = { "PEXPIRE", lock, LOCK_TTL_MS };
            if (simple(r, cfg, 3, ext_argv, NULL, &rep) == ARS_OK)
                freeReplyObject(rep);
        }
    }
    ars_pg_release(c, err == ARS_ERR_UNAVAILABLE || err == ARS_ERR_TIMEOUT);
    const char *unlock_args[] = { lock, token };
    if (ars_redis_eval(r, cfg, &unlock_script, &rep, 1, 1, unlock_args, NULL) == ARS_OK)
        freeReplyObject(rep);
    if (ars_outbox_length(r, cfg, &res->left) != ARS_OK)
        res->left = -1;
    return err;
}

/* ---- background thread ---- */

static pthread_t drain_thread;
static atomic_int drain_stop;
static int drain_started;

static void *drain_main(void *arg)
{
    (void)arg;
    struct ars_redis *r = ars_redis_new();
    if (!r)
        return NULL;
    int was_failing = 0;
    while (!atomic_load(&drain_stop)) {
        const struct ars_config *cfg = ars_config_current();
        long long queued = 0;
        if (ars_pg_enabled(cfg) && ars_outbox_length(r, cfg, &queued) == ARS_OK && queued > 0) {
            struct ars_outbox_result res;
            char err[512];
            enum ars_err e = ars_outbox_drain(r, cfg, &res, err, sizeof(err));
            if (res.applied || res.dead || (e && !was_failing)) {
                struct ars_logline l;
                ars_log_begin(&l, e ? ARS_LOG_WARN : ARS_LOG_INFO, NULL, "outbox_drain");
                ars_log_int(&l, "applied", (long long)res.applied);
                ars_log_int(&l, "dead", (long long)res.dead);
                ars_log_int(&l, "left", res.left);
                if (e)
                    ars_log_str(&l, "error", err);
                ars_log_end(&l);
            }
            was_failing = e != ARS_OK;
        }
        for (int i = 0; i < 10 && !atomic_load(&drain_stop); i++)
            usleep(100000);
    }
    ars_redis_free(r);
    return NULL;
}

int ars_outbox_thread_start(void)
{
    atomic_store(&drain_stop, 0);
    if (pthread_create(&drain_thread, NULL, drain_main, NULL) != 0)
        return -1;
    drain_started = 1;
    return 0;
}

void ars_outbox_thread_stop(void)
{
    if (!drain_started)
        return;
    atomic_store(&drain_stop, 1);
    pthread_join(drain_thread, NULL);
    drain_started = 0;
}
