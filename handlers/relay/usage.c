#include "usage.h"
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis.h>
#include <json.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "limits.h"
#include "log.h"
#include "redis.h"
#include "scheduler.h"

/* Exactly-once, and what it costs.
 *
 * The record's commands go out as one pipeline, not as MULTI/EXEC (its
 * keys live in many hash slots, which a transaction cannot span in a
 * Redis Cluster) and not as one script (same reason). Deduplication needs
 * to answer one question on a retry: did an earlier attempt of this
 * record reach Redis? Without a key per request:
 *  - Every worker thread is a "writer" with a random 64-bit id and a
 *    sequence number. A first attempt's pipeline starts with SET
 *    P usage:writer:WID SEQ EX 2 days. One connection runs its pipelines
 *    in order, so the register holds the sequence number of the last
 *    pipeline of that writer that started to apply.
 *  - A first attempt that fails keeps (WID, SEQ) with the record and
 *    the thread takes a NEW writer id, so nothing writes WID again: the
 *    register stays >= SEQ exactly when the failed pipeline reached Redis
 *    (its reply lost: a command timeout while Redis is slow), < SEQ (or
 *    gone) when it did not.
 *  - A retry (queue or spool) reads the register and the record's
 *    applied-marker P usage:done:RID in one round trip; either says
 *    "applied": skip. Otherwise the retry's pipeline starts with SET
 *    usage:done:RID 1 NX EX 2 days, so a retry of the retry (its reply
 *    lost, or the record queued and also spooled) is skipped too.
 * Cost: the normal path stays one round trip and leaves one key per
 * thread (overwritten per request) instead of one per request (~130
 * bytes each, 2.2 GB at a sustained 100 requests/s over the two days);
 * markers exist only for records that met an outage. Limits:
 *  - Redis applies a pipeline command by command, so a connection that
 *    broke half-way through the commands leaves the first part applied
 *    AND the register/marker set: the retry then skips the record and the
 *    remainder is lost. This needs the connection to break inside the
 *    few microseconds one pipeline takes to arrive; we accept it rather
 *    than double-count every "reply lost" case, which is far more common.
 *  - a retry later than ARS_USAGE_DONE_TTL_SECONDS after the attempt it
 *    repeats is no longer deduplicated (register or marker expired).
 *  - a Redis that lost its data lost the register and the counters
 *    together: the retry applies the record, which is then right.
 * A command error reply (WRONGTYPE on a damaged key) is logged and the
 * record counts as applied: retrying cannot fix it. An error reply to the
 * first command (OOM, READONLY after a failover) means Redis took no
 * writes: the record is kept for a retry. */

/* This thread's writer id (16 hex digits, "" until first used) and the
 * sequence number of its last first attempt. Thread-local because the
 * register's meaning rests on one connection's order, and each thread
 * has its own connection. */
static _Thread_local char writer_id[17];
static _Thread_local long long writer_seq;

static void writer_renew(void)
{
    static atomic_ullong fallback;
    unsigned long long v = 0;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
        v = ((unsigned long long)ars_mono_ms() << 20) ^ ((unsigned long long)getpid() << 44) ^
            atomic_fetch_add(&fallback, 0x9e3779b97f4a7c15ULL);
    snprintf(writer_id, sizeof(writer_id), "%016llx", v);
    writer_seq = 0;
}

/* ---- one record as a pipeline ---- */

#define PIPE_MAX_CMDS 128
#define PIPE_MAX_ARGS 512
#define PIPE_POOL     8192

struct pipe {
    int ncmds;
    int nargs;
    int cmd_start;
    int overflow;
    size_t used;
    int argcs[PIPE_MAX_CMDS];
    const char *const *argvs[PIPE_MAX_CMDS];
    const size_t *lens[PIPE_MAX_CMDS];
    const char *args[PIPE_MAX_ARGS];
    size_t arglens[PIPE_MAX_ARGS];
    char pool[PIPE_POOL];
};

static const char *p_fmt(struct pipe *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Formats into the pipe's pool; "" (and overflow set) when it is full. */
static const char *p_fmt(struct pipe *p, const char *fmt, ...)
{
    size_t room = sizeof(p->pool) - p->used;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->pool + p->used, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        p->overflow = 1;
        return "";
    }
    const char *s = p->pool + p->used;
    p->used += (size_t)n + 1;
    return s;
}

static const char *p_num(struct pipe *p, long long v)
{
    return p_fmt(p, "%lld", v);
}

static void p_arg(struct pipe *p, const char *s)
{
    if (p->nargs >= PIPE_MAX_ARGS) {
        p->overflow = 1;
        return;
    }
    p->args[p->nargs] = s;
    p->arglens[p->nargs] = strlen(s);
    p->nargs++;
}

static void p_begin(struct pipe *p)
{
    p->cmd_start = p->nargs;
}

static void p_end(struct pipe *p)
{
    if (p->ncmds >= PIPE_MAX_CMDS || p->overflow) {
        p->overflow = 1;
        return;
    }
    p->argcs[p->ncmds] = p->nargs - p->cmd_start;
    p->argvs[p->ncmds] = &p->args[p->cmd_start];
    p->lens[p->ncmds] = &p->arglens[p->cmd_start];
    p->ncmds++;
}

/* A command from its string arguments, NULL-terminated. */
static void p_cmd(struct pipe *p, ...) __attribute__((sentinel));

static void p_cmd(struct pipe *p, ...)
{
    va_list ap;
    va_start(ap, p);
    p_begin(p);
    for (const char *a = va_arg(ap, const char *); a; a = va_arg(ap, const char *))
        p_arg(p, a);
    va_end(ap);
    p_end(p);
}

