/* Account scheduler (DESIGN.md §4): which upstream account serves a
 * request, its concurrency lease, and the cool-downs upstream answers put
 * on accounts.
 *
 * Accounts come from a process-wide cache: the whole list (and the
 * groups) is read from Redis at most every ACCOUNT_CACHE_SECONDS,
 * decrypted once, and shared read-only between threads as refcounted
 * struct ars_account. A failed refresh keeps the previous list.
 *
 * The runtime state every process and host must agree on lives in Redis
 * under the hash tag {pool} (docs/internals/relay-modules.md): leases,
 * cool-downs, error counters, the LRU hash and sticky bindings. One pick
 * is one Lua script over exactly the keys it declares, so it is atomic:
 * two processes never both take an account's last free slot. */
#ifndef ARS_RELAY_SCHEDULER_H
#define ARS_RELAY_SCHEDULER_H

#include <json.h>
#include <stdatomic.h>
#include <stddef.h>

#include "err.h"

struct ars_redis;
struct ars_config;
struct ars_key;

/* Caps. Accounts are configured by admins, the rest comes from clients or
 * the upstream. */
#define ARS_SCHED_MAX_ACCOUNTS      2000   /* accounts one pick considers (beyond: logged, lowest priority dropped) */
#define ARS_SCHED_MAX_SESSION_LEN   128    /* longer session ids are reduced to their SHA-256 */
#define ARS_SCHED_MAX_HEADER_LEN    128    /* retry-after / unified-reset values parsed */
#define ARS_SCHED_WHY_LEN           256    /* a good size for the `why` buffer */
/* A transport probe whose relay died blocks further probes of its account
 * for the connect timeout plus this long (a live probe ends itself with
 * its answer head or its failure, normally well within it). */
#define ARS_SCHED_PROBE_SLACK_MS    15000

enum ars_account_type { ARS_ACCOUNT_OAUTH, ARS_ACCOUNT_CONSOLE };

struct ars_model_pair {
    char *from;    /* requested model, matched case-insensitively */
    char *to;      /* model sent upstream */
};

/* Runtime view of one account, decrypted. Shared read-only between
 * threads; holders keep a reference (ars_account_release). */
struct ars_account {
    atomic_int refs;
    char *id;
    char *name;
    enum ars_account_type type;
    int priority;                    /* 1-100, lower first */
    int schedulable;
    int deleted;
    char *status;                    /* "active", "unauthorized", ... ("" = active) */
    long long concurrency_limit;     /* 0: no limit */
    char **groups;                   /* NULL-terminated group ids (record's list plus group memberships) */
    char *base_url;                  /* console accounts; "" = CLAUDE_API_URL */
    struct ars_model_pair *model_mapping;
    size_t nmodel_mapping;
    char *proxy;                     /* decrypted proxy URL or "" */
    /* OAuth */
    char *access_token;
    char *refresh_token;
    long long token_expires_ms;      /* 0: unknown */
    char *scopes;                    /* space-separated */
    /* console */
    char *api_key;
    long long version;
};

void ars_account_release(struct ars_account *a);

/* Builds the runtime view of a stored record (secrets decrypted). Used by
 * the cache and the tests. ARS_ERR_INVALID with err naming the field when
 * the record cannot be used (unknown type, undecryptable secret). */
ARS_MUST_USE enum ars_err ars_account_from_record(const struct ars_config *cfg, json_object *rec,
                                     struct ars_account **out, char *err, size_t errlen);

/* The upstream model for `model` by the account's mapping (case-
 * insensitive), or `model` itself. */
const char *ars_account_map_model(const struct ars_account *a, const char *model);

/* "opus", "sonnet", "haiku", "fable" or "other", by substring of the
 * model id (case-insensitive). Cool-downs per family use these names. */
const char *ars_model_family(const char *model);

/* Forces the next pick in this process to reload the account list (after
 * a local account write; other processes see it within
 * ACCOUNT_CACHE_SECONDS). */
void ars_sched_cache_invalidate(void);

/* The cached account with this id (a reference), loading the list if the
 * cache is stale. ARS_ERR_NOTFOUND when it is not in the list (deleted or
 * unknown), ARS_ERR_UNAVAILABLE when no list could be loaded. */
ARS_MUST_USE enum ars_err ars_sched_account(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                               struct ars_account **out);

/* Frees every cached account (tests, exit). */
void ars_sched_cache_free(void);

struct ars_pick {
    struct ars_account *account;   /* a reference: ars_account_release */
    int sticky;                    /* 1: the session's binding chose it */
    int probe;                     /* 1: the account's transport breaker is open and this request tests it:
                                    * call ars_sched_breaker_close once the upstream answered at all */
};

/* Picks an account for one request and takes its lease (member
 * request_id in the account's lease zset, deadline now + LEASE_TTL).
 *
 * Candidates: accounts not deleted, schedulable, status "active" (or ""),
 * not in exclude_ids; only the key's dedicated account or its group's
 * members when k->account_binding is set (no fallback to the pool then).
 * Among those, the ones neither cooling down (whole account, or this
 * model's family) nor at their concurrency limit are available. The
 * session's sticky account wins when available (its binding is renewed);
 * else the lowest priority number, then fewest in flight, then least
 * recently picked. A binding is written only when none exists (or it
 * names an account that is gone from the pool): a busy or cooling bound
 * account spills over and gets the conversation back once it is free.
 *
 * session_hash NULL (or STICKY_TTL_SECONDS=0): no stickiness.
 * ARS_OK with out filled; ARS_ERR_NOTFOUND when no account can take the
 * request, with `why` a sentence for the client's 503; ARS_ERR_UNAVAILABLE
 * when Redis failed (why says so); ARS_ERR_INVALID for bad arguments. */
