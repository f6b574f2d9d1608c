/* Scheduler and OAuth refresh behaviour against a real redis-server (and
 * the mock upstream for the OAuth cases). Run by
 * check/integration/scheduler.test:
 *
 *   redis_scheduler_test --redis-port PORT [--mock http://127.0.0.1:PORT]
 *
 * Without --mock the OAuth cases cannot run, and that is a failure (a
 * missing prerequisite must not turn into a shorter green run).
 * Every case starts from an empty Redis database (FLUSHDB): point it at a
 * throw-away server only. Prints its plan first ("# plan: N checks"), then
 * "ok - ..." / "FAIL - ..." per check; exits 0 when exactly the planned
 * number of checks ran and every one passed. */
#include <curl/curl.h>
#include <hiredis.h>
#include <json.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "accounts.h"
#include "config.h"
#include "entities.h"
#include "keys.h"
#include "log.h"
#include "oauth.h"
#include "records.h"
#include "redis.h"
#include "scheduler.h"
#include "busy.h"
#include "usage.h"

#define ID_LEN 64
#define LEASE_TTL_S 300
#define STICKY_TTL_S 3600
#define COOLDOWN_MAX_S 1800
/* The number of checks a full run makes; a run that makes another number
 * (a case that returned early, a section not run) fails. */
#define SCHED_TEST_PLAN 83

static struct ars_config *cfg;
static struct ars_redis *R;
static const char *mock_url;
static int checks, failures;

/* ---- reporting ---- */

__attribute__((format(printf, 3, 4)))
static int expect(int cond, const char *name, const char *fmt, ...)
{
    checks++;
    if (cond) {
        printf("ok - %s\n", name);
    } else {
        failures++;
        char detail[1024] = "";
        if (fmt) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(detail, sizeof(detail), fmt, ap);
            va_end(ap);
        }
        printf("FAIL - %s%s%s\n", name, detail[0] ? ": " : "", detail);
    }
    fflush(stdout);
    return cond;
}

static void die(const char *what, const char *detail)
{
    printf("FAIL - %s: %s\n", what, detail);
    exit(1);
}

