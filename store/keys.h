/* API keys: the client's `cr_...` keys, their limits and restrictions.
 *
 * Double-write (DESIGN.md §5): every write goes to Redis, then to
 * PostgreSQL (or the outbox). List, search, tags and detail read
 * PostgreSQL when PG_LIST_API_KEYS=true, else Redis, and fall back to the
 * other store when the preferred one fails. Request-time lookup by key
 * hash: in-process cache (KEY_CACHE_SECONDS, bounded) -> Redis ->
 * PostgreSQL, back-filling Redis on a PostgreSQL hit; not PostgreSQL once
 * Redis is known to hold every key (keys:complete, see keys.c). */
#ifndef ARS_STORE_KEYS_H
#define ARS_STORE_KEYS_H

#include <json.h>
#include <stdatomic.h>

#include "crypto.h"
#include "err.h"

struct ars_redis;
struct ars_config;

/* Route families a key may be limited to. */
enum ars_permission { ARS_PERM_CLAUDE = 1u << 0, ARS_PERM_OPENAI = 1u << 1 };

/* What request-time checks need, decoded once per cache fill. Shared
 * between threads read-only; refcounted. */
struct ars_key {
    atomic_int refs;
    char id[ARS_UUID_LEN + 1];
    char *name;
    int enabled;
    int deleted;
    int activation_mode;          /* expiry counts from first use */
    long long expires_at_ms;      /* 0: never (fixed mode) */
    long long activation_amount;
    int activation_hours;         /* unit is hours, else days */
    long long activated_at_ms;    /* 0: not yet used */
    unsigned permissions;         /* 0: every family */
    char **restricted_models;     /* NULL-terminated blacklist */
    char **allowed_clients;       /* NULL-terminated; empty: any client */
    long long concurrency_limit;
    long long window_minutes;
    long long window_requests;
    long long window_tokens;
    long long window_cost_micros;
    long long daily_cost_micros;
    long long weekly_cost_micros;
    int weekly_reset_day;         /* 1 = Monday .. 7 = Sunday */
    int weekly_reset_hour;
    long long total_cost_micros;
    char *account_binding;        /* "", account id, or "group:<id>" */
    long long version;
};

void ars_key_release(struct ars_key *k);

/* Whether the key's blacklist blocks this model: its entries match as
 * ars_pricing_model_blocks (pricing.h) does with the current table. */
int ars_key_model_blocked(const struct ars_key *k, const char *model);

/* Request-time lookup by the hash of the presented key. ARS_ERR_NOTFOUND
 * for an unknown key; ARS_ERR_UNAVAILABLE when neither store answers. A
 * lookup that had to ask PostgreSQL may also load every key into Redis
 * (once per Redis data loss, one process at a time). The
 * returned key holds a reference (ars_key_release). */
ARS_MUST_USE enum ars_err ars_keys_lookup(struct ars_redis *r, const struct ars_config *cfg, const char *key_hash,
                             struct ars_key **out);
/* First use of an activation-mode key: sets activated_at and expires_at
 * once (the first process wins; others get the stored values). */
ARS_MUST_USE enum ars_err ars_keys_activate(struct ars_redis *r, const struct ars_config *cfg, const struct ars_key *k,
                               const char *key_hash, long long now_ms, long long *expires_at_ms);
/* Drops this process's cached copy (after a local write). */
void ars_keys_cache_forget(const char *key_hash);

/* ---- administration (records as json, see records.h) ---- */

/* Creates a key from params (name required; every limit optional). On
 * success *rec is the stored record and plaintext the key, shown once.
 * ARS_ERR_INVALID with errbuf naming the field when params are wrong. */
ARS_MUST_USE enum ars_err ars_keys_create(struct ars_redis *r, const struct ars_config *cfg, json_object *params,
                             json_object **rec, char plaintext[ARS_API_KEY_LEN + 1],
                             char *errbuf, size_t errlen);
/* Changes the editable fields present in changes. */
ARS_MUST_USE enum ars_err ars_keys_update(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                             json_object *changes, json_object **rec, char *errbuf, size_t errlen);
ARS_MUST_USE enum ars_err ars_keys_get(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                          json_object **rec, char *errbuf, size_t errlen);
/* Soft delete (disabled, marked deleted, restorable), restore, and purge
 * (only a soft-deleted key; removes it from both stores). */
ARS_MUST_USE enum ars_err ars_keys_delete(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                             const char *by, char *errbuf, size_t errlen);
ARS_MUST_USE enum ars_err ars_keys_restore(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                              char *errbuf, size_t errlen);
ARS_MUST_USE enum ars_err ars_keys_purge(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                            char *errbuf, size_t errlen);

struct ars_key_filter {
    const char *search;     /* substring of name or description, case-insensitive */
    const char *tag;        /* exact tag */
    const char *status;     /* "active" (default), "disabled", "deleted", "all" */
    long long page;         /* from 1 */
    long long page_size;    /* 1..100 */
};

/* {"items":[...],"total":N,"page":P,"page_size":S,"source":"postgres"|"redis"} */
ARS_MUST_USE enum ars_err ars_keys_list(struct ars_redis *r, const struct ars_config *cfg,
                           const struct ars_key_filter *f, json_object **out, char *errbuf, size_t errlen);
/* {"tags":[...]} over live keys. */
ARS_MUST_USE enum ars_err ars_keys_tags(struct ars_redis *r, const struct ars_config *cfg, json_object **out,
                           char *errbuf, size_t errlen);

/* Builds the runtime view of a record (tests, cache fill). */
struct ars_key *ars_key_from_record(json_object *rec);

#endif