/* The per-key part, one script under the key's hash tag {KID}. Sent as
 * EVAL with its text, not EVALSHA: inside a pipeline a NOSCRIPT (every
 * Redis restart) would need a second round trip after the marker was
 * already set, i.e. a window in which a crash loses this part; the ~1 KB
 * of text costs Redis one SHA1 per request, a few microseconds.
 * KEYS: key record, window, daily, weekly, total, lease zset.
 * ARGV: at_ms, tokens, cost, window (0/1), weekly (0/1), release (0/1),
 *       request id. */
static const char key_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then\n"
    "  local last = tonumber(redis.call('HGET', KEYS[1], 'last_used_at') or '') or 0\n"
    "  if tonumber(ARGV[1]) > last then redis.call('HSET', KEYS[1], 'last_used_at', ARGV[1]) end\n"
    "end\n"
    "if ARGV[4] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then\n"
    "  redis.call('HINCRBY', KEYS[2], 'tokens', ARGV[2])\n"
    "  redis.call('HINCRBY', KEYS[2], 'cost', ARGV[3])\n"
    "end\n"
    "if ARGV[3] ~= '0' then\n"
    "  redis.call('INCRBY', KEYS[3], ARGV[3])\n"
    "  redis.call('EXPIRE', KEYS[3], ARGV[8])\n"
    "  if ARGV[5] == '1' then\n"
    "    redis.call('INCRBY', KEYS[4], ARGV[3])\n"
    "    redis.call('EXPIRE', KEYS[4], ARGV[9])\n"
    "  end\n"
    "  redis.call('INCRBY', KEYS[5], ARGV[3])\n"
    "end\n"
    "if ARGV[6] == '1' then redis.call('ZREM', KEYS[6], ARGV[7]) end\n"
    "return 1\n";

static long long clamp0(long long v)
{
    return v > 0 ? v : 0;
}

static void utc(long long ms, struct tm *tm)
{
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000));
    memset(tm, 0, sizeof(*tm));
    gmtime_r(&t, tm);
}

/* One entity's four buckets (hour, day, month, total) in one EVAL: a
 * few hundred bytes instead of up to 28 HINCRBY/EXPIRE commands for
 * hiredis to format and Redis to parse. The keys share the entity's hash
 * tag, so the script stays cluster-safe. Token fields that are 0 are not
 * sent. The script text goes with each call (EVAL, not EVALSHA): Redis
 * keeps it compiled, and a restarted Redis cannot answer NOSCRIPT halfway
 * through a pipeline whose applied-marker is already set. */
static const char counters_script[] =
    "for i = 1, 4 do\n"
    "  for j = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[i], ARGV[j], ARGV[j + 1]) end\n"
    "end\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[1])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[2])\n"
    "return 1\n";

static void add_entity(struct pipe *p, const struct ars_config *cfg, const char *kind, const char *id,
                       const struct tm *tm, const char *const vals[7], const long long nums[7])
{
    static const char *const fields[7] = { "requests", "input", "output", "cache_5m", "cache_1h",
                                           "cache_read", "cost" };
    int y = tm->tm_year + 1900, mo = tm->tm_mon + 1;
    const char *pre = cfg->redis_key_prefix;
    p_begin(p);
    p_arg(p, "EVAL");
    p_arg(p, counters_script);
    p_arg(p, "4");
    p_arg(p, p_fmt(p, "%susage:%s:{%s}:h:%04d%02d%02d%02d", pre, kind, id, y, mo, tm->tm_mday, tm->tm_hour));
    p_arg(p, p_fmt(p, "%susage:%s:{%s}:d:%04d%02d%02d", pre, kind, id, y, mo, tm->tm_mday));
    p_arg(p, p_fmt(p, "%susage:%s:{%s}:m:%04d%02d", pre, kind, id, y, mo));
    p_arg(p, p_fmt(p, "%susage:%s:{%s}:total", pre, kind, id));
    p_arg(p, p_num(p, ARS_USAGE_HOUR_TTL_SECONDS));
    p_arg(p, p_num(p, ARS_USAGE_DAY_TTL_SECONDS));
    for (int i = 0; i < 7; i++) {
        if (nums[i] != 0) {
            p_arg(p, fields[i]);
            p_arg(p, vals[i]);
        }
    }
    p_end(p);
}

/* The model counters' name for rec (see ARS_USAGE_MODEL_KEY_MAX): a
 * bounded set, whatever names clients send. Matching ignores case, so a
 * name the table knows is counted in the table's spelling. */
static const char *model_bucket(const struct ars_usage_record *rec)
{
    const struct ars_pricing *table = ars_pricing_current();
    enum ars_price_match how = ARS_PRICE_DEFAULT;
    const char *name = rec->model;
    /* No table only outside the relay (which does not start without one):
     * tools and tests get the name, still length- and charset-checked. */
    const struct ars_model_price *m = table ? ars_pricing_lookup(table, rec->model, &how) : NULL;
    if (table && how == ARS_PRICE_DEFAULT)
        return ARS_USAGE_MODEL_OTHER;
    if (m && how == ARS_PRICE_EXACT)
        name = m->id;
    if (m && how == ARS_PRICE_ALIAS)
        for (size_t a = 0; a < m->n_aliases; a++)
            if (strcasecmp(m->aliases[a], rec->model) == 0)
                name = m->aliases[a];
    /* A dated id is only as bounded as the upstream's list of models:
     * unconfirmed (no 2xx), the family's priced id counts it. */
    if (m && how == ARS_PRICE_PREFIX && !(rec->status >= 200 && rec->status < 300))
        name = m->id;
    size_t n = strnlen(name, ARS_USAGE_MODEL_KEY_MAX);
    if (n == ARS_USAGE_MODEL_KEY_MAX)
        return ARS_USAGE_MODEL_OTHER;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= ' ' || c >= 0x7f || c == '{' || c == '}')
            return ARS_USAGE_MODEL_OTHER;
    }
    return name;
}