/* A setup step the checks around it rely on: its failure ends the run. */
#define MUST(call)                                                                                                   \
    do {                                                                                                             \
        if ((call) != ARS_OK)                                                                                        \
            die("setup step failed", #call);                                                                         \
    } while (0)

/* ---- time ---- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_us(long us)
{
    struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000L };
    nanosleep(&ts, NULL);
}

/* ---- Redis helpers ---- */

static redisReply *cmd(struct ars_redis *r, int argc, const char **argv)
{
    redisReply *rep;
    if (ars_redis_cmd(r, cfg, &rep, argc, argv, NULL))
        die("redis command", ars_redis_error(r));
    return rep;
}

static void flush(void)
{
    const char *argv[] = { "FLUSHDB" };
    freeReplyObject(cmd(R, 1, argv));
    ars_sched_cache_invalidate();
}

static void pool_key(char *out, size_t n, const char *a, const char *b, const char *c)
{
    snprintf(out, n, "%spool:{pool}:%s%s%s%s%s", cfg->redis_key_prefix, a, b ? ":" : "", b ? b : "", c ? ":" : "",
             c ? c : "");
}

/* GET as a string ("" when absent). */
static void rget(const char *key, char *out, size_t n)
{
    const char *argv[] = { "GET", key };
    redisReply *rep = cmd(R, 2, argv);
    snprintf(out, n, "%s", rep->type == REDIS_REPLY_STRING ? rep->str : "");
    freeReplyObject(rep);
}

static long long rint_cmd(const char *c, const char *key)
{
    const char *argv[] = { c, key };
    redisReply *rep = cmd(R, 2, argv);
    long long v = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -99;
    freeReplyObject(rep);
    return v;
}

static long long pttl(const char *key)
{
    return rint_cmd("PTTL", key);
}

/* ---- accounts and keys ---- */

static json_object *parse_json(const char *text)
{
    json_object *o = json_tokener_parse(text);
    if (!o)
        die("test JSON", text);
    return o;
}

static void create_account(char id[ID_LEN], const char *json)
{
    char err[256] = "";
    json_object *params = parse_json(json), *rec = NULL;
    if (ars_accounts_create(R, cfg, params, &rec, err, sizeof(err)))
        die("ars_accounts_create", err);
    snprintf(id, ID_LEN, "%s", json_object_get_string(json_object_object_get(rec, "id")));
    json_object_put(rec);
    json_object_put(params);
    ars_sched_cache_invalidate();
}

/* A console account: name, priority, concurrency limit, extra members. */
static void console(char id[ID_LEN], const char *name, int priority, int limit, const char *extra)
{
    char json[2048];
    snprintf(json, sizeof(json),
             "{\"type\":\"claude-console\",\"name\":\"%s\",\"priority\":%d,\"concurrency_limit\":%d,"
             "\"base_url\":\"http://127.0.0.1:9\",\"credentials\":{\"api_key\":\"sk-ant-test-%s\"}%s%s}",
             name, priority, limit, name, extra ? "," : "", extra ? extra : "");
    create_account(id, json);
}

static void oauth_account(char id[ID_LEN], const char *name, const char *access, const char *refresh,
                          long long expires_at)
{
    char json[2048];
    snprintf(json, sizeof(json),
             "{\"type\":\"claude-oauth\",\"name\":\"%s\",\"priority\":10,"
             "\"credentials\":{\"access_token\":\"%s\",\"refresh_token\":\"%s\",\"expires_at\":%lld,"
             "\"scopes\":[\"user:inference\"]}}",
             name, access, refresh, expires_at);
    create_account(id, json);
}

static void update_account(const char *id, const char *json)
{
    char err[256] = "";
    json_object *changes = parse_json(json), *rec = NULL;
    if (ars_accounts_update(R, cfg, id, changes, &rec, err, sizeof(err)))
        die("ars_accounts_update", err);
    json_object_put(rec);
    json_object_put(changes);
    ars_sched_cache_invalidate();
}

static void record_status(const char *id, char *out, size_t n)
{
    char err[256] = "";
    json_object *rec = NULL;
    if (ars_accounts_get(R, cfg, id, &rec, err, sizeof(err)))
        die("ars_accounts_get", err);
    snprintf(out, n, "%s", json_object_get_string(json_object_object_get(rec, "status")));
    json_object_put(rec);
}

static struct ars_key *key_bound_to(const char *binding)
{
    char json[256];
    snprintf(json, sizeof(json), "{\"id\":\"k1\",\"name\":\"test key\",\"enabled\":true,\"account_binding\":\"%s\"}",
             binding);
    json_object *rec = parse_json(json);
    struct ars_key *k = ars_key_from_record(rec);
    json_object_put(rec);
    if (!k)
        die("ars_key_from_record", binding);
    return k;
}

static struct ars_account *cached(const char *id)
{
    struct ars_account *a = NULL;
    if (ars_sched_account(R, cfg, id, &a))
        die("ars_sched_account", id);
    return a;
}

/* ---- picks ---- */

struct result {
    enum ars_err err;
    char id[ID_LEN];
    int sticky;
    char why[ARS_SCHED_WHY_LEN];
};

static struct result pick_as(struct ars_redis *r, const struct ars_key *k, const char *model, const char *session,
                             const char *rid, const char *const *ex, size_t nex, long long now)
{
    struct result res;
    memset(&res, 0, sizeof(res));
    struct ars_pick p;
    res.err = ars_sched_pick(r, cfg, k, model, session, rid, ex, nex, now, &p, res.why, sizeof(res.why));
    if (res.err == ARS_OK) {
        snprintf(res.id, sizeof(res.id), "%s", p.account->id);
        res.sticky = p.sticky;
        ars_account_release(p.account);
    }
    return res;
}

static struct result pick(const struct ars_key *k, const char *model, const char *session, const char *rid,
                          long long now)
{
    return pick_as(R, k, model, session, rid, NULL, 0, now);
}

static void release(const char *aid, const char *rid)
{
    if (ars_sched_release(R, cfg, aid, rid))
        die("ars_sched_release", ars_redis_error(R));
}

static const char *name_of(const char *id, const char *a, const char *b, const char *c)
{
    if (!id[0])
        return "(none)";
    if (a && !strcmp(id, a))
        return "A";
    if (b && !strcmp(id, b))
        return "B";
    if (c && !strcmp(id, c))
        return "C";
    return id;
}

static void mark(const char *aid, const char *model, int status, const char *retry_after, const char *reset)
{
    struct ars_account *a = cached(aid);
    if (ars_sched_mark(R, cfg, a, NULL, model, status, retry_after, reset, now_ms()))
        die("ars_sched_mark", ars_redis_error(R));
    ars_account_release(a);
}

/* ---- the cases ---- */

static void test_no_accounts(void)
{
    flush();
    struct result res = pick(NULL, "claude-sonnet-4-5", NULL, "r1", now_ms());
    expect(res.err == ARS_ERR_NOTFOUND && strstr(res.why, "no accounts configured"),
           "no accounts: ARS_ERR_NOTFOUND saying no accounts are configured", "err %d why '%s'", res.err, res.why);
}

static void test_priority(void)
{
    char a[ID_LEN], b[ID_LEN], c[ID_LEN];
    flush();
    console(a, "A", 50, 0, NULL);
    console(b, "B", 5, 0, NULL);
    console(c, "C", 80, 0, NULL);
    int good = 1;
    for (int i = 0; i < 3; i++) {
        char rid[16];
        snprintf(rid, sizeof(rid), "r%d", i);
        struct result res = pick(NULL, "claude-sonnet-4-5", NULL, rid, now_ms() + i);
        good &= res.err == ARS_OK && !strcmp(res.id, b);
        if (!good) {
            expect(0, "the lowest priority number wins", "pick %d got %s (%s)", i, name_of(res.id, a, b, c), res.why);
            return;
        }
        release(res.id, rid);
    }
    expect(good, "the lowest priority number wins, every time", NULL);
}

static void test_inflight_then_lru(void)
{
    char a[ID_LEN], b[ID_LEN];
    flush();
    console(a, "A", 10, 0, NULL);
    console(b, "B", 10, 0, NULL);
    long long t = now_ms();
    struct result p1 = pick(NULL, "claude-sonnet-4-5", NULL, "r1", t);
    struct result p2 = pick(NULL, "claude-sonnet-4-5", NULL, "r2", t + 1);
    expect(p1.err == ARS_OK && p2.err == ARS_OK && strcmp(p1.id, p2.id) != 0,
           "equal priority: the account with fewer requests in flight is picked",
           "first %s, second %s", name_of(p1.id, a, b, NULL), name_of(p2.id, a, b, NULL));
    release(p1.id, "r1");
    release(p2.id, "r2");
    struct result p3 = pick(NULL, "claude-sonnet-4-5", NULL, "r3", t + 2);
    expect(p3.err == ARS_OK && !strcmp(p3.id, p1.id),
           "equal priority and load: the least recently picked account is next",
           "first pick %s, now %s", name_of(p1.id, a, b, NULL), name_of(p3.id, a, b, NULL));
    release(p3.id, "r3");
    struct result p4 = pick(NULL, "claude-sonnet-4-5", NULL, "r4", t + 3);
    expect(p4.err == ARS_OK && !strcmp(p4.id, p2.id), "... and then the other one (round robin by LRU)",
           "got %s", name_of(p4.id, a, b, NULL));
    release(p4.id, "r4");
}

static void test_sticky(void)
{
    char a[ID_LEN], b[ID_LEN], key[256], bound[ID_LEN];
    flush();
    console(a, "A", 10, 0, NULL);
    console(b, "B", 10, 0, NULL);
    long long t = now_ms();
    struct result first = pick(NULL, "claude-sonnet-4-5", "sess-1", "r1", t);
    release(first.id, "r1");
    pool_key(key, sizeof(key), "sticky", "sess-1", NULL);
    rget(key, bound, sizeof(bound));
    long long ttl = pttl(key);
    expect(first.err == ARS_OK && !first.sticky && !strcmp(bound, first.id) && ttl > (STICKY_TTL_S - 5) * 1000LL &&
               ttl <= STICKY_TTL_S * 1000LL,
           "a new session is bound to the picked account for STICKY_TTL_SECONDS",
           "picked %s, binding '%s', ttl %lld ms", name_of(first.id, a, b, NULL), name_of(bound, a, b, NULL), ttl);
    /* Two picks without a session make the bound account the most recent. */
    struct result o1 = pick(NULL, "claude-sonnet-4-5", NULL, "o1", t + 1);
    release(o1.id, "o1");
    struct result o2 = pick(NULL, "claude-sonnet-4-5", NULL, "o2", t + 2);
    release(o2.id, "o2");
    const char *lru = strcmp(o2.id, first.id) ? first.id : o1.id;
    struct result again = pick(NULL, "claude-opus-4-1", "sess-1", "r2", t + 3);
    release(again.id, "r2");
    expect(again.err == ARS_OK && again.sticky && !strcmp(again.id, first.id),
           "a sticky session keeps its account even when another is less recently used",
           "got %s sticky=%d (bound %s, LRU %s)", name_of(again.id, a, b, NULL), again.sticky,
           name_of(first.id, a, b, NULL), name_of(lru, a, b, NULL));
    const char *argv[] = { "EXPIRE", key, "100" };
    freeReplyObject(cmd(R, 3, argv));
    struct result renew = pick(NULL, "claude-sonnet-4-5", "sess-1", "r3", t + 4);
    release(renew.id, "r3");
    expect(pttl(key) > (STICKY_TTL_S - 5) * 1000LL, "using the binding renews its TTL", "ttl %lld ms", pttl(key));
}

static void test_busy_sticky_spills(void)
{
    char a[ID_LEN], b[ID_LEN], key[256], bound[ID_LEN];
    flush();
    console(a, "A", 10, 1, NULL);
    console(b, "B", 10, 1, NULL);
    long long t = now_ms();
    struct result held = pick(NULL, "claude-sonnet-4-5", "sess-busy", "r1", t);
    struct result spill = pick(NULL, "claude-sonnet-4-5", "sess-busy", "r2", t + 1);
    pool_key(key, sizeof(key), "sticky", "sess-busy", NULL);
    rget(key, bound, sizeof(bound));
    expect(held.err == ARS_OK && spill.err == ARS_OK && strcmp(spill.id, held.id) != 0 && !spill.sticky,
           "a bound account at its concurrency limit: the request spills over to another account",
           "held %s, second %s (%s)", name_of(held.id, a, b, NULL), name_of(spill.id, a, b, NULL), spill.why);
    expect(!strcmp(bound, held.id), "the spill-over does not rewrite the session's binding", "binding now %s",
           name_of(bound, a, b, NULL));
    release(held.id, "r1");
    release(spill.id, "r2");
    struct result back = pick(NULL, "claude-sonnet-4-5", "sess-busy", "r3", t + 2);
    release(back.id, "r3");
    expect(back.err == ARS_OK && !strcmp(back.id, held.id) && back.sticky,
           "once the bound account is free the session goes back to it", "got %s sticky=%d",
           name_of(back.id, a, b, NULL), back.sticky);

    /* Cooling: same spill-over, binding kept. */
    mark(held.id, "claude-sonnet-4-5", 529, NULL, NULL);
    struct result cool = pick(NULL, "claude-sonnet-4-5", "sess-busy", "r4", t + 3);
    release(cool.id, "r4");
    rget(key, bound, sizeof(bound));
    expect(cool.err == ARS_OK && strcmp(cool.id, held.id) != 0 && !strcmp(bound, held.id),
           "a cooling bound account spills over too, and keeps its binding", "got %s, binding %s",
           name_of(cool.id, a, b, NULL), name_of(bound, a, b, NULL));
}

static void test_stale_binding_rewritten(void)
{
    char a[ID_LEN], b[ID_LEN], key[256], bound[ID_LEN];
    flush();
    console(a, "A", 10, 0, NULL);
    console(b, "B", 20, 0, NULL);
    struct result first = pick(NULL, "claude-sonnet-4-5", "sess-gone", "r1", now_ms());
    release(first.id, "r1");
    struct ars_account *acc = cached(a);
    MUST(ars_sched_mark_unauthorized(R, cfg, acc, "test"));
    ars_account_release(acc);
    struct result next = pick(NULL, "claude-sonnet-4-5", "sess-gone", "r2", now_ms());
    release(next.id, "r2");
    pool_key(key, sizeof(key), "sticky", "sess-gone", NULL);
    rget(key, bound, sizeof(bound));
    expect(!strcmp(first.id, a) && next.err == ARS_OK && !strcmp(next.id, b) && !strcmp(bound, b),
           "a binding to an account that left the pool (unauthorized) is replaced",
           "first %s, next %s, binding %s", name_of(first.id, a, b, NULL), name_of(next.id, a, b, NULL),
           name_of(bound, a, b, NULL));
}

static void test_family_cooldown(void)
{
    char a[ID_LEN], b[ID_LEN], key[256], reset[32];
    flush();
    console(a, "A", 1, 0, NULL);
    console(b, "B", 2, 0, NULL);
    snprintf(reset, sizeof(reset), "%lld", now_ms() / 1000 + 600);
    mark(a, "claude-opus-4-1-20250805", 429, "30", reset);
    pool_key(key, sizeof(key), "cool", a, "opus");
    long long ttl = pttl(key);
    expect(ttl > 590000 && ttl <= 600000, "429 with anthropic-ratelimit-unified-reset cools the model family until the reset",
           "cool:A:opus ttl %lld ms", ttl);
    pool_key(key, sizeof(key), "cool", a, "all");
    expect(pttl(key) == -2, "... and not the whole account", "cool:A:all ttl %lld", pttl(key));
    struct result o = pick(NULL, "claude-opus-4-1", NULL, "r1", now_ms());
    release(o.id, "r1");
    expect(o.err == ARS_OK && !strcmp(o.id, b), "an opus request goes to another account",
           "got %s (%s)", name_of(o.id, a, b, NULL), o.why);
    struct result s = pick(NULL, "claude-sonnet-4-5", NULL, "r2", now_ms());
    release(s.id, "r2");
    expect(s.err == ARS_OK && !strcmp(s.id, a), "a sonnet request still uses the account",
           "got %s (%s)", name_of(s.id, a, b, NULL), s.why);
}

static void test_retry_after_and_all_cooling(void)
{
    char a[ID_LEN], b[ID_LEN], key[256];
    flush();
    console(a, "A", 1, 0, NULL);
    console(b, "B", 2, 0, NULL);
    mark(a, "claude-sonnet-4-5", 429, "120", NULL);
    pool_key(key, sizeof(key), "cool", a, "all");
    long long ttl = pttl(key);
    expect(ttl > 115000 && ttl <= 120000, "429 with retry-after: 120 cools the whole account for 120 s",
           "ttl %lld ms", ttl);
    struct result s = pick(NULL, "claude-sonnet-4-5", NULL, "r1", now_ms());
    release(s.id, "r1");
    struct result o = pick(NULL, "claude-opus-4-1", NULL, "r2", now_ms());
    release(o.id, "r2");
    expect(s.err == ARS_OK && !strcmp(s.id, b) && o.err == ARS_OK && !strcmp(o.id, b),
           "a whole-account cool-down applies to every model family", "sonnet -> %s, opus -> %s",
           name_of(s.id, a, b, NULL), name_of(o.id, a, b, NULL));

    /* retry-after as an HTTP date, 90 s ahead. */
    char date[64];
    time_t when = (time_t)(now_ms() / 1000 + 90);
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    mark(b, "claude-sonnet-4-5", 429, date, NULL);
    pool_key(key, sizeof(key), "cool", b, "all");
    ttl = pttl(key);
    expect(ttl > 85000 && ttl <= 90000, "429 with retry-after as an HTTP date cools until that date",
           "'%s' -> ttl %lld ms", date, ttl);
    struct result none = pick(NULL, "claude-sonnet-4-5", NULL, "r3", now_ms());
    long long secs = -1;
    const char *p = strstr(none.why, "soonest back in ");
    if (p)
        secs = strtoll(p + 16, NULL, 10);
    expect(none.err == ARS_ERR_NOTFOUND && strstr(none.why, "all 2 accounts cooling down") && secs >= 85 &&
               secs <= 90,
           "everything cooling: ARS_ERR_NOTFOUND naming the soonest return", "err %d why '%s'", none.err, none.why);
}

static void test_default_429_529_and_cap(void)
{
    char a[ID_LEN], b[ID_LEN], key[256], reset[32];
    flush();
    console(a, "A", 1, 0, NULL);
    console(b, "B", 2, 0, NULL);
    mark(a, "claude-sonnet-4-5", 429, NULL, NULL);
    pool_key(key, sizeof(key), "cool", a, "all");
    long long ttl = pttl(key);
    expect(ttl > (cfg->rate_limit_cooldown_seconds - 5) * 1000 && ttl <= cfg->rate_limit_cooldown_seconds * 1000,
           "429 without headers cools the account for RATE_LIMIT_COOLDOWN_SECONDS", "ttl %lld ms", ttl);
    char reason[512];
    rget(key, reason, sizeof(reason));
    json_object *j = json_tokener_parse(reason);
    json_object *st = NULL, *until = NULL;
    expect(j && json_object_object_get_ex(j, "status", &st) && json_object_get_int(st) == 429 &&
               json_object_object_get_ex(j, "until_ms", &until) && json_object_get_int64(until) > now_ms(),
           "the cool-down's value is a JSON reason with status and until_ms", "'%s'", reason);
    json_object_put(j);

    mark(b, "claude-sonnet-4-5", 529, NULL, NULL);
    pool_key(key, sizeof(key), "cool", b, "all");
    ttl = pttl(key);
    expect(ttl > (cfg->overload_cooldown_seconds - 5) * 1000 && ttl <= cfg->overload_cooldown_seconds * 1000,
           "529 cools the account for OVERLOAD_COOLDOWN_SECONDS", "ttl %lld ms", ttl);
    struct result none = pick(NULL, "claude-sonnet-4-5", NULL, "r1", now_ms());
    expect(none.err == ARS_ERR_NOTFOUND, "with both accounts cooling there is no pick", "err %d", none.err);

    flush();
    console(a, "A", 1, 0, NULL);
    snprintf(reset, sizeof(reset), "%lld", now_ms() / 1000 + 10 * 3600);
    mark(a, "claude-opus-4-1", 429, NULL, reset);
    pool_key(key, sizeof(key), "cool", a, "opus");
    ttl = pttl(key);
    expect(ttl > (COOLDOWN_MAX_S - 5) * 1000LL && ttl <= COOLDOWN_MAX_S * 1000LL,
           "a reset 10 h away is capped at COOLDOWN_MAX_SECONDS", "ttl %lld ms", ttl);
    snprintf(reset, sizeof(reset), "%lld", now_ms() / 1000 + 5);
    mark(a, "claude-opus-4-1", 429, NULL, reset);
    expect(pttl(key) > (COOLDOWN_MAX_S - 5) * 1000LL, "a shorter cool-down never shortens a longer one",
           "opus ttl %lld", pttl(key));
}

static void test_error_threshold(void)
{
    char a[ID_LEN], b[ID_LEN], key[256], ekey[256];
    flush();
    console(a, "A", 1, 0, NULL);
    console(b, "B", 2, 0, NULL);
    pool_key(key, sizeof(key), "cool", a, "all");
    pool_key(ekey, sizeof(ekey), "errors", a, NULL);
    mark(a, "claude-sonnet-4-5", 500, NULL, NULL);
    mark(a, "claude-sonnet-4-5", 502, NULL, NULL);
    long long ettl = rint_cmd("TTL", ekey);
    struct result still = pick(NULL, "claude-sonnet-4-5", NULL, "r1", now_ms());
    release(still.id, "r1");
    expect(still.err == ARS_OK && !strcmp(still.id, a) && pttl(key) == -2,
           "two 5xx answers (threshold 3) leave the account in the pool", "got %s", name_of(still.id, a, b, NULL));
    expect(ettl > 0 && ettl <= cfg->error_window_seconds, "the error counter expires after ERROR_WINDOW_SECONDS",
           "ttl %lld", ettl);
    mark(a, "claude-sonnet-4-5", 403, NULL, NULL);
    long long ttl = pttl(key);
    struct result moved = pick(NULL, "claude-sonnet-4-5", NULL, "r2", now_ms());
    release(moved.id, "r2");
    expect(ttl > (cfg->error_cooldown_seconds - 5) * 1000 && moved.err == ARS_OK && !strcmp(moved.id, b),
           "the third 403/5xx within the window cools the account for ERROR_COOLDOWN_SECONDS",
           "ttl %lld, pick %s", ttl, name_of(moved.id, a, b, NULL));
    mark(b, "claude-sonnet-4-5", 200, NULL, NULL);
    mark(b, "claude-sonnet-4-5", 400, NULL, NULL);
    mark(b, "claude-sonnet-4-5", 401, NULL, NULL);
    char bkey[256];
    pool_key(bkey, sizeof(bkey), "errors", b, NULL);
    expect(rint_cmd("EXISTS", bkey) == 0, "2xx, 400 and 401 answers leave no mark", NULL);

    json_object *list = NULL;
    enum ars_err e = ars_sched_cooldowns(R, cfg, a, &list);
    const char *text = list ? json_object_to_json_string_ext(list, JSON_C_TO_STRING_PLAIN) : "";
    expect(e == ARS_OK && strstr(text, "\"scope\":\"all\"") && strstr(text, "\"status\":403") &&
               strstr(text, "\"ttl_ms\""),
           "ars_sched_cooldowns lists the active cool-down with its TTL and reason", "%s", text);
    json_object_put(list);
}

static void test_excluded(void)
{
    char a[ID_LEN], b[ID_LEN];
    flush();
    console(a, "A", 1, 0, NULL);
    console(b, "B", 2, 0, NULL);
    const char *ex1[] = { a };
    struct result r1 = pick_as(R, NULL, "claude-sonnet-4-5", NULL, "r1", ex1, 1, now_ms());
    release(r1.id, "r1");
    expect(r1.err == ARS_OK && !strcmp(r1.id, b), "failover: an excluded account is skipped", "got %s",
           name_of(r1.id, a, b, NULL));
    const char *ex2[] = { a, b };
    struct result r2 = pick_as(R, NULL, "claude-sonnet-4-5", NULL, "r2", ex2, 2, now_ms());
    expect(r2.err == ARS_ERR_NOTFOUND && strstr(r2.why, "no other account"),
           "failover with every account excluded: ARS_ERR_NOTFOUND", "err %d why '%s'", r2.err, r2.why);
}

static void test_dedicated(void)
{
    char a[ID_LEN], b[ID_LEN];
    flush();
    console(a, "Dedicated-A", 50, 1, NULL);
    console(b, "B", 1, 0, NULL);
    struct ars_key *k = key_bound_to(a);
    struct result r1 = pick(k, "claude-sonnet-4-5", "sess-d", "r1", now_ms());
    expect(r1.err == ARS_OK && !strcmp(r1.id, a), "a key bound to an account uses it, whatever the priorities",
           "got %s", name_of(r1.id, a, b, NULL));
    struct result r2 = pick(k, "claude-sonnet-4-5", "sess-d", "r2", now_ms());
    expect(r2.err == ARS_ERR_NOTFOUND && strstr(r2.why, "dedicated account Dedicated-A unavailable") &&
               strstr(r2.why, "concurrency limit"),
           "dedicated account busy: no fallback to the pool, and the why says so", "err %d why '%s'", r2.err, r2.why);
    release(a, "r1");
    mark(a, "claude-sonnet-4-5", 529, NULL, NULL);
    struct result r3 = pick(k, "claude-sonnet-4-5", NULL, "r3", now_ms());
    expect(r3.err == ARS_ERR_NOTFOUND && strstr(r3.why, "cooling down until"),
           "dedicated account cooling: the why says until when", "why '%s'", r3.why);
    update_account(a, "{\"schedulable\":false}");
    struct result r4 = pick(k, "claude-sonnet-4-5", NULL, "r4", now_ms());
    expect(r4.err == ARS_ERR_NOTFOUND && strstr(r4.why, "(disabled)"), "dedicated account disabled: said so",
           "why '%s'", r4.why);
    ars_key_release(k);
}

static void test_group(void)
{
    char a[ID_LEN], b[ID_LEN], c[ID_LEN], gid[ID_LEN], err[256] = "", binding[ID_LEN + 8], json[256];
    flush();
    json_object *g = NULL;
    if (ars_groups_create(R, cfg, "team-red", "", &g, err, sizeof(err)))
        die("ars_groups_create", err);
    snprintf(gid, sizeof(gid), "%s", json_object_get_string(json_object_object_get(g, "id")));
    json_object_put(g);
    snprintf(json, sizeof(json), "\"groups\":[\"%s\"]", gid);
    console(a, "A", 10, 0, json);            /* member through the account's groups */
    console(b, "B", 20, 0, NULL);            /* member through the group's members */
    console(c, "C", 1, 0, NULL);             /* not a member, best priority */
    snprintf(json, sizeof(json), "{\"members\":[\"%s\"]}", b);
    json_object *changes = parse_json(json), *rec = NULL;
    if (ars_rec_redis_write(R, cfg, &ars_group_entity, gid, changes, 0, &rec))
        die("group members", ars_redis_error(R));
    json_object_put(changes);
    json_object_put(rec);
    ars_sched_cache_invalidate();
    snprintf(binding, sizeof(binding), "group:%s", gid);
    struct ars_key *k = key_bound_to(binding);
    struct result r1 = pick(k, "claude-sonnet-4-5", NULL, "r1", now_ms());
    struct result r2 = pick(k, "claude-sonnet-4-5", NULL, "r2", now_ms());
    release(r1.id, "r1");
    release(r2.id, "r2");
    expect(r1.err == ARS_OK && !strcmp(r1.id, a) && r2.err == ARS_OK && !strcmp(r2.id, a),
           "a key bound to a group picks by priority among the group's members only", "got %s, %s",
           name_of(r1.id, a, b, c), name_of(r2.id, a, b, c));
    mark(a, "claude-sonnet-4-5", 529, NULL, NULL);
    struct result r3 = pick(k, "claude-sonnet-4-5", NULL, "r3", now_ms());
    release(r3.id, "r3");
    expect(r3.err == ARS_OK && !strcmp(r3.id, b), "membership counts from either side (group members list)",
           "got %s (%s)", name_of(r3.id, a, b, c), r3.why);
    mark(b, "claude-sonnet-4-5", 529, NULL, NULL);
    struct result r4 = pick(k, "claude-sonnet-4-5", NULL, "r4", now_ms());
    expect(r4.err == ARS_ERR_NOTFOUND && strstr(r4.why, "group team-red") && strstr(r4.why, "cooling down"),
           "group all cooling: ARS_ERR_NOTFOUND, no fallback to the pool", "err %d got %s why '%s'", r4.err,
           name_of(r4.id, a, b, c), r4.why);
    ars_key_release(k);
}

static void test_leases(void)
{
    char a[ID_LEN], key[256], lease_key[256];
    flush();
    console(a, "A", 10, 1, NULL);
    long long t = now_ms();
    struct result r1 = pick(NULL, "claude-sonnet-4-5", NULL, "lease-1", t);
    ars_sched_lease_key(cfg, a, lease_key, sizeof(lease_key));
    pool_key(key, sizeof(key), "conc", a, NULL);
    const char *zs[] = { "ZSCORE", lease_key, "lease-1" };
    redisReply *rep = cmd(R, 3, zs);
    long long score = rep->type == REDIS_REPLY_STRING ? strtoll(rep->str, NULL, 10) : -1;
    freeReplyObject(rep);
    expect(r1.err == ARS_OK && !strcmp(lease_key, key) && score == t + LEASE_TTL_S * 1000LL,
           "a pick takes a lease: request id scored with now + LEASE_TTL_SECONDS", "score %lld want %lld", score,
           t + LEASE_TTL_S * 1000LL);
    MUST(ars_sched_refresh(R, cfg, a, "lease-1", t + 5000));
    rep = cmd(R, 3, zs);
    score = rep->type == REDIS_REPLY_STRING ? strtoll(rep->str, NULL, 10) : -1;
    freeReplyObject(rep);
    expect(score == t + 5000 + LEASE_TTL_S * 1000LL, "ars_sched_refresh extends the lease", "score %lld", score);
    expect(pttl(lease_key) > LEASE_TTL_S * 1000LL, "the lease zset expires by itself after its leases",
           "pttl %lld", pttl(lease_key));
    struct result late = pick(NULL, "claude-sonnet-4-5", NULL, "lease-2", t + 5000 + LEASE_TTL_S * 1000LL + 1);
    expect(late.err == ARS_OK && !strcmp(late.id, a), "an expired lease (crashed holder) frees the slot",
           "err %d why '%s'", late.err, late.why);
    release(a, "lease-1");
    release(a, "lease-2");
    expect(rint_cmd("ZCARD", lease_key) == 0, "ars_sched_release drops the lease", NULL);
}

/* Issue 8: a pick that timed out in Redis answered 503, but its script
 * ran later and left an account lease nobody released. */
static void test_pick_cancel(const char *port)
{
    char a[ID_LEN], lease_key[256];
    flush();
    console(a, "A", 10, 1, NULL);
    ars_sched_lease_key(cfg, a, lease_key, sizeof(lease_key));
    long long t = now_ms();
    struct result r1 = pick(NULL, "claude-sonnet-4-5", NULL, "pc-1", t);
    expect(r1.err == ARS_OK && rint_cmd("ZCARD", lease_key) == 1, "cancel: a pick takes a lease", NULL);
    expect(ars_sched_cancel(R, cfg, "pc-1") == ARS_OK && rint_cmd("ZCARD", lease_key) == 0,
           "cancel: ars_sched_cancel drops the request's lease without knowing the account", NULL);
    expect(ars_sched_cancel(R, cfg, "pc-2") == ARS_OK, "cancel: before the pick returns OK", NULL);
    struct result r2 = pick(NULL, "claude-sonnet-4-5", NULL, "pc-2", t + 1);
    expect(r2.err != ARS_OK && rint_cmd("ZCARD", lease_key) == 0,
           "cancel: a pick script that runs after the cancel takes no lease", "err %d", r2.err);
    struct result r3 = pick(NULL, "claude-sonnet-4-5", NULL, "pc-3", t + 2);
    expect(r3.err == ARS_OK && !strcmp(r3.id, a), "cancel: other requests still get the account", NULL);
    release(a, "pc-3");

    /* The real thing: Redis busy past the command timeout. */
    char port_env[64], err[512];
    snprintf(port_env, sizeof(port_env), "REDIS_PORT=%s", port);
    char *env[] = { "JWT_SECRET=0123456789abcdef0123456789abcdef-jwt", "ENCRYPTION_KEY=0123456789abcdef0123456789abcdef",
                    port_env, "REDIS_KEY_PREFIX=schedtest:", "ACCOUNT_CACHE_SECONDS=60", "LEASE_TTL_SECONDS=300",
                    "REDIS_COMMAND_TIMEOUT_MS=150", NULL };
    struct ars_config *fast = NULL;
    if (ars_config_load(NULL, 0, env, &fast, err, sizeof(err))) {
        expect(0, "cancel: config with a short Redis timeout", "%s", err);
        return;
    }
    struct ars_redis *r = ars_redis_new();
    struct ars_pick p;
    char why[ARS_SCHED_WHY_LEN];
    enum ars_err e = ars_sched_pick(r, fast, NULL, "claude-sonnet-4-5", NULL, "pc-warm", NULL, 0, t + 3, &p, why,
                                    sizeof(why));
    if (e == ARS_OK) {
        ars_account_release(p.account);
        release(a, "pc-warm");
    }
    size_t queued = ars_usage_queued();
    redisContext *busy = busy_start(port, 1200);
    e = ars_sched_pick(r, fast, NULL, "claude-sonnet-4-5", NULL, "pc-4", NULL, 0, t + 4, &p, why, sizeof(why));
    expect(e == ARS_ERR_UNAVAILABLE, "pick timeout: a Redis busy past the command timeout is unavailable",
           "err %d", e);
    if (e == ARS_OK)
        ars_account_release(p.account);
    expect(ars_usage_queued() == queued + 1, "pick timeout: a compensating release is queued", NULL);
    busy_finish(busy);
    sleep_us(100000);
    expect(rint_cmd("ZCARD", lease_key) == 1, "pick timeout: the script ran after the timeout (the phantom lease)",
           NULL);
    struct ars_usage_flush_result res;
    expect(ars_usage_flush(R, cfg, &res) == ARS_OK && ars_usage_queued() == 0,
           "pick timeout: the retry path applies the queued release", "%s", res.error);
    expect(rint_cmd("ZCARD", lease_key) == 0, "pick timeout: no account lease is left", NULL);
    ars_redis_free(r);
    ars_config_free(fast);
}

/* Transport failures: a short back-off with one probe at a time, never
 * the long error cool-down. */
static void test_breaker(void)
{
    char a[ID_LEN], b[ID_LEN], brk[256], cool[256];
    flush();
    console(a, "A", 1, 0, NULL);
    long long t = now_ms();
    struct ars_account *acc = cached(a);
    pool_key(brk, sizeof(brk), "brk", a, NULL);
    pool_key(cool, sizeof(cool), "cool", a, "all");
    for (int i = 0; i < 5; i++)
        MUST(ars_sched_mark_transport(R, cfg, acc, "connect failed", t));
    expect(rint_cmd("EXISTS", cool) == 0, "breaker: transport failures never start the error cool-down", NULL);
    expect(rint_cmd("EXISTS", brk) == 1, "breaker: transport failures open the breaker", NULL);

    struct ars_pick p;
    char why[ARS_SCHED_WHY_LEN];
    enum ars_err e = ars_sched_pick(R, cfg, NULL, "claude-sonnet-4-5", NULL, "bk-1", NULL, 0, t + 10, &p, why,
                                    sizeof(why));
    expect(e == ARS_OK && p.probe == 1, "breaker: a pool with every account backing off lets one probe through",
           "err %d probe %d", e, e == ARS_OK ? p.probe : -1);
    if (e == ARS_OK)
        ars_account_release(p.account);
    struct result second = pick(NULL, "claude-sonnet-4-5", NULL, "bk-2", t + 20);
    expect(second.err == ARS_ERR_NOTFOUND, "breaker: while the probe is in flight nobody else gets the account",
           "err %d", second.err);
    MUST(ars_sched_mark_transport(R, cfg, acc, "connect failed", t + 30));   /* the probe failed */
    release(a, "bk-1");
    e = ars_sched_pick(R, cfg, NULL, "claude-sonnet-4-5", NULL, "bk-3", NULL, 0, t + 40, &p, why, sizeof(why));
    expect(e == ARS_OK && p.probe == 1, "breaker: after a failed probe the next request may probe again", "err %d", e);
    if (e == ARS_OK) {
        MUST(ars_sched_breaker_close(R, cfg, p.account));
        ars_account_release(p.account);
    }
    release(a, "bk-3");
    expect(rint_cmd("EXISTS", brk) == 0, "breaker: a successful probe closes it", NULL);
    e = ars_sched_pick(R, cfg, NULL, "claude-sonnet-4-5", NULL, "bk-4", NULL, 0, t + 50, &p, why, sizeof(why));
    expect(e == ARS_OK && p.probe == 0, "breaker: closed, requests are ordinary again", "err %d", e);
    if (e == ARS_OK)
        ars_account_release(p.account);
    release(a, "bk-4");

    /* With another account available, a backing-off one waits its turn. */
    console(b, "B", 50, 0, NULL);
    ars_sched_cache_invalidate();
    MUST(ars_sched_mark_transport(R, cfg, acc, "connect failed", t));
    struct result other = pick(NULL, "claude-sonnet-4-5", NULL, "bk-5", t + 10);
    expect(other.err == ARS_OK && !strcmp(other.id, b), "breaker: while A backs off, B serves", "got %s",
           name_of(other.id, a, b, NULL));
    release(b, "bk-5");
    long long after = t + cfg->transport_backoff_seconds * 1000 + 10;
    e = ars_sched_pick(R, cfg, NULL, "claude-sonnet-4-5", NULL, "bk-6", NULL, 0, after, &p, why, sizeof(why));
    expect(e == ARS_OK && !strcmp(p.account->id, a) && p.probe == 1,
           "breaker: after the back-off, A (by priority) is probed", "err %d", e);
    if (e == ARS_OK)
        ars_account_release(p.account);
    struct result during = pick(NULL, "claude-sonnet-4-5", NULL, "bk-7", after + 10);
    expect(during.err == ARS_OK && !strcmp(during.id, b), "breaker: one probe at a time; the rest go to B", "got %s",
           name_of(during.id, a, b, NULL));
    release(a, "bk-6");
    release(b, "bk-7");
    ars_account_release(acc);
}

/* One key's requests may mark accounts only so often. */
static void test_marks_per_key(void)
{
    char a[ID_LEN], errors[256], cool[256];
    flush();
    console(a, "A", 1, 0, NULL);
    struct ars_account *acc = cached(a);
    pool_key(errors, sizeof(errors), "errors", a, NULL);
    pool_key(cool, sizeof(cool), "cool", a, "all");
    for (int i = 0; i < 5; i++)
        MUST(ars_sched_mark(R, cfg, acc, "key-1", "claude-sonnet-4-5", 500, NULL, NULL, now_ms()));
    char count[32];
    rget(errors, count, sizeof(count));
    expect(rint_cmd("EXISTS", cool) == 0 && strtoll(count, NULL, 10) == cfg->error_marks_per_key_per_minute,
           "marks per key: one key's 5 errors count only ERROR_MARKS_PER_KEY_PER_MINUTE times", "errors '%s'",
           count);
    MUST(ars_sched_mark(R, cfg, acc, "key-2", "claude-sonnet-4-5", 503, NULL, NULL, now_ms()));
    expect(rint_cmd("EXISTS", cool) == 1, "marks per key: another key's error reaches the threshold", NULL);
    ars_account_release(acc);
}

static void test_cache(void)
{
    char a[ID_LEN], b[ID_LEN];
    flush();
    console(a, "A", 10, 0, NULL);
    struct result r1 = pick(NULL, "claude-sonnet-4-5", NULL, "r1", now_ms());
    release(r1.id, "r1");
    /* Written behind the cache's back (another process). */
    char json[512], err[256];
    snprintf(json, sizeof(json), "{\"type\":\"claude-console\",\"name\":\"B\",\"priority\":1}");
    json_object *params = parse_json(json), *rec = NULL;
    if (ars_accounts_create(R, cfg, params, &rec, err, sizeof(err)))
        die("ars_accounts_create", err);
    snprintf(b, sizeof(b), "%s", json_object_get_string(json_object_object_get(rec, "id")));
    json_object_put(params);
    json_object_put(rec);
    struct result r2 = pick(NULL, "claude-sonnet-4-5", NULL, "r2", now_ms());
    release(r2.id, "r2");
    expect(r2.err == ARS_OK && !strcmp(r2.id, a), "picks are served from the account cache (ACCOUNT_CACHE_SECONDS)",
           "got %s", name_of(r2.id, a, b, NULL));
    ars_sched_cache_invalidate();
    struct result r3 = pick(NULL, "claude-sonnet-4-5", NULL, "r3", now_ms());
    release(r3.id, "r3");
    expect(r3.err == ARS_OK && !strcmp(r3.id, b), "ars_sched_cache_invalidate makes the next pick reload",
           "got %s", name_of(r3.id, a, b, NULL));

    /* Redis gone: the cached list stays, the pick reports UNAVAILABLE. */
    char *env[] = { "JWT_SECRET=0123456789abcdef0123456789abcdef-jwt", "ENCRYPTION_KEY=0123456789abcdef0123456789abcdef",
                    "REDIS_PORT=1", "REDIS_CONNECT_TIMEOUT_MS=200", NULL };
    struct ars_config *bad = NULL;
    if (ars_config_load(NULL, 0, env, &bad, err, sizeof(err)))
        die("config", err);
    struct ars_redis *rb = ars_redis_new();
    ars_sched_cache_invalidate();
    struct ars_pick p;
    char why[ARS_SCHED_WHY_LEN];
    enum ars_err e = ars_sched_pick(rb, bad, NULL, "claude-sonnet-4-5", NULL, "r4", NULL, 0, now_ms(), &p, why,
                                    sizeof(why));
    expect(e == ARS_ERR_UNAVAILABLE && strstr(why, "Redis"), "Redis down: ARS_ERR_UNAVAILABLE with the reason",
           "err %d why '%s'", e, why);
    struct ars_account *kept = NULL;
    e = ars_sched_account(rb, bad, b, &kept);
    expect(e == ARS_OK, "a failed cache refresh keeps the previous account list", "err %d", e);
    ars_account_release(kept);
    ars_redis_free(rb);
    ars_config_free(bad);
}

struct child_stats {
    int picks, busy, violations, errors;
};

/* One forked process: each round takes two leases if it can (so two
 * processes want up to four of the two slots), counts itself in flight,
 * holds briefly, then lets go. */
static struct child_stats hammer(const char *aid, long limit, int rounds)
{
    struct child_stats st = { 0 };
    struct ars_redis *r = ars_redis_new();
    char counter[128];
    snprintf(counter, sizeof(counter), "%stest:inflight", cfg->redis_key_prefix);
    const char *inc[] = { "INCR", counter }, *dec[] = { "DECR", counter };
    for (int i = 0; i < rounds; i++) {
        char rids[2][64];
        int held[2] = { 0, 0 };
        for (int j = 0; j < 2; j++) {
            snprintf(rids[j], sizeof(rids[j]), "p%d-%d-%d", (int)getpid(), i, j);
            struct result res = pick_as(r, NULL, "claude-sonnet-4-5", NULL, rids[j], NULL, 0, now_ms());
            if (res.err == ARS_ERR_NOTFOUND) {
                st.busy++;
                continue;
            }
            if (res.err) {
                st.errors++;
                continue;
            }
            st.picks++;
            held[j] = 1;
            redisReply *rep;
            if (ars_redis_cmd(r, cfg, &rep, 2, inc, NULL) == ARS_OK) {
                if (rep->integer > limit)
                    st.violations++;
                freeReplyObject(rep);
            }
        }
        sleep_us(300);
        for (int j = 0; j < 2; j++) {
            if (!held[j])
                continue;
            redisReply *rep;
            if (ars_redis_cmd(r, cfg, &rep, 2, dec, NULL) == ARS_OK)
                freeReplyObject(rep);
            MUST(ars_sched_release(r, cfg, aid, rids[j]));
        }
    }
    ars_redis_free(r);
    return st;
}

static void test_two_processes(void)
{
    char a[ID_LEN];
    flush();
    console(a, "A", 10, 2, NULL);
    struct result warm = pick(NULL, "claude-sonnet-4-5", NULL, "warm", now_ms());   /* load the cache before fork */
    release(warm.id, "warm");
    int fds[2][2];
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        if (pipe(fds[i]))
            die("pipe", "failed");
        pids[i] = fork();
        if (pids[i] < 0)
            die("fork", "failed");
        if (pids[i] == 0) {
            close(fds[i][0]);
            struct child_stats st = hammer(a, 2, 300);
            ssize_t w = write(fds[i][1], &st, sizeof(st));
            _exit(w == (ssize_t)sizeof(st) ? 0 : 1);
        }
        close(fds[i][1]);
    }
    struct child_stats total = { 0 };
    int ok = 1;
    for (int i = 0; i < 2; i++) {
        struct child_stats st = { 0 };
        ssize_t n = read(fds[i][0], &st, sizeof(st));
        close(fds[i][0]);
        int status;
        waitpid(pids[i], &status, 0);
        ok &= n == (ssize_t)sizeof(st) && WIFEXITED(status) && WEXITSTATUS(status) == 0 && st.picks > 0;
        total.picks += st.picks;
        total.busy += st.busy;
        total.violations += st.violations;
        total.errors += st.errors;
    }
    char lease_key[256];
    ars_sched_lease_key(cfg, a, lease_key, sizeof(lease_key));
    expect(ok && total.violations == 0 && total.errors == 0 && total.busy > 0 && rint_cmd("ZCARD", lease_key) == 0,
           "two processes picking at once never exceed an account's concurrency limit",
           "picks %d, refused busy %d, over the limit %d, errors %d", total.picks, total.busy, total.violations,
           total.errors);
    printf("# two processes: %d picks, %d refused as busy, 0 over the limit of 2\n", total.picks, total.busy);
}

