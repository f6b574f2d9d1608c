#include "limits.h"

#include <hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "keys.h"
#include "log.h"
#include "redis.h"
#include "usage.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- time buckets ---- */

static long long floor_div(long long a, long long b)
{
    long long q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

long long ars_day_start_ms(long long now_ms)
{
    return floor_div(now_ms, ARS_DAY_MS) * ARS_DAY_MS;
}

static void gm(long long ms, struct tm *tm)
{
    time_t t = (time_t)floor_div(ms, 1000);
    memset(tm, 0, sizeof(*tm));
    gmtime_r(&t, tm);
}

void ars_day_bucket(long long now_ms, char out[9])
{
    struct tm tm;
    gm(now_ms, &tm);
    snprintf(out, 9, "%04u%02u%02u", (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
             (unsigned)tm.tm_mday % 100u);
}

long long ars_week_start_ms(long long now_ms, int reset_day, int reset_hour)
{
    if (reset_day < 1 || reset_day > 7)
        reset_day = 1;
    if (reset_hour < 0)
        reset_hour = 0;
    if (reset_hour > 23)
        reset_hour = 23;
    long long days = floor_div(now_ms, ARS_DAY_MS);
    /* 1970-01-01 was a Thursday (4 with Monday = 1). */
    int weekday = (int)(((days % 7) + 7 + 3) % 7) + 1;
    long long back = (weekday - reset_day + 7) % 7;
    long long start = (days - back) * ARS_DAY_MS + (long long)reset_hour * 3600000LL;
    if (start > now_ms)
        start -= ARS_WEEK_MS;
    return start;
}

void ars_format_dollars(long long micros, char *out, size_t n)
{
    const char *sign = "";
    unsigned long long v = (unsigned long long)micros;
    if (micros < 0) {
        sign = "-";
        v = 0ULL - v;
    }
    unsigned long long whole = v / 1000000ULL, frac = v % 1000000ULL;
    char digits[8];
    snprintf(digits, sizeof(digits), "%06llu", frac);
    int keep = 6;
    while (keep > 2 && digits[keep - 1] == '0')
        keep--;
    snprintf(out, n, "%s$%llu.%.*s", sign, whole, keep, digits);
}

void ars_format_iso_utc(long long ms, char *out, size_t n)
{
    struct tm tm;
    gm(ms, &tm);
    if (!n)
        return;
    if (strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        out[0] = '\0';
}

/* ---- Redis ---- */

static enum ars_err key_name(const struct ars_config *cfg, const char *key_id, const char *suffix,
                             char *out, size_t n)
{
    int len = snprintf(out, n, "%slim:{%s}:%s", cfg->redis_key_prefix, key_id, suffix);
    return len < 0 || (size_t)len >= n ? ARS_ERR_TOOBIG : ARS_OK;
}

/* "P lim:{KID}:cancel:RID": set by ars_limits_cancel, read by the admit
 * script (same hash tag, so cluster-safe). */
static enum ars_err cancel_key(const struct ars_config *cfg, const char *key_id, const char *request_id,
                               char *out, size_t n)
{
    int len = snprintf(out, n, "%slim:{%s}:cancel:%s", cfg->redis_key_prefix, key_id, request_id);
    return len < 0 || (size_t)len >= n ? ARS_ERR_TOOBIG : ARS_OK;
}

void ars_limits_lease_key(const struct ars_config *cfg, const char *key_id, char *out, size_t n)
{
    if (n && key_name(cfg, key_id, "conc", out, n) != ARS_OK)
        out[n - 1] = '\0';
}

int ars_limits_window_active(const struct ars_key *k)
{
    return k->window_minutes > 0 &&
           (k->window_requests > 0 || k->window_tokens > 0 || k->window_cost_micros > 0);
}

/* The admission script. Every check reads; nothing is written before the
 * last check passed, so a refusal charges nothing (dropping expired leases
 * is housekeeping, not a charge). Returns {verdict, retry_after_ms,
 * reset_at_ms, current, limit, window_start_ms}.
 * KEYS: conc, win, daily, weekly, total, cancel (ars_limits_cancel's
 *       tombstone: a request the caller gave up on takes nothing).
 * ARGV: now, request id, lease deadline, lease ttl ms, count_tokens (0/1),
 *       concurrency limit, window ms (0: none), window requests, tokens,
 *       cost, daily, weekly, total limits, next day start, next week start.
 * Times are the caller's clock (ms since the epoch < 2^53, exact in Lua
 * numbers); values written back are the caller's strings, so no number
 * goes through Lua's float formatting on the way into Redis. */
static struct ars_redis_script admit_script = ARS_REDIS_SCRIPT(
    "if ARGV[5] ~= '1' and redis.call('EXISTS', KEYS[6]) == 1 then return {0, 0, 0, 0, 0, 0} end\n"
    "local now = tonumber(ARGV[1])\n"
    "local lease_ms = tonumber(ARGV[4])\n"
    "local ct = ARGV[5] == '1'\n"
    "local conc_limit = tonumber(ARGV[6])\n"
    "local window_ms = tonumber(ARGV[7])\n"
    "if not ct then\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])\n"
    "  if conc_limit > 0 then\n"
    "    local n = redis.call('ZCARD', KEYS[1])\n"
    "    if n >= conc_limit then\n"
    "      local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
    "      local retry = tonumber(first[2]) - now\n"
    "      if retry < " STR(ARS_LIMITS_MIN_RETRY_MS) " then retry = " STR(ARS_LIMITS_MIN_RETRY_MS) " end\n"
    "      return {1, retry, now + retry, n, conc_limit, 0}\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local wstart, fresh = 0, false\n"
    "if window_ms > 0 then\n"
    "  local w = redis.call('HMGET', KEYS[2], 'start', 'requests', 'tokens', 'cost')\n"
    "  local s = tonumber(w[1])\n"
    "  if s == nil or now >= s + window_ms or s > now + window_ms then\n"
    "    fresh = true\n"
    "    wstart = now\n"
    "  else\n"
    "    wstart = s\n"
    "    local wend = s + window_ms\n"
    "    local checks = {{2, tonumber(w[2]) or 0, tonumber(ARGV[8])},\n"
    "                    {3, tonumber(w[3]) or 0, tonumber(ARGV[9])},\n"
    "                    {4, tonumber(w[4]) or 0, tonumber(ARGV[10])}}\n"
    "    for _, c in ipairs(checks) do\n"
    "      if c[3] > 0 and c[2] >= c[3] then\n"
    "        return {c[1], wend - now, wend, c[2], c[3], s}\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local budgets = {{5, KEYS[3], tonumber(ARGV[11]), tonumber(ARGV[14])},\n"
    "                 {6, KEYS[4], tonumber(ARGV[12]), tonumber(ARGV[15])},\n"
    "                 {7, KEYS[5], tonumber(ARGV[13]), 0}}\n"
    "for _, b in ipairs(budgets) do\n"
    "  if b[3] > 0 then\n"
    "    local spent = tonumber(redis.call('GET', b[2]) or '0') or 0\n"
    "    if spent >= b[3] then\n"
    "      local retry = 0\n"
    "      if b[4] > 0 then retry = b[4] - now end\n"
    "      return {b[1], retry, b[4], spent, b[3], (fresh and 0) or wstart}\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if not ct then\n"
    "  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])\n"
    "  if redis.call('PTTL', KEYS[1]) < lease_ms then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end\n"
    "  if window_ms > 0 then\n"
    "    if fresh then\n"
    "      redis.call('DEL', KEYS[2])\n"
    "      redis.call('HSET', KEYS[2], 'start', ARGV[1], 'requests', 1, 'tokens', 0, 'cost', 0)\n"
    "      redis.call('PEXPIRE', KEYS[2], ARGV[7])\n"
    "    else\n"
    "      redis.call('HINCRBY', KEYS[2], 'requests', 1)\n"
    "      redis.call('PEXPIRE', KEYS[2], wstart + window_ms - now)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if ct and fresh then wstart = 0 end\n"
    "return {0, 0, 0, 0, 0, wstart}\n");

/* Moves a lease's deadline; 0 when the lease is gone. The zset's TTL only
 * ever grows, so it outlives every member. */
static struct ars_redis_script refresh_script = ARS_REDIS_SCRIPT(
    "if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end\n"
    "redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])\n"
    "if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end\n"
    "return 1\n");

static void log_reply_error(const char *request_id, const char *event, const redisReply *rep)
{
    struct ars_logline l;
    ars_log_begin(&l, ARS_LOG_ERROR, request_id, event);
    if (rep->type == REDIS_REPLY_ERROR)
        ars_log_strn(&l, "redis_error", rep->str, rep->len);
    else
        ars_log_int(&l, "reply_type", rep->type);
    ars_log_end(&l);
}

static int has_budget_or_window(const struct ars_key *k)
{
    return ars_limits_window_active(k) || k->daily_cost_micros > 0 || k->weekly_cost_micros > 0 ||
           k->total_cost_micros > 0;
}

static long long nonneg(long long v)
{
    return v > 0 ? v : 0;
}

enum ars_err ars_limits_admit(struct ars_redis *r, const struct ars_config *cfg, const struct ars_key *k,
                              const char *request_id, long long now_ms, int count_tokens_request,
                              struct ars_admission *out)
{
    memset(out, 0, sizeof(*out));
    out->verdict = ARS_LIMIT_OK;
    if (count_tokens_request && !has_budget_or_window(k))
        return ARS_OK;

    char conc[ARS_LIMITS_KEY_MAX], win[ARS_LIMITS_KEY_MAX], daily[ARS_LIMITS_KEY_MAX];
    char weekly[ARS_LIMITS_KEY_MAX], total[ARS_LIMITS_KEY_MAX], cancel[ARS_LIMITS_KEY_MAX], suffix[64];
    char day[9];
    ars_day_bucket(now_ms, day);
    long long week_start = ars_week_start_ms(now_ms, k->weekly_reset_day, k->weekly_reset_hour);
    enum ars_err err = key_name(cfg, k->id, "conc", conc, sizeof(conc));
    if (!err)
        err = key_name(cfg, k->id, "win", win, sizeof(win));
    snprintf(suffix, sizeof(suffix), "cost:d:%s", day);
    if (!err)
        err = key_name(cfg, k->id, suffix, daily, sizeof(daily));
    snprintf(suffix, sizeof(suffix), "cost:w:%lld", week_start);
    if (!err)
        err = key_name(cfg, k->id, suffix, weekly, sizeof(weekly));
    if (!err)
        err = key_name(cfg, k->id, "cost:total", total, sizeof(total));
    if (!err)
        err = cancel_key(cfg, k->id, request_id, cancel, sizeof(cancel));
    if (err)
        return err;

    long long lease_ms = cfg->lease_ttl_seconds * 1000;
    long long window_ms = ars_limits_window_active(k) ? k->window_minutes * 60000 : 0;
    char a_now[24], a_deadline[24], a_lease[24], a_conc[24], a_win[24], a_wreq[24], a_wtok[24];
    char a_wcost[24], a_daily[24], a_weekly[24], a_total[24], a_day_end[24], a_week_end[24];
    snprintf(a_now, sizeof(a_now), "%lld", now_ms);
    snprintf(a_deadline, sizeof(a_deadline), "%lld", now_ms + lease_ms);
    snprintf(a_lease, sizeof(a_lease), "%lld", lease_ms);
    snprintf(a_conc, sizeof(a_conc), "%lld", nonneg(k->concurrency_limit));
    snprintf(a_win, sizeof(a_win), "%lld", window_ms);
    snprintf(a_wreq, sizeof(a_wreq), "%lld", nonneg(k->window_requests));
    snprintf(a_wtok, sizeof(a_wtok), "%lld", nonneg(k->window_tokens));
    snprintf(a_wcost, sizeof(a_wcost), "%lld", nonneg(k->window_cost_micros));
    snprintf(a_daily, sizeof(a_daily), "%lld", nonneg(k->daily_cost_micros));
    snprintf(a_weekly, sizeof(a_weekly), "%lld", nonneg(k->weekly_cost_micros));
    snprintf(a_total, sizeof(a_total), "%lld", nonneg(k->total_cost_micros));
    snprintf(a_day_end, sizeof(a_day_end), "%lld", ars_day_start_ms(now_ms) + ARS_DAY_MS);
    snprintf(a_week_end, sizeof(a_week_end), "%lld", week_start + ARS_WEEK_MS);
    const char *kv[] = { conc, win, daily, weekly, total, cancel,
                         a_now, request_id, a_deadline, a_lease, count_tokens_request ? "1" : "0",
                         a_conc, a_win, a_wreq, a_wtok, a_wcost, a_daily, a_weekly, a_total,
                         a_day_end, a_week_end };

    redisReply *rep = NULL;
    err = ars_redis_eval(r, cfg, &admit_script, &rep, 6, 15, kv, NULL);
    if (err) {
        /* A timeout does not mean the script did not run: it may still
         * run once Redis gets to it and leave a lease nobody releases
         * (it would block a concurrency-1 key for LEASE_TTL_SECONDS).
         * Queue a compensating release (usage.c retries it); its
         * tombstone also stops a script that runs after it. */
        struct ars_logline l;
        ars_log_begin(&l, ARS_LOG_WARN, request_id, "limits_admit_unavailable");
        ars_log_str(&l, "key", k->id);
        ars_log_str(&l, "error", ars_redis_error(r));
        ars_log_str(&l, "action", count_tokens_request ? "none (no lease taken)" : "compensating release queued");
        ars_log_end(&l);
        if (!count_tokens_request && ars_usage_cancel_later(cfg, request_id, k->id, 1, 0) != ARS_OK)
            ars_log_msg(ARS_LOG_ERROR, request_id, "lease_release_lost",
                        "the compensating release could not be queued: the lease stays until its deadline");
        return err;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 6) {
        log_reply_error(request_id, "limits_admit_failed", rep);
        err = ARS_ERR_UNAVAILABLE;
        goto out;
    }
    long long v[6];
    for (size_t i = 0; i < 6; i++) {
        if (rep->element[i]->type != REDIS_REPLY_INTEGER) {
            log_reply_error(request_id, "limits_admit_failed", rep->element[i]);
            err = ARS_ERR_UNAVAILABLE;
            goto out;
        }
        v[i] = rep->element[i]->integer;
    }
    if (v[0] < ARS_LIMIT_OK || v[0] > ARS_LIMIT_TOTAL_COST) {
        err = ARS_ERR_UNAVAILABLE;
        goto out;
    }
    out->verdict = (enum ars_limit_verdict)v[0];
    out->retry_after_ms = v[1];
    out->reset_at_ms = v[2];
    out->current = v[3];
    out->limit = v[4];
    out->window_start_ms = v[5];
out:
    freeReplyObject(rep);
    return err;
}

enum ars_err ars_limits_refresh(struct ars_redis *r, const struct ars_config *cfg, const char *key_id,
                                const char *request_id, long long now_ms)
{
    char conc[ARS_LIMITS_KEY_MAX], deadline[24], lease[24];
    enum ars_err err = key_name(cfg, key_id, "conc", conc, sizeof(conc));
    if (err)
        return err;
    long long lease_ms = cfg->lease_ttl_seconds * 1000;
    snprintf(deadline, sizeof(deadline), "%lld", now_ms + lease_ms);
    snprintf(lease, sizeof(lease), "%lld", lease_ms);
    const char *kv[] = { conc, request_id, deadline, lease };
    redisReply *rep = NULL;
    err = ars_redis_eval(r, cfg, &refresh_script, &rep, 1, 3, kv, NULL);
    if (err)
        return err;
    if (rep->type != REDIS_REPLY_INTEGER) {
        log_reply_error(request_id, "limits_refresh_failed", rep);
        err = ARS_ERR_UNAVAILABLE;
    } else if (rep->integer == 0) {
        err = ARS_ERR_NOTFOUND;
    }
    freeReplyObject(rep);
    return err;
}

enum ars_err ars_limits_release(struct ars_redis *r, const struct ars_config *cfg, const char *key_id,
                                const char *request_id)
{
    char conc[ARS_LIMITS_KEY_MAX];
    enum ars_err err = key_name(cfg, key_id, "conc", conc, sizeof(conc));
    if (err)
        return err;
    const char *argv[] = { "ZREM", conc, request_id };
    redisReply *rep = NULL;
    err = ars_redis_cmd(r, cfg, &rep, 3, argv, NULL);
    if (err)
        return err;
    if (rep->type != REDIS_REPLY_INTEGER) {
        log_reply_error(request_id, "limits_release_failed", rep);
        err = ARS_ERR_UNAVAILABLE;
    }
    freeReplyObject(rep);
    return err;
}

/* Tombstone first, then the lease: a late admit script sees the one, an
 * early one's lease goes with the other. The tombstone lives as long as
 * a lease would (LEASE_TTL_SECONDS): a script that waited longer than
 * that in Redis would have left a lease that is expired anyway. */
static struct ars_redis_script cancel_script = ARS_REDIS_SCRIPT(
    "redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])\n"
    "return redis.call('ZREM', KEYS[1], ARGV[1])\n");

enum ars_err ars_limits_cancel(struct ars_redis *r, const struct ars_config *cfg, const char *key_id,
                               const char *request_id)
{
    char conc[ARS_LIMITS_KEY_MAX], cancel[ARS_LIMITS_KEY_MAX], ttl[24];
    enum ars_err err = key_name(cfg, key_id, "conc", conc, sizeof(conc));
    if (!err)
        err = cancel_key(cfg, key_id, request_id, cancel, sizeof(cancel));
    if (err)
        return err;
    snprintf(ttl, sizeof(ttl), "%lld", cfg->lease_ttl_seconds * 1000);
    const char *kv[] = { conc, cancel, request_id, ttl };
    redisReply *rep = NULL;
    err = ars_redis_eval(r, cfg, &cancel_script, &rep, 2, 2, kv, NULL);
    if (err)
        return err;
    if (rep->type != REDIS_REPLY_INTEGER) {
        log_reply_error(request_id, "limits_cancel_failed", rep);
        err = ARS_ERR_UNAVAILABLE;
    }
    freeReplyObject(rep);
    return err;
}

/* ---- what the client sees ---- */

static void append(char *out, size_t n, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void append(char *out, size_t n, size_t *len, const char *fmt, ...)
{
    if (*len >= n)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(out + *len, n - *len, fmt, ap);
    va_end(ap);
    if (w > 0)
        *len += (size_t)w < n - *len ? (size_t)w : n - *len - 1;
}

long long ars_limits_retry_after_seconds(const struct ars_admission *a)
{
    /* A concurrency slot frees when any in-flight request of the key ends,
     * which is usually seconds away; retry_after_ms is the oldest lease's
     * deadline (up to LEASE_TTL_SECONDS, 300 s) and only the worst case.
     * Clients sleep for what retry-after says: hint a short wait. */
    if (a->verdict == ARS_LIMIT_CONCURRENCY)
        return ARS_LIMITS_CONCURRENCY_RETRY_SECONDS;
    long long ms = a->retry_after_ms;
    if (ms <= 0)
        return 1;
    long long s = ms / 1000 + (ms % 1000 != 0);
    return s >= 1 ? s : 1;
}

void ars_limits_describe(const struct ars_admission *a, int *status, const char **error_type,
                         char *message, size_t n)
{
    size_t len = 0;
    char when[32], cur[40], lim[40];
    if (n)
        message[0] = '\0';
    ars_format_iso_utc(a->reset_at_ms, when, sizeof(when));
    long long secs = ars_limits_retry_after_seconds(a);
    switch (a->verdict) {
    case ARS_LIMIT_OK:
        *status = 200;
        *error_type = NULL;
        return;
    case ARS_LIMIT_CONCURRENCY:
        *status = 429;
        *error_type = "rate_limit_error";
        append(message, n, &len,
               "Concurrency limit reached: %lld of %lld requests already in flight for this API key. "
               "Retry after %lld s (a slot is free by %s at the latest).",
               a->current, a->limit, secs, when);
        return;
    case ARS_LIMIT_WINDOW_REQUESTS:
    case ARS_LIMIT_WINDOW_TOKENS:
        *status = 429;
        *error_type = "rate_limit_error";
        append(message, n, &len,
               "Rate limit reached: %lld of %lld %s used in the current window for this API key. "
               "The window resets at %s (in %lld s).",
               a->current, a->limit, a->verdict == ARS_LIMIT_WINDOW_REQUESTS ? "requests" : "tokens",
               when, secs);
        return;
    case ARS_LIMIT_WINDOW_COST:
        *status = 429;
        *error_type = "rate_limit_error";
        ars_format_dollars(a->current, cur, sizeof(cur));
        ars_format_dollars(a->limit, lim, sizeof(lim));
        append(message, n, &len,
               "Rate limit reached: %s of the %s cost limit used in the current window for this API key. "
               "The window resets at %s (in %lld s).",
               cur, lim, when, secs);
        return;
    case ARS_LIMIT_DAILY_COST:
    case ARS_LIMIT_WEEKLY_COST:
        *status = 402;
        *error_type = "billing_error";
        ars_format_dollars(a->current, cur, sizeof(cur));
        ars_format_dollars(a->limit, lim, sizeof(lim));
        append(message, n, &len,
               "%s cost limit reached: %s spent of the %s %s budget of this API key. It resets at %s.",
               a->verdict == ARS_LIMIT_DAILY_COST ? "Daily" : "Weekly", cur, lim,
               a->verdict == ARS_LIMIT_DAILY_COST ? "daily" : "weekly", when);
        return;
    case ARS_LIMIT_TOTAL_COST:
        *status = 402;
        *error_type = "billing_error";
        ars_format_dollars(a->current, cur, sizeof(cur));
        ars_format_dollars(a->limit, lim, sizeof(lim));
        append(message, n, &len,
               "Total cost limit reached: %s spent of the %s total budget of this API key. "
               "This budget does not reset; ask an administrator to raise it.",
               cur, lim);
        return;
    }
    *status = 500;
    *error_type = "api_error";
    append(message, n, &len, "Unknown limit verdict %d.", (int)a->verdict);
}