/* Fills p with every command of rec: first the attempt register (a
 * first attempt) or the applied-marker (a retry). */
static enum ars_err build(struct pipe *p, const struct ars_config *cfg, const struct ars_usage_record *rec,
                          int retry)
{
    memset(p, 0, offsetof(struct pipe, argcs));
    const char *pre = cfg->redis_key_prefix;
    const struct ars_usage *u = &rec->usage;
    long long in = clamp0(u->input), outp = clamp0(u->output), c5 = clamp0(u->cache_write_5m);
    long long c1 = clamp0(u->cache_write_1h), cr = clamp0(u->cache_read), cost = clamp0(rec->cost_micros);
    const long long nums[7] = { 1, in, outp, c5, c1, cr, cost };
    const char *vals[7];
    for (int i = 0; i < 7; i++)
        vals[i] = p_num(p, nums[i]);
    struct tm tm;
    utc(rec->at_ms, &tm);

    if (retry)
        p_cmd(p, "SET", p_fmt(p, "%susage:done:%s", pre, rec->request_id), "1", "NX", "EX",
              p_num(p, ARS_USAGE_DONE_TTL_SECONDS), (char *)NULL);
    else
        p_cmd(p, "SET", p_fmt(p, "%susage:writer:%s", pre, rec->attempt_writer), p_num(p, rec->attempt_seq), "EX",
              p_num(p, ARS_USAGE_DONE_TTL_SECONDS), (char *)NULL);

    add_entity(p, cfg, "key", rec->key_id, &tm, vals, nums);
    if (rec->account_id[0])
        add_entity(p, cfg, "account", rec->account_id, &tm, vals, nums);
    if (rec->model[0])
        add_entity(p, cfg, "model", model_bucket(rec), &tm, vals, nums);

    char day[9], lease[ARS_LIMITS_KEY_MAX];
    ars_day_bucket(rec->at_ms, day);
    ars_limits_lease_key(cfg, rec->key_id, lease, sizeof(lease));
    const char *kid = rec->key_id;
    p_begin(p);
    p_arg(p, "EVAL");
    p_arg(p, key_script);
    p_arg(p, "6");
    p_arg(p, p_fmt(p, "%skey:{%s}", pre, kid));
    p_arg(p, p_fmt(p, "%slim:{%s}:win", pre, kid));
    p_arg(p, p_fmt(p, "%slim:{%s}:cost:d:%s", pre, kid, day));
    p_arg(p, p_fmt(p, "%slim:{%s}:cost:w:%lld", pre, kid, rec->week_start_ms));
    p_arg(p, p_fmt(p, "%slim:{%s}:cost:total", pre, kid));
    p_arg(p, p_fmt(p, "%s", lease));
    p_arg(p, p_num(p, rec->at_ms));
    p_arg(p, p_num(p, in + outp + c5 + c1 + cr));
    p_arg(p, vals[6]);
    p_arg(p, rec->window_active ? "1" : "0");
    p_arg(p, rec->week_start_ms > 0 ? "1" : "0");
    p_arg(p, rec->release_key_lease ? "1" : "0");
    p_arg(p, rec->request_id);
    p_arg(p, p_num(p, ARS_LIMITS_DAILY_TTL_SECONDS));
    p_arg(p, p_num(p, ARS_LIMITS_WEEKLY_TTL_SECONDS));
    p_end(p);

    p_begin(p);
    p_arg(p, "XADD");
    p_arg(p, p_fmt(p, "%sreqlog", pre));
    p_arg(p, "MAXLEN");
    p_arg(p, "~");
    p_arg(p, p_num(p, cfg->request_log_max));
    p_arg(p, "*");
    const char *const strs[][2] = {
        { "ts", p_num(p, rec->at_ms) },       { "request_id", rec->request_id },
        { "key_id", rec->key_id },            { "account_id", rec->account_id },
        { "model", rec->model },              { "family", rec->route_family },
        { "input", vals[1] },                 { "output", vals[2] },
        { "cache_5m", vals[3] },              { "cache_1h", vals[4] },
        { "cache_read", vals[5] },            { "cost_micros", vals[6] },
        { "status", p_num(p, rec->status) },  { "duration_ms", p_num(p, rec->duration_ms) },
        { "ttfb_ms", p_num(p, rec->ttfb_ms) }, { "stream", rec->stream ? "1" : "0" },
        { "client", rec->client },
    };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        p_arg(p, strs[i][0]);
        p_arg(p, strs[i][1]);
    }
    p_end(p);

    if (rec->release_account_lease && rec->account_id[0])
        p_cmd(p, "ZREM", p_fmt(p, "%spool:{pool}:conc:%s", pre, rec->account_id), rec->request_id, (char *)NULL);
    return p->overflow ? ARS_ERR_TOOBIG : ARS_OK;
}

static void log_reply_errors(const struct ars_usage_record *rec, const struct pipe *p, redisReply **reps)
{
    for (int i = 1; i < p->ncmds; i++) {
        if (reps[i]->type != REDIS_REPLY_ERROR)
            continue;
        struct ars_logline l;
        ars_log_begin(&l, ARS_LOG_WARN, rec->request_id, "usage_command_failed");
        ars_log_str(&l, "command", p->argvs[i][0]);
        ars_log_str(&l, "key", p->argcs[i] > 1 && strcmp(p->argvs[i][0], "EVAL") ? p->argvs[i][1] : "");
        ars_log_strn(&l, "redis_error", reps[i]->str, reps[i]->len);
        ars_log_end(&l);
    }
}