/* ---- OAuth (needs the mock upstream) ---- */

struct membuf {
    char data[4096];
    size_t n;
};

static size_t collect(char *p, size_t size, size_t nmemb, void *ud)
{
    struct membuf *m = ud;
    size_t n = size * nmemb;
    if (m->n + n >= sizeof(m->data))
        return 0;
    memcpy(m->data + m->n, p, n);
    m->n += n;
    m->data[m->n] = '\0';
    return n;
}

static long long mock_token_calls(void)
{
    char url[512];
    snprintf(url, sizeof(url), "%s/_mock/stats", mock_url);
    struct membuf m = { .n = 0 };
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &m);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK)
        die("mock stats", curl_easy_strerror(rc));
    json_object *j = json_tokener_parse(m.data), *v = NULL;
    long long n = j && json_object_object_get_ex(j, "token_endpoint_calls", &v) ? json_object_get_int64(v) : -1;
    json_object_put(j);
    return n;
}

static void mock_reset(void)
{
    char url[512];
    snprintf(url, sizeof(url), "%s/_mock/reset", mock_url);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    FILE *devnull = fopen("/dev/null", "w");
    curl_easy_setopt(h, CURLOPT_WRITEDATA, devnull);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    if (devnull)
        fclose(devnull);
    if (rc != CURLE_OK)
        die("mock reset", curl_easy_strerror(rc));
}

