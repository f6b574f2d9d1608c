#include "keys.h"
#include "clock.h"

#include <hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config.h"
#include "entities.h"
#include "log.h"
#include "pg.h"
#include "pricing.h"
#include "records.h"
#include "redis.h"

static const struct ars_field key_fields[] = {
    { "id", ARS_FIELD_TEXT },
    { "name", ARS_FIELD_TEXT },
    { "description", ARS_FIELD_TEXT },
    { "key_hash", ARS_FIELD_TEXT },
    { "key_prefix", ARS_FIELD_TEXT },
    { "key_last4", ARS_FIELD_TEXT },
    { "enabled", ARS_FIELD_BOOL },
    { "expiration_mode", ARS_FIELD_TEXT },
    { "expires_at", ARS_FIELD_TS },
    { "activation_amount", ARS_FIELD_INT },
    { "activation_unit", ARS_FIELD_TEXT },
    { "activated_at", ARS_FIELD_TS },
    { "permissions", ARS_FIELD_JSON },
    { "restricted_models", ARS_FIELD_JSON },
    { "allowed_clients", ARS_FIELD_JSON },
    { "concurrency_limit", ARS_FIELD_INT },
    { "rate_limit_window_min", ARS_FIELD_INT },
    { "rate_limit_requests", ARS_FIELD_INT },
    { "rate_limit_tokens", ARS_FIELD_INT },
    { "rate_limit_cost_micros", ARS_FIELD_INT },
    { "daily_cost_limit_micros", ARS_FIELD_INT },
    { "weekly_cost_limit_micros", ARS_FIELD_INT },
    { "weekly_reset_day", ARS_FIELD_INT },
    { "weekly_reset_hour", ARS_FIELD_INT },
    { "total_cost_limit_micros", ARS_FIELD_INT },
    { "account_binding", ARS_FIELD_TEXT },
    { "tags", ARS_FIELD_JSON },
    { "owner", ARS_FIELD_TEXT },
    { "created_at", ARS_FIELD_TS },
    { "updated_at", ARS_FIELD_TS },
    { "last_used_at", ARS_FIELD_TS },
    { "deleted", ARS_FIELD_BOOL },
    { "deleted_at", ARS_FIELD_TS },
    { "deleted_by", ARS_FIELD_TEXT },
};

/* last_used_at: usage.c writes it to Redis only, without a version bump. */
static const char *const key_runtime_fields[] = { "last_used_at", NULL };

const struct ars_entity ars_key_entity = {
    "api_key", "key", "api_keys", "id", "created_at", key_fields, sizeof(key_fields) / sizeof(key_fields[0]),
    key_runtime_fields
};

/* ---- input validation: one line per editable field ---- */

#define MAX_TEXT_NAME 100
#define MAX_TEXT_DESCRIPTION 500
#define MAX_LIST_ITEMS 200
#define MAX_LIST_ITEM_LEN 200
#define MONEY_MAX 1000000000000000LL   /* a billion dollars in micro-dollars */

enum check_kind { CHECK_TEXT, CHECK_INT, CHECK_BOOL, CHECK_ENUM, CHECK_STRLIST, CHECK_TS };

struct field_check {
    const char *name;
    enum check_kind kind;
    long long min, max;          /* INT bounds; TEXT max length */
    const char *const *choices;  /* ENUM / STRLIST allowed values, NULL = any */
};

static const char *const modes[] = { "fixed", "activation", NULL };
static const char *const units[] = { "days", "hours", NULL };
static const char *const perms[] = { "claude", "openai", NULL };
static const char *const clients[] = { "claude_code", NULL };

static const struct field_check checks[] = {
    { "name", CHECK_TEXT, 1, MAX_TEXT_NAME, NULL },
    { "description", CHECK_TEXT, 0, MAX_TEXT_DESCRIPTION, NULL },
    { "enabled", CHECK_BOOL, 0, 0, NULL },
    { "expiration_mode", CHECK_ENUM, 0, 0, modes },
    { "expires_at", CHECK_TS, 0, 0, NULL },
    { "activation_amount", CHECK_INT, 0, 100000, NULL },
    { "activation_unit", CHECK_ENUM, 0, 0, units },
    { "permissions", CHECK_STRLIST, 0, 0, perms },
    { "restricted_models", CHECK_STRLIST, 0, 0, NULL },
    { "allowed_clients", CHECK_STRLIST, 0, 0, clients },
    { "concurrency_limit", CHECK_INT, 0, 100000, NULL },
    { "rate_limit_window_min", CHECK_INT, 0, 525600, NULL },
    { "rate_limit_requests", CHECK_INT, 0, 1000000000LL, NULL },
    { "rate_limit_tokens", CHECK_INT, 0, 1000000000000LL, NULL },
    { "rate_limit_cost_micros", CHECK_INT, 0, MONEY_MAX, NULL },
    { "daily_cost_limit_micros", CHECK_INT, 0, MONEY_MAX, NULL },
    { "weekly_cost_limit_micros", CHECK_INT, 0, MONEY_MAX, NULL },
    { "weekly_reset_day", CHECK_INT, 1, 7, NULL },
    { "weekly_reset_hour", CHECK_INT, 0, 23, NULL },
    { "total_cost_limit_micros", CHECK_INT, 0, MONEY_MAX, NULL },
    { "account_binding", CHECK_TEXT, 0, 200, NULL },
    { "tags", CHECK_STRLIST, 0, 0, NULL },
    { "owner", CHECK_TEXT, 0, 200, NULL },
};

static const struct field_check *find_check(const char *name)
{
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
        if (strcmp(checks[i].name, name) == 0)
            return &checks[i];
    return NULL;
}

static int in_choices(const char *const *choices, const char *s)
{
    if (!choices)
        return 1;
    for (; *choices; choices++)
        if (strcmp(*choices, s) == 0)
            return 1;
    return 0;
}

/* Checks every member of params against the table; errbuf names the
 * first bad field and says what is accepted. */