/* A compensating release (rec->cancel): both parts are idempotent. */
static enum ars_err apply_cancel(struct ars_redis *r, const struct ars_config *cfg,
                                 const struct ars_usage_record *rec, char *why, size_t whylen)
{
    enum ars_err err = ARS_OK;
    if (rec->release_key_lease)
        err = ars_limits_cancel(r, cfg, rec->key_id, rec->request_id);
    if (!err && rec->release_account_lease)
        err = ars_sched_cancel(r, cfg, rec->request_id);
    if (err == ARS_ERR_TOOBIG)
        return err;   /* cannot succeed later either */
    if (err) {
        snprintf(why, whylen, "%s", ars_redis_error(r));
        return ARS_ERR_UNAVAILABLE;
    }
    ars_log_msg(ARS_LOG_INFO, rec->request_id, "lease_cancelled",
                "compensating release applied after a Redis failure during admission or pick");
    return ARS_OK;
}

/* One round trip: did an earlier attempt of rec reach Redis? The
 * record's applied-marker (set by a retry) or its first attempt's
 * register at or past its sequence number says so. */
static enum ars_err already_applied(struct ars_redis *r, const struct ars_config *cfg,
                                    const struct ars_usage_record *rec, int *done, char *why, size_t whylen)
{
    *done = 0;
    char marker[256], reg[256];
    snprintf(marker, sizeof(marker), "%susage:done:%s", cfg->redis_key_prefix, rec->request_id);
    snprintf(reg, sizeof(reg), "%susage:writer:%s", cfg->redis_key_prefix, rec->attempt_writer);
    const char *exists[] = { "EXISTS", marker };
    const char *get[] = { "GET", reg };
    const int argcs[] = { 2, 2 };
    const char *const *argvs[] = { exists, get };
    int ncmds = rec->attempt_writer[0] ? 2 : 1;
    redisReply *reps[2] = { NULL, NULL };
    enum ars_err err = ars_redis_pipeline(r, cfg, ncmds, argcs, argvs, NULL, reps);
    if (err) {
        snprintf(why, whylen, "%s", ars_redis_error(r));
        return err;
    }
    if (reps[0]->type != REDIS_REPLY_INTEGER || (ncmds == 2 && reps[1]->type != REDIS_REPLY_STRING &&
                                                 reps[1]->type != REDIS_REPLY_NIL)) {
        snprintf(why, whylen, "reading the applied-marker failed");
        err = ARS_ERR_UNAVAILABLE;
    } else {
        *done = reps[0]->integer == 1 ||
                (ncmds == 2 && reps[1]->type == REDIS_REPLY_STRING &&
                 strtoll(reps[1]->str, NULL, 10) >= rec->attempt_seq);
    }
    for (int i = 0; i < ncmds; i++)
        freeReplyObject(reps[i]);
    return err;
}

/* Applies one record. retry: look for an earlier attempt first and set
 * *skipped instead of writing again. A first attempt must carry its
 * attempt register (attempt_writer, attempt_seq). */
static enum ars_err apply(struct ars_redis *r, const struct ars_config *cfg, const struct ars_usage_record *rec,
                          int retry, int *skipped, char *why, size_t whylen)
{
    *skipped = 0;
    why[0] = '\0';
    if (rec->cancel)
        return apply_cancel(r, cfg, rec, why, whylen);
    struct pipe *p = malloc(sizeof(*p));
    redisReply **reps = NULL;
    enum ars_err err = ARS_ERR_NOMEM;
    if (!p)
        goto out;
    err = build(p, cfg, rec, retry);
    if (err) {
        snprintf(why, whylen, "record too large for a pipeline");
        ars_log_msg(ARS_LOG_ERROR, rec->request_id, "usage_record_too_large",
                    "usage record does not fit a pipeline (REDIS_KEY_PREFIX or model id too long)");
        goto out;
    }
    if (retry) {
        int done;
        err = already_applied(r, cfg, rec, &done, why, whylen);
        if (err)
            goto out;
        if (done) {
            *skipped = 1;
            goto out;
        }
    }
    reps = calloc((size_t)p->ncmds, sizeof(*reps));
    if (!reps) {
        err = ARS_ERR_NOMEM;
        goto out;
    }
    err = ars_redis_pipeline(r, cfg, p->ncmds, p->argcs, p->argvs, p->lens, reps);
    if (err) {
        snprintf(why, whylen, "%s", ars_redis_error(r));
        goto out;
    }
    if (reps[0]->type == REDIS_REPLY_ERROR) {
        struct ars_logline l;
        ars_log_begin(&l, ARS_LOG_WARN, rec->request_id, "usage_write_refused");
        ars_log_strn(&l, "redis_error", reps[0]->str, reps[0]->len);
        ars_log_end(&l);
        snprintf(why, whylen, "redis refused the write: %.*s", (int)(reps[0]->len > 200 ? 200 : reps[0]->len),
                 reps[0]->str);
        err = ARS_ERR_UNAVAILABLE;
        goto out;
    }
    if (reps[0]->type == REDIS_REPLY_NIL && retry)
        ars_log_msg(ARS_LOG_WARN, rec->request_id, "usage_duplicate",
                    "a usage record with this request id was already applied");
    log_reply_errors(rec, p, reps);
out:
    if (reps && p) {
        for (int i = 0; i < p->ncmds; i++)
            freeReplyObject(reps[i]);
    }
    free(reps);
    free(p);
    return err;
}

/* ---- the spool file: one record per line as JSON ---- */