struct token_job {
    struct ars_account *account;
    int force;
    pthread_barrier_t *start;
    enum ars_err err;
    char token[128];
    char msg[256];
};

static void *token_thread(void *arg)
{
    struct token_job *j = arg;
    struct ars_redis *r = ars_redis_new();
    char *tok = NULL;
    pthread_barrier_wait(j->start);
    j->err = ars_oauth_access_token(r, cfg, j->account, j->force, &tok, j->msg, sizeof(j->msg));
    snprintf(j->token, sizeof(j->token), "%s", tok ? tok : "");
    free(tok);
    ars_redis_free(r);
    return NULL;
}

static void test_oauth_fresh_and_console(void)
{
    char a[ID_LEN], c[ID_LEN], msg[256];
    flush();
    mock_reset();
    oauth_account(a, "fresh", "access-fresh", "refresh-fresh", now_ms() + 3600 * 1000LL);
    console(c, "console", 10, 0, NULL);
    struct ars_account *acc = cached(a);
    char *tok = NULL;
    enum ars_err e = ars_oauth_access_token(R, cfg, acc, 0, &tok, msg, sizeof(msg));
    expect(e == ARS_OK && tok && !strcmp(tok, "access-fresh") && mock_token_calls() == 0,
           "oauth: a token good for an hour is used as is, no refresh", "err %d token '%s' msg '%s'", e,
           tok ? tok : "", msg);
    free(tok);
    ars_account_release(acc);
    acc = cached(c);
    tok = NULL;
    e = ars_oauth_access_token(R, cfg, acc, 0, &tok, msg, sizeof(msg));
    expect(e == ARS_ERR_INVALID && !tok, "oauth: a console account has no OAuth token (ARS_ERR_INVALID)",
           "err %d", e);
    ars_account_release(acc);
}

