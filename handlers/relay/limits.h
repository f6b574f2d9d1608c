/* Per-key admission (DESIGN §4 step 3): concurrency lease, fixed window,
 * daily / weekly / total cost, checked and taken in ONE Lua script, so
 * concurrent requests in any number of processes and hosts see one
 * consistent state and nothing is charged on a refusal.
 *
 * Redis keys (docs/internals/relay-modules.md), all under the key's hash
 * tag {KID} so the script stays cluster-safe:
 *   P lim:{KID}:conc                  ZSET request id -> lease deadline (ms)
 *   P lim:{KID}:win                   HASH start, requests, tokens, cost
 *   P lim:{KID}:cost:d:YYYYMMDD       daily cost (micros), TTL 3 days
 *   P lim:{KID}:cost:w:WEEKSTART_MS   weekly cost (micros), TTL 15 days
 *   P lim:{KID}:cost:total            total cost (micros)
 * Counters are charged after the request by usage.c (ars_usage_record);
 * this module only reads them, and writes the lease and the window's
 * request count.
 *
 * Semantics, in check order:
 *  1. concurrency (not for count_tokens requests): expired leases are
 *     dropped first; with concurrency_limit > 0 and as many live leases
 *     as the limit, CONCURRENCY, retry after the earliest lease deadline
 *     (at least 1 s). Every admitted request other than count_tokens takes
 *     a lease, limit or not (so the console can show what is in flight);
 *     release it on every exit path (ars_limits_release, or the usage
 *     record's release_key_lease).
 *  2. fixed window (window_minutes > 0 and one of its three limits > 0):
 *     a window starts at the first request after the previous window
 *     ended and lasts window_minutes. WINDOW_REQUESTS / WINDOW_TOKENS /
 *     WINDOW_COST when the count already reached the limit, retry at the
 *     window's end. count_tokens requests are checked but neither start
 *     a window nor count in it (the service operators come from counted
 *     them: REFERENCE-crs §5.3 [quirk]).
 *  3. daily cost (UTC day), 4. weekly cost (the week starts on
 *     weekly_reset_day at weekly_reset_hour UTC), 5. total cost: refused
 *     when the spend reached the budget; reset_at is the next day / week
 *     start, 0 for the total (it never resets). Budgets are soft: a
 *     request admitted under the budget may end above it.
 */

#ifndef ARS_LIMITS_H
#define ARS_LIMITS_H

#include <stddef.h>

#include "err.h"

struct ars_redis;
struct ars_config;
struct ars_key;

/* The smallest retry-after for a concurrency refusal (a plain integer:
 * the script text embeds it). */
#define ARS_LIMITS_MIN_RETRY_MS       1000
/* retry-after of a concurrency refusal: a short hint, not the lease TTL. */
#define ARS_LIMITS_CONCURRENCY_RETRY_SECONDS 1
/* TTLs of the cost counters (written by usage.c). */
#define ARS_LIMITS_DAILY_TTL_SECONDS  (3LL * 86400)
#define ARS_LIMITS_WEEKLY_TTL_SECONDS (15LL * 86400)
/* Bytes of a Redis key name built here (prefix + key id + suffix); a
 * longer prefix is refused as ARS_ERR_TOOBIG. */
#define ARS_LIMITS_KEY_MAX            512

#define ARS_DAY_MS                    86400000LL
#define ARS_WEEK_MS                   (7 * ARS_DAY_MS)

/* The numbering is the script's return code: keep them in step. */
enum ars_limit_verdict {
    ARS_LIMIT_OK = 0,
    ARS_LIMIT_CONCURRENCY,
    ARS_LIMIT_WINDOW_REQUESTS,
    ARS_LIMIT_WINDOW_TOKENS,
    ARS_LIMIT_WINDOW_COST,
    ARS_LIMIT_DAILY_COST,
    ARS_LIMIT_WEEKLY_COST,
    ARS_LIMIT_TOTAL_COST
};

struct ars_admission {
    enum ars_limit_verdict verdict;
    long long retry_after_ms;    /* refusals: how long until the limit can pass; 0 for the total */
    long long reset_at_ms;       /* epoch ms the limit resets (0: never) */
    long long current;           /* leases / requests / tokens / micros at the refusal */
    long long limit;             /* the limit that refused, same unit */
    long long window_start_ms;   /* start of the current window (0: no window) */
};