enum fkind { F_STR, F_LL, F_INT };
struct rfield {
    const char *name;
    size_t off;
    size_t size;
    enum fkind kind;
};
#define FS(n, m) { n, offsetof(struct ars_usage_record, m), sizeof(((struct ars_usage_record *)0)->m), F_STR }
#define FL(n, m) { n, offsetof(struct ars_usage_record, m), 0, F_LL }
#define FI(n, m) { n, offsetof(struct ars_usage_record, m), 0, F_INT }
static const struct rfield rfields[] = {
    FS("request_id", request_id), FS("key_id", key_id), FS("account_id", account_id), FS("model", model),
    FS("family", route_family), FL("input", usage.input), FL("output", usage.output),
    FL("cache_5m", usage.cache_write_5m), FL("cache_1h", usage.cache_write_1h),
    FL("cache_read", usage.cache_read), FI("fast", usage.fast), FL("cost_micros", cost_micros),
    FI("status", status), FL("duration_ms", duration_ms), FL("ttfb_ms", ttfb_ms), FI("stream", stream),
    FS("client", client), FL("at_ms", at_ms), FI("window_active", window_active),
    FL("week_start_ms", week_start_ms), FI("release_key_lease", release_key_lease),
    FI("release_account_lease", release_account_lease), FI("cancel", cancel),
    FS("attempt_writer", attempt_writer), FL("attempt_seq", attempt_seq),
};
#define NRFIELDS (sizeof(rfields) / sizeof(rfields[0]))

static json_object *record_to_json(const struct ars_usage_record *rec)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    const char *base = (const char *)rec;
    for (size_t i = 0; i < NRFIELDS; i++) {
        const struct rfield *f = &rfields[i];
        json_object *v;
        if (f->kind == F_STR)
            v = json_object_new_string(base + f->off);
        else if (f->kind == F_LL)
            v = json_object_new_int64(*(const long long *)(const void *)(base + f->off));
        else
            v = json_object_new_int(*(const int *)(const void *)(base + f->off));
        if (!v || json_object_object_add(o, f->name, v)) {
            json_object_put(v);
            json_object_put(o);
            return NULL;
        }
    }
    return o;
}

/* 0 when line is a record with its request and key ids. */
static int record_from_json(const char *line, size_t len, struct ars_usage_record *rec)
{
    memset(rec, 0, sizeof(*rec));
    struct json_tokener *tok = json_tokener_new();
    json_object *o = tok ? json_tokener_parse_ex(tok, line, (int)len) : NULL;
    json_tokener_free(tok);
    int bad = !o || !json_object_is_type(o, json_type_object);
    char *base = (char *)rec;
    for (size_t i = 0; i < NRFIELDS && !bad; i++) {
        const struct rfield *f = &rfields[i];
        json_object *v;
        if (!json_object_object_get_ex(o, f->name, &v))
            continue;
        if (f->kind == F_STR) {
            const char *s = json_object_get_string(v);
            size_t n = s ? strlen(s) : 0;
            if (n >= f->size)
                bad = 1;
            else
                memcpy(base + f->off, s, n + 1);
        } else if (f->kind == F_LL) {
            *(long long *)(void *)(base + f->off) = (long long)json_object_get_int64(v);
        } else {
            *(int *)(void *)(base + f->off) = json_object_get_int(v);
        }
    }
    json_object_put(o);
    return bad || !rec->request_id[0] || !rec->key_id[0] ? -1 : 0;
}

static int write_all(int fd, const char *buf, size_t n)
{
    while (n) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

static void fsync_dir_of(const char *path)
{
    char copy[4096];
    snprintf(copy, sizeof(copy), "%s", path);
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

/* The spool is trusted input: every line in it charges a key. So only a
 * file that the relay's own user wrote is ever read or extended: the
 * directory must be a real directory (not a symlink) owned by that user
 * and writable by nobody else, and the file a regular file (opened with
 * O_NOFOLLOW) of that user with mode 0600. The old default,
 * /var/tmp/ai-relay-usage.spool, sat in a world-writable directory where
 * any local user could plant a spool naming any key. */
static int spool_dir_check(const char *path, int create, const char **why)
{
    char copy[4096];
    if (snprintf(copy, sizeof(copy), "%s", path) >= (int)sizeof(copy)) {
        *why = "USAGE_SPOOL_FILE is too long";
        return -1;
    }
    const char *dir = dirname(copy);
    struct stat st;
    if (lstat(dir, &st) != 0 && errno == ENOENT && create) {
        /* Only the last component: the state directory above it is the
         * installer's to make. */
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            *why = "cannot create the spool directory";
            return -1;
        }
    }
    if (lstat(dir, &st) != 0) {
        *why = errno == ENOENT ? "the spool directory does not exist" : "cannot stat the spool directory";
        return errno == ENOENT ? 1 : -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        *why = "the spool directory is a symlink or not a directory";
        return -1;
    }
    if (st.st_uid != geteuid()) {
        *why = "the spool directory belongs to another user";
        return -1;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        *why = "the spool directory is writable by group or others";
        return -1;
    }
    return 0;
}

/* fd is the spool: a regular file of ours, mode 0600 (an empty one of
 * ours is fixed up: it carries nothing anyone could have planted). */
static int spool_file_check(int fd, int fix_empty, const char **why)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        *why = "cannot stat the spool file";
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        *why = "the spool file is not a regular file";
        return -1;
    }
    if (st.st_uid != geteuid()) {
        *why = "the spool file belongs to another user";
        return -1;
    }
    if ((st.st_mode & 07777) != 0600) {
        if (fix_empty && st.st_size == 0 && fchmod(fd, 0600) == 0)
            return 0;
        *why = "the spool file's mode is not 0600";
        return -1;
    }
    return 0;
}

static void log_spool_refused(const char *path, const char *why)
{
    struct ars_logline l;
    ars_log_begin(&l, ARS_LOG_ERROR, NULL, "usage_spool_refused");
    ars_log_str(&l, "path", path);
    ars_log_str(&l, "reason", why);
    ars_log_end(&l);
}

/* Appends recs to the spool file under its lock; fsync'd before the lock
 * goes. 0 on success, else errno-style failure with *why set. */