static void test_oauth_threads(void)
{
    enum { NTHREADS = 8 };
    char a[ID_LEN];
    flush();
    mock_reset();
    oauth_account(a, "expiring", "access-old", "refresh-old", now_ms() + 60 * 1000LL);
    struct ars_account *acc = cached(a);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NTHREADS);
    struct token_job jobs[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        jobs[i].account = acc;
        jobs[i].start = &start;
        pthread_create(&th[i], NULL, token_thread, &jobs[i]);
    }
    int same = 1;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        same &= jobs[i].err == ARS_OK && !strncmp(jobs[i].token, "mock-access-", 12) &&
                !strcmp(jobs[i].token, jobs[0].token);
    }
    pthread_barrier_destroy(&start);
    long long calls = mock_token_calls();
    expect(same && calls == 1, "oauth: a token near expiry is refreshed once when 8 threads ask at once",
           "token endpoint calls %lld; thread 0: err %d token '%s' msg '%s'", calls, jobs[0].err, jobs[0].token,
           jobs[0].msg);
    ars_account_release(acc);
    acc = cached(a);
    expect(!strcmp(acc->access_token, jobs[0].token) && acc->token_expires_ms > now_ms() + 3500 * 1000LL &&
               !strncmp(acc->refresh_token, "mock-refresh-", 13),
           "oauth: the new tokens and expiry are stored in the record and reach the account cache",
           "cached token '%s' expires in %lld s", acc->access_token, (acc->token_expires_ms - now_ms()) / 1000);
    char *tok = NULL, msg[256];
    MUST(ars_oauth_access_token(R, cfg, acc, 0, &tok, msg, sizeof(msg)));
    expect(tok && !strcmp(tok, jobs[0].token) && mock_token_calls() == 1,
           "oauth: the refreshed token is then used without another refresh", "calls %lld", mock_token_calls());
    free(tok);
    ars_account_release(acc);
}