static enum ars_err validate(json_object *params, char *errbuf, size_t errlen)
{
    if (!json_object_is_type(params, json_type_object)) {
        snprintf(errbuf, errlen, "expected a JSON object");
        return ARS_ERR_INVALID;
    }
    json_object_object_foreach(params, name, v) {
        const struct field_check *c = find_check(name);
        if (!c) {
            snprintf(errbuf, errlen, "%s: unknown or read-only field", name);
            return ARS_ERR_INVALID;
        }
        switch (c->kind) {
        case CHECK_TEXT: {
            if (!json_object_is_type(v, json_type_string)) {
                snprintf(errbuf, errlen, "%s: expected a string", name);
                return ARS_ERR_INVALID;
            }
            long long n = json_object_get_string_len(v);
            if (n < c->min || n > c->max) {
                snprintf(errbuf, errlen, "%s: length must be %lld to %lld characters", name, c->min, c->max);
                return ARS_ERR_INVALID;
            }
            break;
        }
        case CHECK_INT: {
            if (!json_object_is_type(v, json_type_int)) {
                snprintf(errbuf, errlen, "%s: expected an integer", name);
                return ARS_ERR_INVALID;
            }
            long long x = json_object_get_int64(v);
            if (x < c->min || x > c->max) {
                snprintf(errbuf, errlen, "%s: must be from %lld to %lld", name, c->min, c->max);
                return ARS_ERR_INVALID;
            }
            break;
        }
        case CHECK_BOOL:
            if (!json_object_is_type(v, json_type_boolean)) {
                snprintf(errbuf, errlen, "%s: expected true or false", name);
                return ARS_ERR_INVALID;
            }
            break;
        case CHECK_ENUM:
            if (!json_object_is_type(v, json_type_string) || !in_choices(c->choices, json_object_get_string(v))) {
                char list[128] = "";
                size_t used = 0;
                for (int i = 0; c->choices[i] && used < sizeof(list); i++)
                    used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", c->choices[i]);
                snprintf(errbuf, errlen, "%s: expected one of %s", name, list);
                return ARS_ERR_INVALID;
            }
            break;
        case CHECK_TS:
            if (!json_object_is_type(v, json_type_null) &&
                (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)) {
                snprintf(errbuf, errlen, "%s: expected epoch milliseconds or null", name);
                return ARS_ERR_INVALID;
            }
            break;
        case CHECK_STRLIST: {
            if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) > MAX_LIST_ITEMS) {
                snprintf(errbuf, errlen, "%s: expected an array of at most %d strings", name, MAX_LIST_ITEMS);
                return ARS_ERR_INVALID;
            }
            for (size_t i = 0; i < json_object_array_length(v); i++) {
                json_object *item = json_object_array_get_idx(v, i);
                if (!json_object_is_type(item, json_type_string) || json_object_get_string_len(item) == 0 ||
                    json_object_get_string_len(item) > MAX_LIST_ITEM_LEN) {
                    snprintf(errbuf, errlen, "%s[%zu]: expected a non-empty string of at most %d characters",
                             name, i, MAX_LIST_ITEM_LEN);
                    return ARS_ERR_INVALID;
                }
                if (!in_choices(c->choices, json_object_get_string(item))) {
                    snprintf(errbuf, errlen, "%s[%zu]: \"%.60s\" is not one of the accepted values", name, i,
                             json_object_get_string(item));
                    return ARS_ERR_INVALID;
                }
            }
            break;
        }
        }
    }
    return ARS_OK;
}


static void set_default(json_object *rec, const char *name, json_object *v)
{
    if (!json_object_object_get_ex(rec, name, NULL))
        json_object_object_add(rec, name, v);
    else
        json_object_put(v);
}

/* ---- runtime view and cache ---- */

static json_object *member(json_object *rec, const char *name)
{
    json_object *v = NULL;
    json_object_object_get_ex(rec, name, &v);
    return v;
}

static long long int_of(json_object *rec, const char *name)
{
    json_object *v = member(rec, name);
    return v ? (long long)json_object_get_int64(v) : 0;
}

struct ars_key *ars_key_from_record(json_object *rec)
{
    struct ars_key *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    atomic_init(&k->refs, 1);
    json_object *v = member(rec, "id");
    snprintf(k->id, sizeof(k->id), "%s", v ? json_object_get_string(v) : "");
    v = member(rec, "name");
    k->name = strdup(v ? json_object_get_string(v) : "");
    v = member(rec, "enabled");
    k->enabled = v && json_object_get_boolean(v);
    v = member(rec, "deleted");
    k->deleted = v && json_object_get_boolean(v);
    v = member(rec, "expiration_mode");
    k->activation_mode = v && strcmp(json_object_get_string(v), "activation") == 0;
    k->expires_at_ms = int_of(rec, "expires_at");
    k->activation_amount = int_of(rec, "activation_amount");
    v = member(rec, "activation_unit");
    k->activation_hours = v && strcmp(json_object_get_string(v), "hours") == 0;
    k->activated_at_ms = int_of(rec, "activated_at");
    v = member(rec, "permissions");
    for (size_t i = 0; v && json_object_is_type(v, json_type_array) && i < json_object_array_length(v); i++) {
        const char *p = json_object_get_string(json_object_array_get_idx(v, i));
        if (strcmp(p, "claude") == 0)
            k->permissions |= ARS_PERM_CLAUDE;
        else if (strcmp(p, "openai") == 0)
            k->permissions |= ARS_PERM_OPENAI;
    }
    k->restricted_models = ars_string_list_from_json(member(rec, "restricted_models"));
    k->allowed_clients = ars_string_list_from_json(member(rec, "allowed_clients"));
    k->concurrency_limit = int_of(rec, "concurrency_limit");
    k->window_minutes = int_of(rec, "rate_limit_window_min");
    k->window_requests = int_of(rec, "rate_limit_requests");
    k->window_tokens = int_of(rec, "rate_limit_tokens");
    k->window_cost_micros = int_of(rec, "rate_limit_cost_micros");
    k->daily_cost_micros = int_of(rec, "daily_cost_limit_micros");
    k->weekly_cost_micros = int_of(rec, "weekly_cost_limit_micros");
    k->weekly_reset_day = (int)int_of(rec, "weekly_reset_day");
    k->weekly_reset_hour = (int)int_of(rec, "weekly_reset_hour");
    k->total_cost_micros = int_of(rec, "total_cost_limit_micros");
    v = member(rec, "account_binding");
    k->account_binding = strdup(v ? json_object_get_string(v) : "");
    k->version = int_of(rec, "version");
    if (!k->name || !k->restricted_models || !k->allowed_clients || !k->account_binding) {
        ars_key_release(k);
        return NULL;
    }
    return k;
}