static int spool_append(const char *path, const struct ars_usage_record *const *recs, size_t n, const char **why)
{
    *why = NULL;
    if (!path || !path[0]) {
        *why = "USAGE_SPOOL_FILE is empty (memory only)";
        return -1;
    }
    if (spool_dir_check(path, 1, why) != 0) {
        log_spool_refused(path, *why);
        return -1;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        *why = errno == ELOOP ? "the spool file is a symlink" : strerror(errno);
        if (errno == ELOOP)
            log_spool_refused(path, *why);
        return -1;
    }
    if (spool_file_check(fd, 1, why) != 0) {
        log_spool_refused(path, *why);
        close(fd);
        return -1;
    }
    int rc = -1;
    struct stat st;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            *why = strerror(errno);
            goto out;
        }
    }
    int fresh = fstat(fd, &st) == 0 && st.st_size == 0;
    for (size_t i = 0; i < n; i++) {
        json_object *o = record_to_json(recs[i]);
        if (!o) {
            *why = "out of memory";
            goto unlock;
        }
        size_t len;
        const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
        int w = write_all(fd, text, len) || write_all(fd, "\n", 1);
        json_object_put(o);
        if (w) {
            *why = strerror(errno);
            goto unlock;
        }
    }
    if (fsync(fd) != 0) {
        *why = strerror(errno);
        goto unlock;
    }
    if (fresh)
        fsync_dir_of(path);
    rc = 0;
unlock:
    flock(fd, LOCK_UN);
out:
    close(fd);
    return rc;
}

static void log_spooled(const char *path, size_t n, const char *why)
{
    struct ars_logline l;
    ars_log_begin(&l, why ? ARS_LOG_ERROR : ARS_LOG_WARN, NULL, why ? "usage_lost" : "usage_spooled");
    ars_log_int(&l, why ? "lost" : "spooled", (long long)n);
    ars_log_str(&l, "path", path ? path : "");
    if (why)
        ars_log_str(&l, "error", why);
    ars_log_end(&l);
}

/* ---- the in-memory queue ---- */

struct qnode {
    struct qnode *next;
    struct ars_usage_record rec;
};

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static struct qnode *q_head, *q_tail;
static size_t q_count;
/* One flusher at a time keeps the queue in order. */
static pthread_mutex_t flush_lock = PTHREAD_MUTEX_INITIALIZER;
/* Monotonic ms until which Redis counts as down (records queue directly). */
static _Atomic long long down_until;


size_t ars_usage_queued(void)
{
    pthread_mutex_lock(&q_lock);
    size_t n = q_count;
    pthread_mutex_unlock(&q_lock);
    return n;
}

/* Keeps rec for a retry: memory while there is room, else the spool. */
static enum ars_err keep(const struct ars_config *cfg, const struct ars_usage_record *rec, const char *reason)
{
    struct qnode *node = malloc(sizeof(*node));
    size_t was = 0;
    int queued = 0;
    if (node) {
        node->rec = *rec;
        node->next = NULL;
        pthread_mutex_lock(&q_lock);
        if (q_count < ARS_USAGE_QUEUE_MAX) {
            was = q_count;
            if (q_tail)
                q_tail->next = node;
            else
                q_head = node;
            q_tail = node;
            q_count++;
            queued = 1;
        }
        pthread_mutex_unlock(&q_lock);
    }
    if (queued) {
        /* One line when a backlog starts; the flusher reports the rest. */
        if (was == 0) {
            struct ars_logline l;
            ars_log_begin(&l, ARS_LOG_WARN, rec->request_id, "usage_queued");
            ars_log_int(&l, "queued", 1);
            ars_log_str(&l, "reason", reason);
            ars_log_end(&l);
        }
        return ARS_OK;
    }
    free(node);
    const char *why;
    const struct ars_usage_record *one[] = { rec };
    int rc = spool_append(cfg->usage_spool_file, one, 1, &why);
    log_spooled(cfg->usage_spool_file, 1, rc ? why : NULL);
    return rc ? ARS_ERR_IO : ARS_OK;
}

static int valid_record(const struct ars_usage_record *rec)
{
    return rec->request_id[0] && memchr(rec->request_id, 0, sizeof(rec->request_id)) && rec->key_id[0] &&
           memchr(rec->key_id, 0, sizeof(rec->key_id)) && memchr(rec->account_id, 0, sizeof(rec->account_id)) &&
           memchr(rec->model, 0, sizeof(rec->model)) && memchr(rec->route_family, 0, sizeof(rec->route_family)) &&
           memchr(rec->client, 0, sizeof(rec->client));
}

enum ars_err ars_usage_record(struct ars_redis *r, const struct ars_config *cfg, const struct ars_usage_record *rec)
{
    if (!valid_record(rec))
        return ARS_ERR_INVALID;
    struct ars_usage_record cur = *rec;
    cur.attempt_writer[0] = '\0';
    cur.attempt_seq = 0;
    if (atomic_load(&down_until) > ars_mono_ms())
        return keep(cfg, &cur, "redis unavailable (recent failure)");
    if (!writer_id[0])
        writer_renew();
    snprintf(cur.attempt_writer, sizeof(cur.attempt_writer), "%s", writer_id);
    cur.attempt_seq = ++writer_seq;
    int skipped;
    char why[256];
    enum ars_err err = apply(r, cfg, &cur, 0, &skipped, why, sizeof(why));
    if (err == ARS_OK || err == ARS_ERR_TOOBIG)
        return err;
    /* The failed pipeline may still reach Redis: its register must never
     * move again, so this thread writes under a new id from now on. */
    writer_renew();
    atomic_store(&down_until, ars_mono_ms() + 1000);
    return keep(cfg, &cur, why[0] ? why : ars_err_str(err));
}