static void test_oauth_processes(void)
{
    char a[ID_LEN];
    flush();
    mock_reset();
    oauth_account(a, "expiring-2", "access-old-2", "refresh-old-2", now_ms() + 30 * 1000LL);
    struct ars_account *acc = cached(a);
    int fds[2][2];
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        if (pipe(fds[i]))
            die("pipe", "failed");
        pids[i] = fork();
        if (pids[i] == 0) {
            close(fds[i][0]);
            struct ars_redis *r = ars_redis_new();
            char *tok = NULL, msg[256], out[128] = "";
            if (ars_oauth_access_token(r, cfg, acc, 0, &tok, msg, sizeof(msg)) == ARS_OK)
                snprintf(out, sizeof(out), "%s", tok);
            free(tok);
            ssize_t w = write(fds[i][1], out, sizeof(out));
            _exit(w == (ssize_t)sizeof(out) ? 0 : 1);
        }
        close(fds[i][1]);
    }
    char got[2][128] = { "", "" };
    for (int i = 0; i < 2; i++) {
        if (read(fds[i][0], got[i], sizeof(got[i])) != (ssize_t)sizeof(got[i]))
            got[i][0] = '\0';
        close(fds[i][0]);
        waitpid(pids[i], NULL, 0);
    }
    long long calls = mock_token_calls();
    expect(calls == 1 && got[0][0] && !strcmp(got[0], got[1]),
           "oauth: two processes asking at once refresh once and share the token",
           "calls %lld, tokens '%s' '%s'", calls, got[0], got[1]);
    ars_account_release(acc);
}