/* Admits one request of key k at now_ms (epoch ms; tests pass any time).
 * request_id names the lease. count_tokens_request: the count_tokens
 * endpoint (no lease, not counted in the window; budgets and window
 * limits still apply). ARS_OK with *out filled, whatever the verdict;
 * ARS_ERR_UNAVAILABLE when Redis cannot answer (the caller decides
 * whether to fail open or closed; the failure is logged, and a
 * compensating release is queued, see ars_limits_cancel); ARS_ERR_TOOBIG for an absurd key
 * prefix. A count_tokens request of a key without window or budget
 * limits needs no Redis round trip at all. */
ARS_MUST_USE enum ars_err ars_limits_admit(struct ars_redis *r, const struct ars_config *cfg, const struct ars_key *k,
                              const char *request_id, long long now_ms, int count_tokens_request,
                              struct ars_admission *out);

/* Moves a lease's deadline to now_ms + LEASE_TTL_SECONDS (long streams
 * call it well before the deadline). ARS_ERR_NOTFOUND when the lease is
 * gone (expired and dropped, or released): it is not re-taken. */
ARS_MUST_USE enum ars_err ars_limits_refresh(struct ars_redis *r, const struct ars_config *cfg, const char *key_id,
                                const char *request_id, long long now_ms);
/* Drops a lease (no error when it is already gone). */
ARS_MUST_USE enum ars_err ars_limits_release(struct ars_redis *r, const struct ars_config *cfg, const char *key_id,
                                const char *request_id);
/* Compensates an admission whose answer was lost (a Redis timeout): drops
 * the request's lease if the script ran, and leaves a tombstone
 * (P lim:{KID}:cancel:RID, LEASE_TTL_SECONDS) so that a script still
 * waiting in Redis takes nothing. ars_limits_admit queues this itself
 * (through ars_usage_cancel_later) when its script fails. */
ARS_MUST_USE enum ars_err ars_limits_cancel(struct ars_redis *r, const struct ars_config *cfg, const char *key_id,
                               const char *request_id);
/* "P lim:{KID}:conc", the lease ZSET (usage.c releases in its pipeline).
 * Cut to n - 1 bytes; n >= ARS_LIMITS_KEY_MAX never cuts a sane prefix. */
void ars_limits_lease_key(const struct ars_config *cfg, const char *key_id, char *out, size_t n);

/* Whether k has a fixed window that admission tracks (window_minutes > 0
 * and any of its limits > 0): the usage record's window_active. */
int ars_limits_window_active(const struct ars_key *k);

/* What the client sees for a verdict: 429 rate_limit_error for
 * CONCURRENCY and WINDOW_* (clients retry after retry-after), 402
 * billing_error for the budgets (clients must not auto-retry). The
 * message names the limit, current / limit (dollars for costs) and when
 * it resets. ARS_LIMIT_OK: 200, error_type NULL, empty message. */
void ars_limits_describe(const struct ars_admission *a, int *status, const char **error_type,
                         char *message, size_t n);
/* The retry-after header value: retry_after_ms in whole seconds, rounded
 * up, at least 1. */
long long ars_limits_retry_after_seconds(const struct ars_admission *a);

/* ---- time buckets (pure; UTC) ---- */

/* Start of the UTC day holding now_ms. */
long long ars_day_start_ms(long long now_ms);
/* "YYYYMMDD" of the UTC day holding now_ms. */
void ars_day_bucket(long long now_ms, char out[9]);
/* Start of the week holding now_ms: the latest instant <= now_ms that is
 * weekday reset_day (1 = Monday .. 7 = Sunday) at reset_hour:00 UTC.
 * Out-of-range arguments are clamped (day to 1..7, hour to 0..23). */
long long ars_week_start_ms(long long now_ms, int reset_day, int reset_hour);
/* Micro-dollars as "$1.50", "$0.000123": at least two decimals, more
 * only when the amount has them. */
void ars_format_dollars(long long micros, char *out, size_t n);
/* Epoch ms as "2025-01-31T23:00:00Z". */
void ars_format_iso_utc(long long ms, char *out, size_t n);

#endif