enum ars_err ars_usage_cancel_later(const struct ars_config *cfg, const char *request_id, const char *key_id,
                                    int key_lease, int pool_lease)
{
    struct ars_usage_record rec;
    memset(&rec, 0, sizeof(rec));
    snprintf(rec.request_id, sizeof(rec.request_id), "%s", request_id ? request_id : "");
    snprintf(rec.key_id, sizeof(rec.key_id), "%s", key_id && *key_id ? key_id : "-");
    rec.release_key_lease = key_lease;
    rec.release_account_lease = pool_lease;
    rec.cancel = 1;
    rec.at_ms = ars_wall_ms();
    if (!valid_record(&rec) || (!key_lease && !pool_lease))
        return ARS_ERR_INVALID;
    /* Not tried now: Redis just failed this request, and the point is to
     * arrive after the script that may still be waiting there. */
    return keep(cfg, &rec, "compensating lease release after a Redis failure");
}

/* Retries the queue until it is empty, Redis fails, or deadline (monotonic
 * ms, 0: none) passes. */
static enum ars_err flush_until(struct ars_redis *r, const struct ars_config *cfg,
                                struct ars_usage_flush_result *res, long long deadline)
{
    memset(res, 0, sizeof(*res));
    enum ars_err err = ARS_OK;
    pthread_mutex_lock(&flush_lock);
    for (;;) {
        if (deadline && ars_mono_ms() > deadline)
            break;
        pthread_mutex_lock(&q_lock);
        struct qnode *node = q_head;
        if (node) {
            q_head = node->next;
            if (!q_head)
                q_tail = NULL;
            q_count--;
        }
        pthread_mutex_unlock(&q_lock);
        if (!node)
            break;
        int skipped;
        err = apply(r, cfg, &node->rec, 1, &skipped, res->error, sizeof(res->error));
        if (err == ARS_OK || err == ARS_ERR_TOOBIG) {
            if (err == ARS_OK && skipped)
                res->skipped++;
            else if (err == ARS_OK)
                res->applied++;
            free(node);
            err = ARS_OK;
            continue;
        }
        /* Back to the front: order is kept. */
        pthread_mutex_lock(&q_lock);
        node->next = q_head;
        q_head = node;
        if (!q_tail)
            q_tail = node;
        q_count++;
        pthread_mutex_unlock(&q_lock);
        atomic_store(&down_until, ars_mono_ms() + 1000);
        break;
    }
    if (err == ARS_OK)
        atomic_store(&down_until, 0);
    pthread_mutex_unlock(&flush_lock);
    res->left = ars_usage_queued();
    return err;
}

enum ars_err ars_usage_flush(struct ars_redis *r, const struct ars_config *cfg, struct ars_usage_flush_result *res)
{
    return flush_until(r, cfg, res, 0);
}

/* ---- replaying the spool ---- */

static int read_all(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, buf + got, n - got, (off_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return 0;
}

static int pwrite_all(int fd, const char *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t k = pwrite(fd, buf + done, n - done, (off_t)done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        done += (size_t)k;
    }
    return 0;
}

static void log_replay(const char *path, const struct ars_usage_flush_result *res, const char *error)
{
    struct ars_logline l;
    ars_log_begin(&l, error ? ARS_LOG_WARN : ARS_LOG_INFO, NULL, "usage_replayed");
    ars_log_str(&l, "path", path);
    ars_log_int(&l, "applied", (long long)res->applied);
    ars_log_int(&l, "skipped", (long long)res->skipped);
    ars_log_int(&l, "bad", (long long)res->bad);
    ars_log_int(&l, "left", (long long)res->left);
    if (error)
        ars_log_str(&l, "error", error);
    ars_log_end(&l);
}

/* The file is rewritten in place (the consumed head cut off) while the
 * lock is held: a rename would break the lock for processes that already
 * opened the old file. A crash in the middle of the rewrite can leave a
 * line twice (the marker skips the second copy) or a torn line (logged
 * as bad and dropped). */
enum ars_err ars_usage_replay_spool(struct ars_redis *r, const struct ars_config *cfg,
                                    struct ars_usage_flush_result *res, int *busy)
{
    memset(res, 0, sizeof(*res));
    if (busy)
        *busy = 0;
    const char *path = cfg->usage_spool_file;
    if (!path || !path[0])
        return ARS_OK;
    const char *why;
    int dc = spool_dir_check(path, 0, &why);
    if (dc > 0)
        return ARS_OK;   /* no directory: no spool */
    if (dc < 0) {
        log_spool_refused(path, why);
        return ARS_ERR_INVALID;
    }
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ELOOP) {
        log_spool_refused(path, "the spool file is a symlink");
        return ARS_ERR_INVALID;
    }
    if (fd < 0)
        return errno == ENOENT ? ARS_OK : ARS_ERR_IO;
    if (spool_file_check(fd, 0, &why) != 0) {
        log_spool_refused(path, why);
        close(fd);
        return ARS_ERR_INVALID;
    }
    enum ars_err err = ARS_OK;
    char *buf = NULL;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (busy)
            *busy = 1;
        close(fd);
        return ARS_OK;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        err = ARS_ERR_IO;
        goto out;
    }
    if (st.st_size == 0)
        goto out;
    if (st.st_size > ARS_USAGE_SPOOL_MAX_BYTES) {
        ars_log_msg(ARS_LOG_ERROR, NULL, "usage_spool_too_large",
                    "USAGE_SPOOL_FILE is larger than ARS_USAGE_SPOOL_MAX_BYTES; not replayed");
        err = ARS_ERR_TOOBIG;
        goto out;
    }
    size_t size = (size_t)st.st_size;
    buf = malloc(size + 1);
    if (!buf) {
        err = ARS_ERR_NOMEM;
        goto out;
    }
    if (read_all(fd, buf, size)) {
        err = ARS_ERR_IO;
        goto out;
    }
    buf[size] = '\0';
    size_t pos = 0, records = 0;
    while (pos < size && records < ARS_USAGE_REPLAY_BATCH) {
        char *nl = memchr(buf + pos, '\n', size - pos);
        size_t len = (nl ? (size_t)(nl - buf) : size) - pos;
        size_t next = pos + len + (nl ? 1 : 0);
        if (len == 0) {
            pos = next;
            continue;
        }
        struct ars_usage_record rec;
        if (len > ARS_USAGE_SPOOL_LINE_MAX || record_from_json(buf + pos, len, &rec) != 0) {
            res->bad++;
            ars_log_msg(ARS_LOG_ERROR, NULL, "usage_spool_bad_line", "a spool line is not a usage record; dropped");
            pos = next;
            continue;
        }
        int skipped;
        enum ars_err e = apply(r, cfg, &rec, 1, &skipped, res->error, sizeof(res->error));
        if (e != ARS_OK && e != ARS_ERR_TOOBIG) {
            err = e;
            break;
        }
        if (e == ARS_OK && skipped)
            res->skipped++;
        else if (e == ARS_OK)
            res->applied++;
        records++;
        pos = next;
    }
    if (pos > 0) {
        size_t rest = size - pos;
        memmove(buf, buf + pos, rest);
        if ((rest && pwrite_all(fd, buf, rest)) || ftruncate(fd, (off_t)rest) != 0 || fsync(fd) != 0) {
            err = ARS_ERR_IO;
            goto out;
        }
        for (size_t i = 0; i < rest; i++)
            res->left += buf[i] == '\n';
        if (rest && buf[rest - 1] != '\n')
            res->left++;
    } else {
        for (size_t i = 0; i < size; i++)
            res->left += buf[i] == '\n';
    }
    if (res->applied || res->skipped || res->bad || err)
        log_replay(path, res, err ? (res->error[0] ? res->error : ars_err_str(err)) : NULL);