static void test_oauth_force(void)
{
    char a[ID_LEN], msg[256];
    flush();
    mock_reset();
    oauth_account(a, "got-401", "access-401", "refresh-401", now_ms() + 3600 * 1000LL);
    struct ars_account *stale = cached(a);
    char *tok = NULL;
    enum ars_err e = ars_oauth_access_token(R, cfg, stale, 1, &tok, msg, sizeof(msg));
    expect(e == ARS_OK && tok && !strncmp(tok, "mock-access-", 12) && mock_token_calls() == 1,
           "oauth: force refresh after a 401 gets a new token even before expiry", "err %d token '%s' msg '%s'", e,
           tok ? tok : "", msg);
    char *tok2 = NULL;
    e = ars_oauth_access_token(R, cfg, stale, 1, &tok2, msg, sizeof(msg));
    expect(e == ARS_OK && tok && tok2 && !strcmp(tok, tok2) && mock_token_calls() == 1,
           "oauth: a second 401 on the old token adopts the token another thread just stored",
           "err %d calls %lld", e, mock_token_calls());
    free(tok);
    free(tok2);
    ars_account_release(stale);
}

static void test_oauth_invalid(void)
{
    char a[ID_LEN], b[ID_LEN], msg[256], status[64];
    flush();
    mock_reset();
    oauth_account(a, "revoked", "access-x", "invalid", now_ms() + 10 * 1000LL);
    console(b, "B", 90, 0, NULL);
    struct ars_account *acc = cached(a);
    char *tok = NULL;
    enum ars_err e = ars_oauth_access_token(R, cfg, acc, 0, &tok, msg, sizeof(msg));
    record_status(a, status, sizeof(status));
    expect(e == ARS_ERR_INVALID && !tok && strstr(msg, "invalid_grant") && strstr(msg, "unauthorized") &&
               !strcmp(status, "unauthorized"),
           "oauth: a rejected refresh token marks the account unauthorized with a clear message",
           "err %d status '%s' msg '%s'", e, status, msg);
    ars_account_release(acc);
    struct result r = pick(NULL, "claude-sonnet-4-5", NULL, "r1", now_ms());
    release(r.id, "r1");
    expect(r.err == ARS_OK && !strcmp(r.id, b), "oauth: the unauthorized account leaves the pool", "got %s",
           name_of(r.id, a, b, NULL));
}