/* The pricing table's matching (pricing.h), so a blocked model is blocked
 * under its dated ids and aliases too, in any case. */
int ars_key_model_blocked(const struct ars_key *k, const char *model)
{
    const struct ars_pricing *p = ars_pricing_current();
    for (char **m = k->restricted_models; m && *m; m++)
        if (ars_pricing_model_blocks(p, *m, model))
            return 1;
    return 0;
}

void ars_key_release(struct ars_key *k)
{
    if (!k || atomic_fetch_sub(&k->refs, 1) != 1)
        return;
    free(k->name);
    ars_string_list_free(k->restricted_models);
    ars_string_list_free(k->allowed_clients);
    free(k->account_binding);
    free(k);
}

/* Process-wide cache: key hash -> key (or "unknown"), open addressing
 * under one mutex. Lookups are a hash and a short probe; the lock is held
 * for that only. Entries expire after KEY_CACHE_SECONDS; when the table is
 * full, expired entries are swept and, failing that, it is cleared. */
struct cache_entry {
    char hash[ARS_CRYPTO_HASH_HEX_LEN + 1];
    struct ars_key *key;   /* NULL: known not to exist */
    long long expires_ms;
    int used;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cache_entry *cache;
static size_t cache_slots;
static size_t cache_count;

static size_t slot_of(const char *hash)
{
    /* The hash is already uniform: its first 16 hex digits make the index. */
    unsigned long long x = 0;
    for (int i = 0; i < 16 && hash[i]; i++)
        x = x * 16 + (unsigned long long)(hash[i] <= '9' ? hash[i] - '0' : (hash[i] | 0x20) - 'a' + 10);
    return (size_t)(x % cache_slots);
}

static void cache_clear_locked(void)
{
    for (size_t i = 0; i < cache_slots; i++) {
        if (cache[i].used)
            ars_key_release(cache[i].key);
        cache[i].used = 0;
        cache[i].key = NULL;
    }
    cache_count = 0;
}

/* Rebuilds the table without expired entries (open addressing cannot
 * just blank a slot in the middle of a probe chain). */
static void cache_sweep_locked(long long now)
{
    struct cache_entry *old = cache;
    struct cache_entry *fresh = calloc(cache_slots, sizeof(*fresh));
    if (!fresh) {
        cache_clear_locked();
        return;
    }
    cache = fresh;
    cache_count = 0;
    for (size_t i = 0; i < cache_slots; i++) {
        if (!old[i].used)
            continue;
        if (old[i].expires_ms <= now) {
            ars_key_release(old[i].key);
            continue;
        }
        size_t s = slot_of(old[i].hash);
        while (cache[s].used)
            s = (s + 1) % cache_slots;
        cache[s] = old[i];
        cache_count++;
    }
    free(old);
}

static int cache_get(const struct ars_config *cfg, const char *hash, struct ars_key **out, int *known_absent)
{
    *out = NULL;
    *known_absent = 0;
    if (!cfg->key_cache_seconds)
        return 0;
    int hit = 0;
    pthread_mutex_lock(&cache_lock);
    if (cache) {
        long long now = ars_wall_ms();
        for (size_t s = slot_of(hash), n = 0; n < cache_slots && cache[s].used; s = (s + 1) % cache_slots, n++) {
            if (strcmp(cache[s].hash, hash) != 0)
                continue;
            if (cache[s].expires_ms > now) {
                hit = 1;
                if (cache[s].key) {
                    atomic_fetch_add(&cache[s].key->refs, 1);
                    *out = cache[s].key;
                } else {
                    *known_absent = 1;
                }
            }
            break;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return hit;
}

static void cache_put(const struct ars_config *cfg, const char *hash, struct ars_key *key)
{
    if (!cfg->key_cache_seconds)
        return;
    long long now = ars_wall_ms();
    pthread_mutex_lock(&cache_lock);
    size_t want = (size_t)cfg->key_cache_max_entries * 2;   /* load factor 1/2 */
    if (!cache || cache_slots != want) {
        if (cache)
            cache_clear_locked();
        free(cache);
        cache = calloc(want, sizeof(*cache));
        cache_slots = cache ? want : 0;
        cache_count = 0;
    }
    if (cache && cache_count * 2 >= cache_slots)
        cache_sweep_locked(now);
    if (cache && cache_count * 2 >= cache_slots)
        cache_clear_locked();
    if (cache) {
        size_t s = slot_of(hash);
        while (cache[s].used && strcmp(cache[s].hash, hash) != 0)
            s = (s + 1) % cache_slots;
        if (cache[s].used)
            ars_key_release(cache[s].key);
        else
            cache_count++;
        snprintf(cache[s].hash, sizeof(cache[s].hash), "%s", hash);
        if (key)
            atomic_fetch_add(&key->refs, 1);
        cache[s].key = key;
        cache[s].expires_ms = now + cfg->key_cache_seconds * 1000;
        cache[s].used = 1;
    }
    pthread_mutex_unlock(&cache_lock);
}

void ars_keys_cache_forget(const char *key_hash)
{
    pthread_mutex_lock(&cache_lock);
    if (cache) {
        for (size_t s = slot_of(key_hash), n = 0; n < cache_slots && cache[s].used;
             s = (s + 1) % cache_slots, n++) {
            if (strcmp(cache[s].hash, key_hash) == 0) {
                cache[s].expires_ms = 0;   /* stays as a probe-chain link until the next sweep */
                break;
            }
        }
    }
    pthread_mutex_unlock(&cache_lock);
}

/* ---- Redis helpers specific to keys ---- */

static void by_hash_key(const struct ars_config *cfg, char *out, size_t n)
{
    snprintf(out, n, "%skeys:by_hash", cfg->redis_key_prefix);
}

static enum ars_err redis_id_for_hash(struct ars_redis *r, const struct ars_config *cfg, const char *hash,
                                      char id[ARS_UUID_LEN + 1])
{
    char map[256];
    by_hash_key(cfg, map, sizeof(map));
    const char *argv[] = { "HGET", map, hash };
    redisReply *rep;
    enum ars_err err = ars_redis_cmd(r, cfg, &rep, 3, argv, NULL);
    if (err)
        return err;
    if (rep->type == REDIS_REPLY_STRING && rep->len <= ARS_UUID_LEN)
        snprintf(id, ARS_UUID_LEN + 1, "%s", rep->str);
    else
        err = rep->type == REDIS_REPLY_NIL ? ARS_ERR_NOTFOUND : ARS_ERR_UNAVAILABLE;
    freeReplyObject(rep);
    return err;
}

static enum ars_err redis_map_hash(struct ars_redis *r, const struct ars_config *cfg, const char *hash,
                                   const char *id, int remove)
{
    char map[256];
    by_hash_key(cfg, map, sizeof(map));
    const char *argv[] = { remove ? "HDEL" : "HSET", map, hash, id };
    redisReply *rep;
    enum ars_err err = ars_redis_cmd(r, cfg, &rep, remove ? 3 : 4, argv, NULL);
    if (!err) {
        if (rep->type == REDIS_REPLY_ERROR)
            err = ARS_ERR_UNAVAILABLE;
        freeReplyObject(rep);
    }
    return err;
}

/* The PostgreSQL side of a lookup: the record by hash, written back to
 * Redis so the next process finds it there. */
static enum ars_err pg_lookup(struct ars_redis *r, const struct ars_config *cfg, const char *hash,
                              json_object **rec)
{
    char err_text[256];
    struct ars_pg_conn *c;
    enum ars_err err = ars_pg_acquire(cfg, (long)cfg->pg_connect_timeout_ms, &c, err_text, sizeof(err_text));
    if (err)
        return ARS_ERR_UNAVAILABLE;
    err = ars_rec_pg_get(c, cfg, &ars_key_entity, "key_hash", hash, rec, err_text, sizeof(err_text));
    ars_pg_release(c, err == ARS_ERR_UNAVAILABLE || err == ARS_ERR_TIMEOUT);
    if (err == ARS_OK) {
        /* Back-fill; failures only cost the next lookup another PG trip. */
        json_object *idv = member(*rec, "id");
        if (ars_rec_redis_restore(r, cfg, &ars_key_entity, *rec) == ARS_OK && idv)
            redis_map_hash(r, cfg, hash, json_object_get_string(idv), 0);
    }
    return err == ARS_ERR_NOTFOUND ? ARS_ERR_NOTFOUND : err ? ARS_ERR_UNAVAILABLE : ARS_OK;
}

/* ---- "Redis holds every key": negative lookups without PostgreSQL ----
 *
 * A well-formed key that Redis does not know used to cost a PostgreSQL
 * query (200 random keys: 200 index scans; with PostgreSQL slow, each held
 * a worker for seconds). Every key write goes to Redis first (create,
 * update, delete, purge; the outbox only replays towards PostgreSQL, and
 * a key created by ai-relayctl while PostgreSQL is down is in Redis and
 * the outbox), so once Redis has been loaded with every PostgreSQL row it
 * stays a superset: no write can make it incomplete, only losing Redis
 * data can. That is recorded in Redis itself: P keys:complete is set
 * after a full back-fill from PostgreSQL, and vanishes with the data it
 * vouches for (a restart without persistence, FLUSHALL), for every host
 * at once. While it is set, "not in Redis" is the answer; while it is
 * missing, lookups go to PostgreSQL as before and one of them (per
 * process, every ARS_KEYS_BACKFILL_RETRY_MS, one process at a time via a
 * Redis lock) loads every key and sets it. Limit: a Redis restored from
 * an older snapshot that still has the flag can miss the keys created
 * after the snapshot (with AOF everysec: the last second); they answer
 * 401 until written again or the flag is deleted. Unknown keys are also
 * cached per hash for KEY_CACHE_SECONDS (the negative cache above). */

/* Rows read from PostgreSQL per query during a back-fill. */
#define ARS_KEYS_BACKFILL_PAGE        500
/* A process tries a back-fill at most this often while the flag is missing. */
#define ARS_KEYS_BACKFILL_RETRY_MS    30000
/* The cross-process back-fill lock expires after this (a crashed loader). */
#define ARS_KEYS_BACKFILL_LOCK_MS     120000

static _Atomic long long backfill_next_ms;
static atomic_int backfill_running;

static void complete_key(const struct ars_config *cfg, char *out, size_t n)
{
    snprintf(out, n, "%skeys:complete", cfg->redis_key_prefix);
}

/* 1: Redis holds every key; 0: not known; -1: Redis did not answer. */
static int redis_keys_complete(struct ars_redis *r, const struct ars_config *cfg)
{
    char flag[256];
    complete_key(cfg, flag, sizeof(flag));
    const char *argv[] = { "EXISTS", flag };
    redisReply *rep;
    if (ars_redis_cmd(r, cfg, &rep, 2, argv, NULL))
        return -1;
    int v = rep->type == REDIS_REPLY_INTEGER ? rep->integer == 1 : -1;
    freeReplyObject(rep);
    return v;
}

static int redis_simple(struct ars_redis *r, const struct ars_config *cfg, int argc, const char **argv)
{
    redisReply *rep;
    if (ars_redis_cmd(r, cfg, &rep, argc, argv, NULL))
        return -1;
    int ok = rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_INTEGER;
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

/* Loads every key row of PostgreSQL into Redis (a newer Redis version
 * wins) with its hash mapping, then sets the flag, unless the row count
 * moved meanwhile (a purge shifts the pages: try again later). */
static enum ars_err backfill_all(struct ars_redis *r, const struct ars_config *cfg, long long *loaded)
{
    *loaded = 0;
    char err_text[256];
    struct ars_pg_conn *c;
    enum ars_err err = ars_pg_acquire(cfg, (long)cfg->pg_connect_timeout_ms, &c, err_text, sizeof(err_text));
    if (err)
        return ARS_ERR_UNAVAILABLE;
    long long total_first = -1, total = -1;
    for (long long offset = 0; !err; offset += ARS_KEYS_BACKFILL_PAGE) {
        json_object *page = NULL, *items = NULL, *tv = NULL;
        err = ars_rec_pg_list(c, cfg, &ars_key_entity, NULL, 0, NULL, ARS_KEYS_BACKFILL_PAGE, offset, &page,
                              err_text, sizeof(err_text));
        if (err)
            break;
        json_object_object_get_ex(page, "items", &items);
        json_object_object_get_ex(page, "total", &tv);
        total = tv ? json_object_get_int64(tv) : -1;
        if (total_first < 0)
            total_first = total;
        size_t n = items ? json_object_array_length(items) : 0;
        for (size_t i = 0; i < n && !err; i++) {
            json_object *rec = json_object_array_get_idx(items, i);
            json_object *idv = member(rec, "id"), *hv = member(rec, "key_hash");
            err = ars_rec_redis_restore(r, cfg, &ars_key_entity, rec);
            if (!err && idv && hv)
                err = redis_map_hash(r, cfg, json_object_get_string(hv), json_object_get_string(idv), 0);
            if (!err)
                (*loaded)++;
        }
        json_object_put(page);
        if (n < ARS_KEYS_BACKFILL_PAGE)
            break;
    }
    ars_pg_release(c, err == ARS_ERR_UNAVAILABLE || err == ARS_ERR_TIMEOUT);
    if (err)
        return err;
    if (total < 0 || total != total_first || *loaded != total)
        return ARS_ERR_UNAVAILABLE;
    char flag[256];
    complete_key(cfg, flag, sizeof(flag));
    const char *argv[] = { "SET", flag, "1" };
    return redis_simple(r, cfg, 3, argv) ? ARS_ERR_UNAVAILABLE : ARS_OK;
}

/* After a lookup had to ask PostgreSQL: one back-fill per process at a
 * time, at most every ARS_KEYS_BACKFILL_RETRY_MS, and one process across
 * hosts (a Redis lock). The request that runs it pays one PostgreSQL
 * query per ARS_KEYS_BACKFILL_PAGE keys, once per Redis loss. */
static void maybe_backfill(struct ars_redis *r, const struct ars_config *cfg)
{
    long long now = ars_mono_ms(), next = atomic_load(&backfill_next_ms);
    if (now < next || !atomic_compare_exchange_strong(&backfill_next_ms, &next, now + ARS_KEYS_BACKFILL_RETRY_MS))
        return;
    int idle = 0;
    if (!atomic_compare_exchange_strong(&backfill_running, &idle, 1))
        return;
    char lock[256], ttl[32];
    snprintf(lock, sizeof(lock), "%skeys:backfill_lock", cfg->redis_key_prefix);
    snprintf(ttl, sizeof(ttl), "%d", ARS_KEYS_BACKFILL_LOCK_MS);
    const char *take[] = { "SET", lock, "1", "NX", "PX", ttl };
    if (redis_simple(r, cfg, 6, take) == 0) {
        long long loaded = 0;
        enum ars_err err = backfill_all(r, cfg, &loaded);
        struct ars_logline l;
        ars_log_begin(&l, err ? ARS_LOG_WARN : ARS_LOG_INFO, NULL, "keys_backfill");
        ars_log_int(&l, "loaded", loaded);
        ars_log_str(&l, "complete", err ? "no" : "yes");
        if (err)
            ars_log_str(&l, "error", ars_err_str(err));
        ars_log_end(&l);
        const char *drop[] = { "DEL", lock };
        (void)redis_simple(r, cfg, 2, drop);
        /* Done: the next loss of the flag (a Redis data loss) is acted on
         * at once; a failure waits ARS_KEYS_BACKFILL_RETRY_MS. */
        if (!err)
            atomic_store(&backfill_next_ms, 0);
    }
    atomic_store(&backfill_running, 0);
}

enum ars_err ars_keys_lookup(struct ars_redis *r, const struct ars_config *cfg, const char *key_hash,
                             struct ars_key **out)
{
    *out = NULL;
    int absent;
    if (cache_get(cfg, key_hash, out, &absent))
        return absent ? ARS_ERR_NOTFOUND : ARS_OK;

    char id[ARS_UUID_LEN + 1];
    json_object *rec = NULL;
    enum ars_err err = redis_id_for_hash(r, cfg, key_hash, id);
    if (!err)
        err = ars_rec_redis_get(r, cfg, &ars_key_entity, id, &rec);
    int complete = 0;
    if (err == ARS_ERR_NOTFOUND && ars_pg_enabled(cfg))
        complete = redis_keys_complete(r, cfg) == 1;   /* then "not in Redis" is the answer */
    if ((err == ARS_ERR_NOTFOUND && !complete) || (err == ARS_ERR_UNAVAILABLE && ars_pg_enabled(cfg))) {
        enum ars_err redis_err = err;
        err = ars_pg_enabled(cfg) ? pg_lookup(r, cfg, key_hash, &rec) : ARS_ERR_NOTFOUND;
        if (redis_err == ARS_ERR_NOTFOUND && ars_pg_enabled(cfg))
            maybe_backfill(r, cfg);
        /* Redis down and PG says unknown: still unknown. Both down: unavailable. */
        if (err == ARS_ERR_UNAVAILABLE && redis_err == ARS_ERR_NOTFOUND)
            err = ARS_ERR_NOTFOUND;
    }
    if (err == ARS_ERR_NOTFOUND) {
        cache_put(cfg, key_hash, NULL);
        return err;
    }
    if (err)
        return err;
    struct ars_key *k = ars_key_from_record(rec);
    json_object_put(rec);
    if (!k)
        return ARS_ERR_NOMEM;
    cache_put(cfg, key_hash, k);
    *out = k;
    return ARS_OK;
}

static struct ars_redis_script activate_script = ARS_REDIS_SCRIPT(
    "if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('ARS_NOTFOUND') end\n"
    "local at = redis.call('HGET', KEYS[1], 'activated_at')\n"
    "if at and at ~= '' then return redis.call('HGETALL', KEYS[1]) end\n"
    "redis.call('HSET', KEYS[1], 'activated_at', ARGV[1], 'expires_at', ARGV[2], 'updated_at', ARGV[1])\n"
    "redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
    "return redis.call('HGETALL', KEYS[1])\n");

enum ars_err ars_keys_activate(struct ars_redis *r, const struct ars_config *cfg, const struct ars_key *k,
                               const char *key_hash, long long now, long long *expires_at_ms)
{
    long long span = k->activation_amount * (k->activation_hours ? 3600000LL : 86400000LL);
    char key[512], at[32], exp[32];
    snprintf(key, sizeof(key), "%skey:{%s}", cfg->redis_key_prefix, k->id);
    snprintf(at, sizeof(at), "%lld", now);
    snprintf(exp, sizeof(exp), "%lld", now + span);
    const char *args[] = { key, at, exp };
    redisReply *rep;
    enum ars_err err = ars_redis_eval(r, cfg, &activate_script, &rep, 1, 2, args, NULL);
    if (err)
        return err;
    if (rep->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return ARS_ERR_UNAVAILABLE;
    }
    json_object *rec = ars_rec_from_reply(&ars_key_entity, rep);
    freeReplyObject(rep);
    if (!rec)
        return ARS_ERR_NOMEM;
    *expires_at_ms = int_of(rec, "expires_at");
    ars_keys_cache_forget(key_hash);
    ars_rec_mirror_upsert(r, cfg, &ars_key_entity, rec);
    json_object_put(rec);
    return ARS_OK;
}

/* ---- administration ---- */

enum ars_err ars_keys_create(struct ars_redis *r, const struct ars_config *cfg, json_object *params,
                             json_object **rec, char plaintext[ARS_API_KEY_LEN + 1],
                             char *errbuf, size_t errlen)
{
    *rec = NULL;
    enum ars_err err = validate(params, errbuf, errlen);
    if (err)
        return err;
    if (!json_object_object_get_ex(params, "name", NULL)) {
        snprintf(errbuf, errlen, "name: required");
        return ARS_ERR_INVALID;
    }
    char id[ARS_UUID_LEN + 1], hash[ARS_CRYPTO_HASH_HEX_LEN + 1];
    if (ars_crypto_new_api_key(plaintext) || ars_crypto_uuid_v4(id) ||
        ars_crypto_key_hash(&cfg->keys, plaintext, hash)) {
        snprintf(errbuf, errlen, "could not generate a key (random source)");
        return ARS_ERR_UNAVAILABLE;
    }
    json_object *fields = NULL;
    json_object_deep_copy(params, &fields, NULL);
    if (!fields)
        return ARS_ERR_NOMEM;
    long long now = ars_wall_ms();
    char prefix[16];
    snprintf(prefix, sizeof(prefix), "%.7s", plaintext);
    json_object_object_add(fields, "id", json_object_new_string(id));
    json_object_object_add(fields, "key_hash", json_object_new_string(hash));
    json_object_object_add(fields, "key_prefix", json_object_new_string(prefix));
    json_object_object_add(fields, "key_last4", json_object_new_string(plaintext + ARS_API_KEY_LEN - 4));
    json_object_object_add(fields, "created_at", json_object_new_int64(now));
    json_object_object_add(fields, "updated_at", json_object_new_int64(now));
    json_object_object_add(fields, "deleted", json_object_new_boolean(0));
    json_object_object_add(fields, "deleted_by", json_object_new_string(""));
    set_default(fields, "description", json_object_new_string(""));
    set_default(fields, "enabled", json_object_new_boolean(1));
    set_default(fields, "expiration_mode", json_object_new_string("fixed"));
    set_default(fields, "activation_unit", json_object_new_string("days"));
    set_default(fields, "weekly_reset_day", json_object_new_int64(1));
    set_default(fields, "permissions", json_object_new_array());
    set_default(fields, "restricted_models", json_object_new_array());
    set_default(fields, "allowed_clients", json_object_new_array());
    set_default(fields, "tags", json_object_new_array());
    set_default(fields, "account_binding", json_object_new_string(""));
    set_default(fields, "owner", json_object_new_string(""));
    json_object *mode = member(fields, "expiration_mode");
    if (strcmp(json_object_get_string(mode), "activation") == 0 && int_of(fields, "activation_amount") <= 0) {
        json_object_put(fields);
        snprintf(errbuf, errlen, "activation_amount: must be positive when expiration_mode is activation");
        return ARS_ERR_INVALID;
    }

    err = ars_rec_redis_write(r, cfg, &ars_key_entity, id, fields, 1, rec);
    json_object_put(fields);
    if (!err)
        err = redis_map_hash(r, cfg, hash, id, 0);
    if (err) {
        snprintf(errbuf, errlen, "Redis: %s", ars_redis_error(r));
        if (*rec)
            json_object_put(*rec);
        *rec = NULL;
        return err;
    }
    ars_rec_mirror_upsert(r, cfg, &ars_key_entity, *rec);
    return ARS_OK;
}

static void forget_cached(json_object *rec)
{
    json_object *h = member(rec, "key_hash");
    if (h)
        ars_keys_cache_forget(json_object_get_string(h));
}

/* Writes changes (already validated) and mirrors them. */
static enum ars_err write_changes(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                                  json_object *changes, json_object **rec, char *errbuf, size_t errlen)
{
    json_object_object_add(changes, "updated_at", json_object_new_int64(ars_wall_ms()));
    json_object *out = NULL;
    enum ars_err err = ars_rec_redis_write(r, cfg, &ars_key_entity, id, changes, 0, &out);
    if (err == ARS_ERR_NOTFOUND) {
        snprintf(errbuf, errlen, "API key %s not found", id);
        return err;
    }
    if (err) {
        snprintf(errbuf, errlen, "Redis: %s", ars_redis_error(r));
        return err;
    }
    forget_cached(out);
    ars_rec_mirror_upsert(r, cfg, &ars_key_entity, out);
    if (rec)
        *rec = out;
    else
        json_object_put(out);
    return ARS_OK;
}

enum ars_err ars_keys_update(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                             json_object *changes, json_object **rec, char *errbuf, size_t errlen)
{
    *rec = NULL;
    enum ars_err err = validate(changes, errbuf, errlen);
    if (err)
        return err;
    json_object *copy = NULL;
    json_object_deep_copy(changes, &copy, NULL);
    if (!copy)
        return ARS_ERR_NOMEM;
    err = write_changes(r, cfg, id, copy, rec, errbuf, errlen);
    json_object_put(copy);
    return err;
}

static enum ars_err set_flags(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                              int deleted, const char *by, char *errbuf, size_t errlen)
{
    json_object *current = NULL;
    enum ars_err err = ars_rec_redis_get(r, cfg, &ars_key_entity, id, &current);
    if (err == ARS_ERR_NOTFOUND) {
        snprintf(errbuf, errlen, "API key %s not found", id);
        return err;
    }
    if (err) {
        snprintf(errbuf, errlen, "Redis: %s", ars_redis_error(r));
        return err;
    }
    int was_deleted = json_object_get_boolean(member(current, "deleted"));
    json_object_put(current);
    if (was_deleted == deleted) {
        snprintf(errbuf, errlen, "API key %s is %s", id, deleted ? "already deleted" : "not deleted");
        return ARS_ERR_INVALID;
    }
    json_object *changes = json_object_new_object();
    json_object_object_add(changes, "deleted", json_object_new_boolean(deleted));
    json_object_object_add(changes, "enabled", json_object_new_boolean(!deleted));
    json_object_object_add(changes, "deleted_at", deleted ? json_object_new_int64(ars_wall_ms()) : NULL);
    json_object_object_add(changes, "deleted_by", json_object_new_string(deleted && by ? by : ""));
    err = write_changes(r, cfg, id, changes, NULL, errbuf, errlen);
    json_object_put(changes);
    return err;
}

enum ars_err ars_keys_delete(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                             const char *by, char *errbuf, size_t errlen)
{
    return set_flags(r, cfg, id, 1, by, errbuf, errlen);
}

enum ars_err ars_keys_restore(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                              char *errbuf, size_t errlen)
{
    return set_flags(r, cfg, id, 0, NULL, errbuf, errlen);
}

enum ars_err ars_keys_purge(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                            char *errbuf, size_t errlen)
{
    json_object *current = NULL;
    enum ars_err err = ars_rec_redis_get(r, cfg, &ars_key_entity, id, &current);
    if (err == ARS_ERR_NOTFOUND) {
        snprintf(errbuf, errlen, "API key %s not found", id);
        return err;
    }
    if (err) {
        snprintf(errbuf, errlen, "Redis: %s", ars_redis_error(r));
        return err;
    }
    if (!json_object_get_boolean(member(current, "deleted"))) {
        json_object_put(current);
        snprintf(errbuf, errlen, "API key %s must be deleted before it can be purged", id);
        return ARS_ERR_INVALID;
    }
    char hash[ARS_CRYPTO_HASH_HEX_LEN + 1];
    snprintf(hash, sizeof(hash), "%s", json_object_get_string(member(current, "key_hash")));
    json_object_put(current);
    long long version;
    err = redis_map_hash(r, cfg, hash, id, 1);
    if (!err)
        err = ars_rec_redis_delete(r, cfg, &ars_key_entity, id, &version);
    if (err) {
        snprintf(errbuf, errlen, "Redis: %s", ars_redis_error(r));
        return err;
    }
    ars_keys_cache_forget(hash);
    ars_rec_mirror_delete(r, cfg, &ars_key_entity, id, version);
    return ARS_OK;
}

/* ---- reads: the preferred store, then the other ---- */

static int prefer_pg(const struct ars_config *cfg)
{
    return ars_pg_enabled(cfg) && cfg->pg_list_api_keys;
}

static enum ars_err pg_get(const struct ars_config *cfg, const char *id, json_object **rec,
                           char *errbuf, size_t errlen)
{
    struct ars_pg_conn *c;
    enum ars_err err = ars_pg_acquire(cfg, (long)cfg->pg_connect_timeout_ms, &c, errbuf, errlen);
    if (err)
        return err;
    err = ars_rec_pg_get(c, cfg, &ars_key_entity, "id", id, rec, errbuf, errlen);
    ars_pg_release(c, err == ARS_ERR_UNAVAILABLE || err == ARS_ERR_TIMEOUT);
    return err;
}

enum ars_err ars_keys_get(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                          json_object **rec, char *errbuf, size_t errlen)
{
    *rec = NULL;
    enum ars_err err;
    if (prefer_pg(cfg)) {
        err = pg_get(cfg, id, rec, errbuf, errlen);
        if (err == ARS_ERR_UNAVAILABLE || err == ARS_ERR_TIMEOUT)
            err = ars_rec_redis_get(r, cfg, &ars_key_entity, id, rec);
    } else {
        err = ars_rec_redis_get(r, cfg, &ars_key_entity, id, rec);
        if (err == ARS_ERR_UNAVAILABLE && ars_pg_enabled(cfg))
            err = pg_get(cfg, id, rec, errbuf, errlen);
    }
    if (err == ARS_ERR_NOTFOUND)
        snprintf(errbuf, errlen, "API key %s not found", id);
    else if (err)
        snprintf(errbuf, errlen, "neither Redis nor PostgreSQL answered");
    return err;
}

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return 1;
    return n == 0;
}

static int status_matches(json_object *rec, const char *status)
{
    int deleted = json_object_get_boolean(member(rec, "deleted"));
    int enabled = json_object_get_boolean(member(rec, "enabled"));
    if (!status || strcmp(status, "active") == 0)
        return !deleted && enabled;
    if (strcmp(status, "disabled") == 0)
        return !deleted && !enabled;
    if (strcmp(status, "deleted") == 0)
        return deleted;
    if (strcmp(status, "live") == 0)
        return !deleted;
    return 1;   /* all */
}

static int has_tag(json_object *rec, const char *tag)
{
    json_object *tags = member(rec, "tags");
    for (size_t i = 0; tags && json_object_is_type(tags, json_type_array) && i < json_object_array_length(tags); i++)
        if (strcmp(json_object_get_string(json_object_array_get_idx(tags, i)), tag) == 0)
            return 1;
    return 0;
}

/* Redis has no secondary indexes for keys: read them all, filter here.
 * Fine for the thousands of keys a team has; PG_LIST_API_KEYS is the
 * answer beyond that. */
static enum ars_err redis_list(struct ars_redis *r, const struct ars_config *cfg, const struct ars_key_filter *f,
                               json_object **out)
{
    json_object *ids;
    enum ars_err err = ars_rec_redis_ids(r, cfg, &ars_key_entity, 0, &ids);
    if (err)
        return err;
    json_object *items = json_object_new_array();
    long long total = 0, skip = (f->page - 1) * f->page_size;
    for (size_t i = 0; !err && i < json_object_array_length(ids); i++) {
        json_object *rec;
        enum ars_err e = ars_rec_redis_get(r, cfg, &ars_key_entity,
                                           json_object_get_string(json_object_array_get_idx(ids, i)), &rec);
        if (e == ARS_ERR_NOTFOUND)
            continue;
        if (e) {
            err = e;
            break;
        }
        int match = status_matches(rec, f->status) && (!f->tag || has_tag(rec, f->tag)) &&
                    (!f->search || contains_ci(json_object_get_string(member(rec, "name")), f->search) ||
                     contains_ci(json_object_get_string(member(rec, "description")), f->search));
        if (match && total >= skip && (long long)json_object_array_length(items) < f->page_size)
            json_object_array_add(items, rec);
        else
            json_object_put(rec);
        total += match;
    }
    json_object_put(ids);
    if (err) {
        json_object_put(items);
        return err;
    }
    *out = json_object_new_object();
    json_object_object_add(*out, "items", items);
    json_object_object_add(*out, "total", json_object_new_int64(total));
    return ARS_OK;
}

/* LIKE pattern for a substring search with the user's % and _ taken
 * literally. */
static char *like_pattern(const char *s)
{
    size_t n = strlen(s);
    char *p = malloc(2 * n + 3);
    if (!p)
        return NULL;
    size_t o = 0;
    p[o++] = '%';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' || s[i] == '_' || s[i] == '\\')
            p[o++] = '\\';
        p[o++] = s[i];
    }
    p[o++] = '%';
    p[o] = '\0';
    return p;
}

static enum ars_err pg_list(const struct ars_config *cfg, const struct ars_key_filter *f, json_object **out,
                            char *errbuf, size_t errlen)
{
    char where[512] = "";
    const char *params[3];
    int n = 0;
    char *pattern = NULL;
    const char *status = f->status ? f->status : "active";
    size_t used = (size_t)snprintf(where, sizeof(where), "%s",
        strcmp(status, "active") == 0 ? "NOT deleted AND enabled" :
        strcmp(status, "disabled") == 0 ? "NOT deleted AND NOT enabled" :
        strcmp(status, "deleted") == 0 ? "deleted" :
        strcmp(status, "live") == 0 ? "NOT deleted" : "true");
    if (f->search) {
        pattern = like_pattern(f->search);
        if (!pattern)
            return ARS_ERR_NOMEM;
        params[n++] = pattern;
        used += (size_t)snprintf(where + used, sizeof(where) - used,
                                 " AND (name ILIKE $%d OR description ILIKE $%d)", n, n);
    }
    if (f->tag) {
        params[n++] = f->tag;
        snprintf(where + used, sizeof(where) - used, " AND tags ? $%d", n);
    }
    struct ars_pg_conn *c;
    enum ars_err err = ars_pg_acquire(cfg, (long)cfg->pg_connect_timeout_ms, &c, errbuf, errlen);
    if (!err) {
        err = ars_rec_pg_list(c, cfg, &ars_key_entity, where, n, params, f->page_size,
                              (f->page - 1) * f->page_size, out, errbuf, errlen);
        ars_pg_release(c, err == ARS_ERR_UNAVAILABLE || err == ARS_ERR_TIMEOUT);
    }
    free(pattern);
    return err;
}

enum ars_err ars_keys_list(struct ars_redis *r, const struct ars_config *cfg,
                           const struct ars_key_filter *filter, json_object **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    struct ars_key_filter f = *filter;
    if (f.page < 1)
        f.page = 1;
    if (f.page_size < 1 || f.page_size > 100)
        f.page_size = 20;
    if (f.search && !*f.search)
        f.search = NULL;
    if (f.tag && !*f.tag)
        f.tag = NULL;
    enum ars_err err;
    const char *source;
    if (prefer_pg(cfg)) {
        source = "postgres";
        err = pg_list(cfg, &f, out, errbuf, errlen);
        if (err == ARS_ERR_UNAVAILABLE || err == ARS_ERR_TIMEOUT) {
            source = "redis";
            err = redis_list(r, cfg, &f, out);
        }
    } else {
        source = "redis";
        err = redis_list(r, cfg, &f, out);
        if (err == ARS_ERR_UNAVAILABLE && ars_pg_enabled(cfg)) {
            source = "postgres";
            err = pg_list(cfg, &f, out, errbuf, errlen);
        }
    }
    if (err) {
        if (!errbuf[0] || err == ARS_ERR_UNAVAILABLE)
            snprintf(errbuf, errlen, "neither Redis nor PostgreSQL answered");
        return err;
    }
    json_object_object_add(*out, "page", json_object_new_int64(f.page));
    json_object_object_add(*out, "page_size", json_object_new_int64(f.page_size));
    json_object_object_add(*out, "source", json_object_new_string(source));
    return ARS_OK;
}

enum ars_err ars_keys_tags(struct ars_redis *r, const struct ars_config *cfg, json_object **out,
                           char *errbuf, size_t errlen)
{
    struct ars_key_filter f = { .status = "live", .page = 1, .page_size = 100 };
    json_object *tags = json_object_new_array();
    enum ars_err err = ARS_OK;
    for (;; f.page++) {
        json_object *pagej;
        err = ars_keys_list(r, cfg, &f, &pagej, errbuf, errlen);
        if (err)
            break;
        json_object *items = member(pagej, "items");
        size_t n = json_object_array_length(items);
        for (size_t i = 0; i < n; i++) {
            json_object *kt = member(json_object_array_get_idx(items, i), "tags");
            for (size_t j = 0; kt && json_object_is_type(kt, json_type_array) && j < json_object_array_length(kt); j++) {
                const char *t = json_object_get_string(json_object_array_get_idx(kt, j));
                int seen = 0;
                for (size_t x = 0; x < json_object_array_length(tags) && !seen; x++)
                    seen = strcmp(json_object_get_string(json_object_array_get_idx(tags, x)), t) == 0;
                if (!seen)
                    json_object_array_add(tags, json_object_new_string(t));
            }
        }
        long long total = int_of(pagej, "total");
        json_object_put(pagej);
        if (n == 0 || f.page * f.page_size >= total)
            break;
    }
    if (err) {
        json_object_put(tags);
        return err;
    }
    *out = json_object_new_object();
    json_object_object_add(*out, "tags", tags);
    return ARS_OK;
}