out:
    free(buf);
    flock(fd, LOCK_UN);
    close(fd);
    return err;
}

/* ---- background thread ---- */

static pthread_t usage_thread;
static atomic_int usage_stop_flag;
static int usage_started;

static int spool_nonempty(const struct ars_config *cfg)
{
    struct stat st;
    return cfg->usage_spool_file && cfg->usage_spool_file[0] && stat(cfg->usage_spool_file, &st) == 0 &&
           st.st_size > 0;
}

static void *usage_main(void *arg)
{
    (void)arg;
    struct ars_redis *r = ars_redis_new();
    if (!r)
        return NULL;
    int was_failing = 0;
    long long next_replay = 0;
    while (!atomic_load(&usage_stop_flag)) {
        const struct ars_config *cfg = ars_config_current();
        if (cfg && ars_usage_queued() > 0) {
            struct ars_usage_flush_result res;
            enum ars_err e = flush_until(r, cfg, &res, ars_mono_ms() + 5000);
            if (res.applied || res.skipped || (e && !was_failing)) {
                struct ars_logline l;
                ars_log_begin(&l, e ? ARS_LOG_WARN : ARS_LOG_INFO, NULL, "usage_flush");
                ars_log_int(&l, "applied", (long long)res.applied);
                ars_log_int(&l, "skipped", (long long)res.skipped);
                ars_log_int(&l, "left", (long long)res.left);
                if (e)
                    ars_log_str(&l, "error", res.error);
                ars_log_end(&l);
            }
            was_failing = e != ARS_OK;
        }
        if (cfg && !was_failing && ars_usage_queued() == 0 && ars_mono_ms() >= next_replay) {
            if (spool_nonempty(cfg)) {
                struct ars_usage_flush_result res;
                int busy;
                enum ars_err e = ars_usage_replay_spool(r, cfg, &res, &busy);
                /* Another pass right away while a long file shrinks. */
                next_replay = ars_mono_ms() + (e == ARS_OK && !busy && res.left ? 0 : ARS_USAGE_REPLAY_SECONDS * 1000);
            } else {
                next_replay = ars_mono_ms() + ARS_USAGE_REPLAY_SECONDS * 1000;
            }
        }
        for (int i = 0; i < 10 && !atomic_load(&usage_stop_flag); i++)
            usleep(100000);
    }
    ars_redis_free(r);
    return NULL;
}

int ars_usage_start(void)
{
    if (usage_started)
        return 0;
    atomic_store(&usage_stop_flag, 0);
    if (pthread_create(&usage_thread, NULL, usage_main, NULL) != 0)
        return -1;
    usage_started = 1;
    return 0;
}

/* Seconds the final flush may take before the rest goes to the spool. */
#define STOP_FLUSH_MS 5000

void ars_usage_stop(void)
{
    if (usage_started) {
        atomic_store(&usage_stop_flag, 1);
        pthread_join(usage_thread, NULL);
        usage_started = 0;
    }
    const struct ars_config *cfg = ars_config_current();
    if (ars_usage_queued() == 0)
        return;
    if (cfg) {
        struct ars_redis *r = ars_redis_new();
        if (r) {
            struct ars_usage_flush_result res;
            /* A Redis that just failed is not tried again: spool at once. */
            if (atomic_load(&down_until) <= ars_mono_ms())
                flush_until(r, cfg, &res, ars_mono_ms() + STOP_FLUSH_MS);
            ars_redis_free(r);
        }
    }
    pthread_mutex_lock(&q_lock);
    struct qnode *list = q_head;
    size_t n = q_count;
    q_head = q_tail = NULL;
    q_count = 0;
    pthread_mutex_unlock(&q_lock);
    if (!n)
        return;
    const struct ars_usage_record **recs = malloc(n * sizeof(*recs));
    const char *why = "out of memory";
    int rc = -1;
    if (recs) {
        size_t i = 0;
        for (struct qnode *q = list; q; q = q->next)
            recs[i++] = &q->rec;
        rc = spool_append(cfg ? cfg->usage_spool_file : NULL, recs, n, &why);
    }
    log_spooled(cfg ? cfg->usage_spool_file : NULL, n, rc ? why : NULL);
    free(recs);
    while (list) {
        struct qnode *next = list->next;
        free(list);
        list = next;
    }
}