ARS_MUST_USE enum ars_err ars_sched_pick(struct ars_redis *r, const struct ars_config *cfg, const struct ars_key *k,
                            const char *model, const char *session_hash, const char *request_id,
                            const char *const *exclude_ids, size_t nexclude, long long now_ms,
                            struct ars_pick *out, char *why, size_t whylen);

/* Extends a lease to now + LEASE_TTL (long streams call it periodically). */
ARS_MUST_USE enum ars_err ars_sched_refresh(struct ars_redis *r, const struct ars_config *cfg, const char *account_id,
                               const char *request_id, long long now_ms);
/* Drops a lease; on every exit path of a request that picked. */
ARS_MUST_USE enum ars_err ars_sched_release(struct ars_redis *r, const struct ars_config *cfg, const char *account_id,
                               const char *request_id);
/* Compensates a pick whose answer was lost (a Redis timeout): removes the
 * request's lease from every account of the list and leaves a tombstone
 * (P pool:{pool}:cancel:RID, LEASE_TTL + slack) so that a pick script
 * still waiting in Redis takes nothing. ars_sched_pick queues this itself
 * (ars_usage_cancel_later) when its script fails. */
ARS_MUST_USE enum ars_err ars_sched_cancel(struct ars_redis *r, const struct ars_config *cfg, const char *request_id);
/* The lease zset's key: "P pool:{pool}:conc:AID". */
void ars_sched_lease_key(const struct ars_config *cfg, const char *account_id, char *out, size_t n);

/* Records an upstream answer's effect on the account (key_id: the API key
 * whose request got it, or NULL):
 *   429 + anthropic-ratelimit-unified-reset (unix s) -> the model family cools until the reset;
 *   429 + retry-after (seconds or HTTP date)         -> the whole account, that long;
 *   other 429                                        -> whole account, RATE_LIMIT_COOLDOWN_SECONDS;
 *   529                                              -> whole account, OVERLOAD_COOLDOWN_SECONDS;
 *   403 and other 5xx                                -> counted; ERROR_THRESHOLD of them within
 *                                                       ERROR_WINDOW_SECONDS cool it ERROR_COOLDOWN_SECONDS;
 *                                                       at most ERROR_MARKS_PER_KEY_PER_MINUTE of one
 *                                                       key's count (a key cannot park accounts alone);
 *   401, 2xx, other 4xx                              -> nothing (401 is the caller's: ars_oauth, then
 *                                                       ars_sched_mark_unauthorized; 400, 404, 413, 422
 *                                                       are the request's own fault).
 * Transport failures are not statuses: ars_sched_mark_transport.
 * Every cool-down is capped by COOLDOWN_MAX_SECONDS and never shortens a
 * longer one already in place. Headers may be NULL. */
ARS_MUST_USE enum ars_err ars_sched_mark(struct ars_redis *r, const struct ars_config *cfg, const struct ars_account *a,
                            const char *key_id, const char *model, int status, const char *retry_after_header,
                            const char *unified_reset_header, long long now_ms);

/* A transport failure (connection refused or reset, timeout before the
 * first byte): the account's breaker (P pool:{pool}:brk:AID) opens for
 * TRANSPORT_BACKOFF_SECONDS, doubling per consecutive failure up to
 * TRANSPORT_BACKOFF_MAX_SECONDS; afterwards one request at a time probes
 * it (ars_pick.probe), and while every account of a pick backs off, one
 * probe is let through at once. Never an ERROR_THRESHOLD count: a short
 * upstream outage must not park a pool for ERROR_COOLDOWN_SECONDS. */
ARS_MUST_USE enum ars_err ars_sched_mark_transport(struct ars_redis *r, const struct ars_config *cfg,
                                      const struct ars_account *a, const char *what, long long now_ms);
/* A probe reached the upstream (any HTTP answer): the breaker closes. */
ARS_MUST_USE enum ars_err ars_sched_breaker_close(struct ars_redis *r, const struct ars_config *cfg, const struct ars_account *a);

/* Sets the account's status to "unauthorized" in its record (Redis and
 * the PostgreSQL archive), so every process drops it from the pool. */
ARS_MUST_USE enum ars_err ars_sched_mark_unauthorized(struct ars_redis *r, const struct ars_config *cfg,
                                         const struct ars_account *a, const char *reason);

/* Active cool-downs of one account:
 * {"account_id":..,"cooldowns":[{"scope":"all"|family,"ttl_ms":N,"reason":{...}}],"recent_errors":N} */
ARS_MUST_USE enum ars_err ars_sched_cooldowns(struct ars_redis *r, const struct ars_config *cfg, const char *account_id,
                                 json_object **out);

/* ---- pure helpers (exposed for the tests) ---- */

/* retry-after: delta seconds ("120", "1.5") or an HTTP date (IMF-fixdate,
 * RFC 850, asctime). 0 with *delay_ms (>= 0) set; -1 when unparseable. */
int ars_sched_parse_retry_after(const char *value, long long now_ms, long long *delay_ms);
/* anthropic-ratelimit-unified-reset: unix seconds (an integer, or with a
 * fraction). 0 with *reset_ms set; -1 when unparseable. */
int ars_sched_parse_unified_reset(const char *value, long long *reset_ms);
/* A cool-down length bounded to [1 s, COOLDOWN_MAX_SECONDS]. */
long long ars_sched_cooldown_clamp_ms(const struct ars_config *cfg, long long want_ms);

#endif