int main(int argc, char **argv)
{
    const char *port = NULL;
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--redis-port"))
            port = argv[++i];
        else if (!strcmp(argv[i], "--mock"))
            mock_url = argv[++i];
    }
    if (!port) {
        fprintf(stderr, "usage: %s --redis-port PORT [--mock http://127.0.0.1:PORT]\n", argv[0]);
        return 2;
    }
    printf("# plan: %d checks\n", SCHED_TEST_PLAN);
    char port_env[64], token_url[600], err[512];
    snprintf(port_env, sizeof(port_env), "REDIS_PORT=%s", port);
    snprintf(token_url, sizeof(token_url), "OAUTH_TOKEN_URL=%s/v1/oauth/token", mock_url ? mock_url : "http://127.0.0.1:9");
    char *env[] = { "JWT_SECRET=0123456789abcdef0123456789abcdef-jwt",
                    "ENCRYPTION_KEY=0123456789abcdef0123456789abcdef",
                    port_env,
                    "REDIS_KEY_PREFIX=schedtest:",
                    "ACCOUNT_CACHE_SECONDS=60",
                    "LEASE_TTL_SECONDS=300",
                    "STICKY_TTL_SECONDS=3600",
                    "COOLDOWN_MAX_SECONDS=1800",
                    "RATE_LIMIT_COOLDOWN_SECONDS=60",
                    "OVERLOAD_COOLDOWN_SECONDS=45",
                    "ERROR_THRESHOLD=3",
                    "ERROR_WINDOW_SECONDS=300",
                    "ERROR_COOLDOWN_SECONDS=240",
                    "ERROR_MARKS_PER_KEY_PER_MINUTE=2",
                    "TRANSPORT_BACKOFF_SECONDS=2",
                    "OAUTH_REFRESH_AHEAD_SECONDS=300",
                    "OAUTH_CLIENT_ID=test-client-id",
                    token_url,
                    NULL };
    if (ars_config_load(NULL, 0, env, &cfg, err, sizeof(err))) {
        fprintf(stderr, "config: %s\n", err);
        return 2;
    }
    ars_log_setup(ARS_LOG_INFO, ARS_LOG_LOGFMT);
    curl_global_init(CURL_GLOBAL_ALL);
    R = ars_redis_new();
    double latency;
    if (ars_redis_ping(R, cfg, 2000, &latency)) {
        fprintf(stderr, "redis on port %s: %s\n", port, ars_redis_error(R));
        return 2;
    }

    test_no_accounts();
    test_priority();
    test_inflight_then_lru();
    test_sticky();
    test_busy_sticky_spills();
    test_stale_binding_rewritten();
    test_family_cooldown();
    test_retry_after_and_all_cooling();
    test_default_429_529_and_cap();
    test_error_threshold();
    test_excluded();
    test_dedicated();
    test_group();
    test_leases();
    test_pick_cancel(port);
    test_breaker();
    test_marks_per_key();
    test_cache();
    test_two_processes();
    if (mock_url) {
        test_oauth_fresh_and_console();
        test_oauth_threads();
        test_oauth_processes();
        test_oauth_force();
        test_oauth_invalid();
    } else {
        expect(0, "the OAuth cases run (they need --mock URL)", NULL);
    }

    flush();
    ars_sched_cache_free();
    ars_redis_free(R);
    ars_config_free(cfg);
    curl_global_cleanup();
    if (checks != SCHED_TEST_PLAN) {
        printf("FAIL - the program ran the checks it planned: %d of %d\n", checks, SCHED_TEST_PLAN);
        failures++;
    }
    printf("# %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
