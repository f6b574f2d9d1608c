#include "scheduler.h"
#include "clock.h"

#include <ctype.h>
#include <hiredis.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "accounts.h"
#include "config.h"
#include "entities.h"
#include "keys.h"
#include "log.h"
#include "records.h"
#include "redis.h"
#include "usage.h"

/* A lease zset outlives its newest lease by this much, so an idle
 * account's zset disappears by itself. */
#define LEASE_KEY_SLACK_MS   60000LL
#define MIN_COOLDOWN_MS      1000LL

static const char *const families[] = { "opus", "sonnet", "haiku", "fable", "other" };
#define NFAMILIES (sizeof(families) / sizeof(families[0]))

/* ------------------------------------------------------------------ */
/* small helpers                                                        */


static json_object *member(json_object *o, const char *name)
{
    json_object *v = NULL;
    if (o)
        json_object_object_get_ex(o, name, &v);
    return v;
}

static char *dup_member(json_object *o, const char *name)
{
    json_object *v = member(o, name);
    return strdup(v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "");
}

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return 1;
    return 0;
}

/* "P pool:{pool}:<a>[:<b>]" in a malloc'd string. */
static char *pool_key(const struct ars_config *cfg, const char *a, const char *b, const char *c)
{
    size_t n = strlen(cfg->redis_key_prefix) + strlen("pool:{pool}:") + strlen(a) + 2 +
               (b ? strlen(b) + 1 : 0) + (c ? strlen(c) + 1 : 0);
    char *k = malloc(n);
    if (!k)
        return NULL;
    snprintf(k, n, "%spool:{pool}:%s%s%s%s%s", cfg->redis_key_prefix, a, b ? ":" : "", b ? b : "",
             c ? ":" : "", c ? c : "");
    return k;
}

/* ------------------------------------------------------------------ */
/* accounts                                                             */

/* Wipes a secret before freeing it. */
static void free_secret(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = 0;
    free(s);
}

void ars_account_release(struct ars_account *a)
{
    if (!a || atomic_fetch_sub(&a->refs, 1) != 1)
        return;
    free(a->id);
    free(a->name);
    free(a->status);
    ars_string_list_free(a->groups);
    free(a->base_url);
    for (size_t i = 0; i < a->nmodel_mapping; i++) {
        free(a->model_mapping[i].from);
        free(a->model_mapping[i].to);
    }
    free(a->model_mapping);
    free_secret(a->proxy);
    free_secret(a->access_token);
    free_secret(a->refresh_token);
    free(a->scopes);
    free_secret(a->api_key);
    free(a);
}

static int add_group(struct ars_account *a, const char *gid)
{
    size_t n = 0;
    for (; a->groups && a->groups[n]; n++)
        if (strcmp(a->groups[n], gid) == 0)
            return 0;
    char **g = realloc(a->groups, (n + 2) * sizeof(*g));
    if (!g)
        return -1;
    a->groups = g;
    g[n] = strdup(gid);
    g[n + 1] = NULL;
    return g[n] ? 0 : -1;
}

/* scopes: a space-separated string, or an array of strings. */
static char *scopes_of(json_object *v)
{
    if (!v)
        return strdup("");
    if (!json_object_is_type(v, json_type_array))
        return strdup(json_object_get_string(v));
    size_t len = 1;
    for (size_t i = 0; i < json_object_array_length(v); i++)
        len += strlen(json_object_get_string(json_object_array_get_idx(v, i))) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < json_object_array_length(v); i++)
        o += (size_t)snprintf(s + o, len - o, "%s%s", i ? " " : "",
                              json_object_get_string(json_object_array_get_idx(v, i)));
    s[o] = '\0';
    return s;
}

enum ars_err ars_account_from_record(const struct ars_config *cfg, json_object *rec,
                                     struct ars_account **out, char *err, size_t errlen)
{
    *out = NULL;
    json_object *creds = NULL;
    enum ars_err rc = ARS_ERR_NOMEM;
    struct ars_account *a = calloc(1, sizeof(*a));
    if (!a)
        return ARS_ERR_NOMEM;
    atomic_init(&a->refs, 1);
    a->id = dup_member(rec, "id");
    a->name = dup_member(rec, "name");
    a->status = dup_member(rec, "status");
    a->base_url = dup_member(rec, "base_url");
    if (!a->id || !a->name || !a->status || !a->base_url)
        goto out;
    if (!a->id[0]) {
        snprintf(err, errlen, "record without an id");
        rc = ARS_ERR_INVALID;
        goto out;
    }
    json_object *v = member(rec, "type");
    const char *type = v ? json_object_get_string(v) : "";
    if (strcmp(type, "claude-oauth") == 0) {
        a->type = ARS_ACCOUNT_OAUTH;
    } else if (strcmp(type, "claude-console") == 0) {
        a->type = ARS_ACCOUNT_CONSOLE;
    } else {
        snprintf(err, errlen, "account %s: unknown type \"%.40s\"", a->id, type);
        rc = ARS_ERR_INVALID;
        goto out;
    }
    v = member(rec, "priority");
    a->priority = v ? (int)json_object_get_int64(v) : 50;
    if (a->priority < 1 || a->priority > 100)
        a->priority = 50;
    v = member(rec, "schedulable");
    a->schedulable = !v || json_object_get_boolean(v);
    v = member(rec, "deleted");
    a->deleted = v && json_object_get_boolean(v);
    v = member(rec, "concurrency_limit");
    a->concurrency_limit = v ? json_object_get_int64(v) : 0;
    if (a->concurrency_limit < 0)
        a->concurrency_limit = 0;
    v = member(rec, "version");
    a->version = v ? json_object_get_int64(v) : 0;

    a->groups = calloc(1, sizeof(*a->groups));
    if (!a->groups)
        goto out;
    v = member(rec, "groups");
    for (size_t i = 0; v && json_object_is_type(v, json_type_array) && i < json_object_array_length(v); i++) {
        json_object *g = json_object_array_get_idx(v, i);
        if (json_object_is_type(g, json_type_string) && json_object_get_string_len(g) &&
            add_group(a, json_object_get_string(g)))
            goto out;
    }

    v = member(rec, "model_mapping");
    if (v && json_object_is_type(v, json_type_object) && json_object_object_length(v) > 0) {
        a->model_mapping = calloc((size_t)json_object_object_length(v), sizeof(*a->model_mapping));
        if (!a->model_mapping)
            goto out;
        json_object_object_foreach(v, from, to) {
            if (!json_object_is_type(to, json_type_string))
                continue;
            struct ars_model_pair *p = &a->model_mapping[a->nmodel_mapping++];
            p->from = strdup(from);
            p->to = strdup(json_object_get_string(to));
            if (!p->from || !p->to)
                goto out;
        }
    }

    rc = ars_accounts_proxy(cfg, rec, &a->proxy, err, errlen);
    if (rc)
        goto out;
    rc = ars_accounts_credentials(cfg, rec, &creds, err, errlen);
    if (rc)
        goto out;
    rc = ARS_ERR_NOMEM;
    a->access_token = dup_member(creds, "access_token");
    a->refresh_token = dup_member(creds, "refresh_token");
    a->api_key = dup_member(creds, "api_key");
    a->scopes = scopes_of(member(creds, "scopes"));
    v = member(creds, "expires_at");
    a->token_expires_ms = v ? json_object_get_int64(v) : 0;
    if (!a->access_token || !a->refresh_token || !a->api_key || !a->scopes)
        goto out;
    rc = ARS_OK;
out:
    json_object_put(creds);
    if (rc) {
        ars_account_release(a);
        return rc;
    }
    *out = a;
    return ARS_OK;
}

const char *ars_account_map_model(const struct ars_account *a, const char *model)
{
    if (!a || !model)
        return model;
    for (size_t i = 0; i < a->nmodel_mapping; i++)
        if (strcasecmp(a->model_mapping[i].from, model) == 0)
            return a->model_mapping[i].to;
    return model;
}

const char *ars_model_family(const char *model)
{
    for (size_t i = 0; model && i + 1 < NFAMILIES; i++)
        if (contains_ci(model, families[i]))
            return families[i];
    return "other";
}

static int in_group(const struct ars_account *a, const char *gid)
{
    for (char **g = a->groups; g && *g; g++)
        if (strcmp(*g, gid) == 0)
            return 1;
    return 0;
}

static int schedulable(const struct ars_account *a)
{
    return !a->deleted && a->schedulable && (a->status[0] == '\0' || strcmp(a->status, "active") == 0);
}

/* ------------------------------------------------------------------ */
/* the process-wide account cache                                       */

struct group_info {
    char *id;
    char *name;
};

/* One loaded list, shared by every pick that started while it was
 * current; the last holder frees it. */
struct snapshot {
    atomic_int refs;
    struct ars_account **accounts;   /* by priority, then creation (newest first) */
    size_t n;
    struct group_info *groups;
    size_t ngroups;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;   /* cur, cur_loaded_ms, cur_stale */
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;    /* one loader at a time */
static struct snapshot *cur;
static long long cur_loaded_ms;      /* monotonic */
static int cur_stale;
static atomic_uint cache_gen;        /* bumped by every invalidation */

static void snapshot_release(struct snapshot *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < s->n; i++)
        ars_account_release(s->accounts[i]);
    free(s->accounts);
    for (size_t i = 0; i < s->ngroups; i++) {
        free(s->groups[i].id);
        free(s->groups[i].name);
    }
    free(s->groups);
    free(s);
}

void ars_sched_cache_invalidate(void)
{
    atomic_fetch_add(&cache_gen, 1);
    pthread_mutex_lock(&cache_lock);
    cur_stale = 1;
    pthread_mutex_unlock(&cache_lock);
}

void ars_sched_cache_free(void)
{
    pthread_mutex_lock(&cache_lock);
    struct snapshot *s = cur;
    cur = NULL;
    pthread_mutex_unlock(&cache_lock);
    snapshot_release(s);
}

static int by_priority(const void *x, const void *y)
{
    const struct ars_account *a = *(struct ars_account *const *)x, *b = *(struct ars_account *const *)y;
    return (a->priority > b->priority) - (a->priority < b->priority);
}

static struct ars_account *find_account(struct ars_account **list, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i]->id, id) == 0)
            return list[i];
    return NULL;
}

/* Groups and their member lists: a group's "members" and an account's
 * "groups" both count, so either side of the relation may be edited. */
static enum ars_err load_groups(struct ars_redis *r, const struct ars_config *cfg, struct snapshot *s)
{
    json_object *ids = NULL;
    enum ars_err err = ars_rec_redis_ids(r, cfg, &ars_group_entity, 0, &ids);
    if (err)
        return err;
    size_t n = json_object_array_length(ids);
    s->groups = calloc(n ? n : 1, sizeof(*s->groups));
    if (!s->groups) {
        json_object_put(ids);
        return ARS_ERR_NOMEM;
    }
    for (size_t i = 0; i < n && !err; i++) {
        json_object *rec = NULL;
        err = ars_rec_redis_get(r, cfg, &ars_group_entity, json_object_get_string(json_object_array_get_idx(ids, i)),
                                &rec);
        if (err == ARS_ERR_NOTFOUND) {
            err = ARS_OK;
            continue;
        }
        if (err)
            break;
        struct group_info *g = &s->groups[s->ngroups++];
        g->id = dup_member(rec, "id");
        g->name = dup_member(rec, "name");
        if (!g->id || !g->name)
            err = ARS_ERR_NOMEM;
        json_object *members = member(rec, "members");
        for (size_t m = 0; !err && members && json_object_is_type(members, json_type_array) &&
                           m < json_object_array_length(members); m++) {
            struct ars_account *a =
                find_account(s->accounts, s->n, json_object_get_string(json_object_array_get_idx(members, m)));
            if (a && add_group(a, g->id))
                err = ARS_ERR_NOMEM;
        }
        json_object_put(rec);
    }
    json_object_put(ids);
    return err;
}

static enum ars_err load_snapshot(struct ars_redis *r, const struct ars_config *cfg, struct snapshot **out,
                                  char *errbuf, size_t errlen)
{
    *out = NULL;
    json_object *items = NULL;
    enum ars_err err = ars_accounts_list(r, cfg, 0, &items, errbuf, errlen);
    if (err)
        return err;
    struct snapshot *s = calloc(1, sizeof(*s));
    size_t total = json_object_array_length(items);
    if (!s || !(s->accounts = calloc(total ? total : 1, sizeof(*s->accounts)))) {
        free(s);
        json_object_put(items);
        return ARS_ERR_NOMEM;
    }
    atomic_init(&s->refs, 1);
    for (size_t i = 0; i < total; i++) {
        char why[256] = "";
        struct ars_account *a = NULL;
        enum ars_err e = ars_account_from_record(cfg, json_object_array_get_idx(items, i), &a, why, sizeof(why));
        if (e == ARS_ERR_NOMEM) {
            err = e;
            break;
        }
        if (e) {
            /* One unusable record must not take the pool down. */
            struct ars_logline l;
            ars_log_begin(&l, ARS_LOG_ERROR, NULL, "account_unusable");
            ars_log_str(&l, "account", json_object_get_string(member(json_object_array_get_idx(items, i), "id")));
            ars_log_str(&l, "error", why);
            ars_log_end(&l);
            continue;
        }
        s->accounts[s->n++] = a;
    }
    json_object_put(items);
    if (!err)
        err = load_groups(r, cfg, s);
    if (err) {
        if (!errbuf[0])
            snprintf(errbuf, errlen, "%s", err == ARS_ERR_NOMEM ? "out of memory" : ars_redis_error(r));
        snapshot_release(s);
        return err;
    }
    /* Stable order: the list comes newest first; qsort is not stable, so
     * sort by priority with insertion (lists are small). */
    for (size_t i = 1; i < s->n; i++)
        for (size_t j = i; j > 0 && by_priority(&s->accounts[j - 1], &s->accounts[j]) > 0; j--) {
            struct ars_account *t = s->accounts[j];
            s->accounts[j] = s->accounts[j - 1];
            s->accounts[j - 1] = t;
        }
    if (s->n > ARS_SCHED_MAX_ACCOUNTS) {
        struct ars_logline l;
        ars_log_begin(&l, ARS_LOG_WARN, NULL, "account_cap");
        ars_log_int(&l, "accounts", (long long)s->n);
        ars_log_int(&l, "scheduled", ARS_SCHED_MAX_ACCOUNTS);
        ars_log_str(&l, "msg", "more accounts than ARS_SCHED_MAX_ACCOUNTS: the lowest-priority ones are not scheduled");
        ars_log_end(&l);
        for (size_t i = ARS_SCHED_MAX_ACCOUNTS; i < s->n; i++)
            ars_account_release(s->accounts[i]);
        s->n = ARS_SCHED_MAX_ACCOUNTS;
    }
    *out = s;
    return ARS_OK;
}

/* With load_lock held: loads the list from Redis and makes it current.
 * *out is a reference to the current list afterwards (the new one, or on
 * failure the previous one, if any). */
static enum ars_err load_and_install(struct ars_redis *r, const struct ars_config *cfg, struct snapshot **out,
                                     char *errbuf, size_t errlen)
{
    unsigned gen = atomic_load(&cache_gen);
    struct snapshot *fresh = NULL, *old = NULL;
    errbuf[0] = '\0';
    enum ars_err err = load_snapshot(r, cfg, &fresh, errbuf, errlen);
    pthread_mutex_lock(&cache_lock);
    if (!err) {
        old = cur;
        cur = fresh;
        cur_loaded_ms = ars_mono_ms();
        /* Invalidated while loading: what we read may predate the write. */
        cur_stale = gen != atomic_load(&cache_gen);
    }
    if (cur) {
        atomic_fetch_add(&cur->refs, 1);
        *out = cur;
    }
    pthread_mutex_unlock(&cache_lock);
    snapshot_release(old);
    return err;
}

/* The current list (a reference), reloaded when older than
 * ACCOUNT_CACHE_SECONDS or invalidated. One thread loads; the others keep
 * serving the previous list meanwhile. A failed load keeps the previous
 * list (logged); without one, the error is returned. */
static enum ars_err get_snapshot(struct ars_redis *r, const struct ars_config *cfg, struct snapshot **out,
                                 char *errbuf, size_t errlen)
{
    *out = NULL;
    long long ttl = cfg->account_cache_seconds * 1000;
    pthread_mutex_lock(&cache_lock);
    if (cur && !cur_stale && ars_mono_ms() - cur_loaded_ms < ttl) {
        atomic_fetch_add(&cur->refs, 1);
        *out = cur;
    }
    int have_old = cur != NULL;
    pthread_mutex_unlock(&cache_lock);
    if (*out)
        return ARS_OK;

    if (pthread_mutex_trylock(&load_lock) != 0) {
        if (have_old) {
            pthread_mutex_lock(&cache_lock);
            if (cur) {
                atomic_fetch_add(&cur->refs, 1);
                *out = cur;
            }
            pthread_mutex_unlock(&cache_lock);
            if (*out)
                return ARS_OK;
        }
        pthread_mutex_lock(&load_lock);
        /* Another thread just loaded: use its list if still fresh. */
        pthread_mutex_lock(&cache_lock);
        if (cur && !cur_stale && ars_mono_ms() - cur_loaded_ms < (ttl > 0 ? ttl : 1)) {
            atomic_fetch_add(&cur->refs, 1);
            *out = cur;
        }
        pthread_mutex_unlock(&cache_lock);
        if (*out) {
            pthread_mutex_unlock(&load_lock);
            return ARS_OK;
        }
    }

    enum ars_err err = load_and_install(r, cfg, out, errbuf, errlen);
    pthread_mutex_unlock(&load_lock);
    if (err) {
        struct ars_logline l;
        ars_log_begin(&l, ARS_LOG_WARN, NULL, "account_cache_refresh_failed");
        ars_log_str(&l, "error", errbuf);
        ars_log_str(&l, "kept", *out ? "previous list" : "nothing (no list loaded yet)");
        ars_log_end(&l);
        return *out ? ARS_OK : err;
    }
    return ARS_OK;
}

/* A list loaded after since_ms, waiting for a load in progress rather
 * than falling back to the previous list: for when the previous list
 * lacks an account the request is bound to (it may be brand new). */
static enum ars_err get_fresh_snapshot(struct ars_redis *r, const struct ars_config *cfg, long long since_ms,
                                       struct snapshot **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    pthread_mutex_lock(&load_lock);
    pthread_mutex_lock(&cache_lock);
    if (cur && !cur_stale && cur_loaded_ms >= since_ms) {
        atomic_fetch_add(&cur->refs, 1);
        *out = cur;
    }
    pthread_mutex_unlock(&cache_lock);
    if (*out) {
        pthread_mutex_unlock(&load_lock);
        return ARS_OK;
    }
    enum ars_err err = load_and_install(r, cfg, out, errbuf, errlen);
    pthread_mutex_unlock(&load_lock);
    if (err) {
        snapshot_release(*out);   /* the previous list is what we must not use */
        *out = NULL;
    }
    return err;
}

enum ars_err ars_sched_account(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                               struct ars_account **out)
{
    *out = NULL;
    char errbuf[256];
    struct snapshot *s;
    enum ars_err err = get_snapshot(r, cfg, &s, errbuf, sizeof(errbuf));
    if (err)
        return ARS_ERR_UNAVAILABLE;
    struct ars_account *a = find_account(s->accounts, s->n, id);
    if (a) {
        atomic_fetch_add(&a->refs, 1);
        *out = a;
    }
    snapshot_release(s);
    return a ? ARS_OK : ARS_ERR_NOTFOUND;
}

/* ------------------------------------------------------------------ */
/* the pick                                                             */

/* KEYS[1] last-pick hash, KEYS[2] sticky key, then per candidate i (1..n):
 *   KEYS[4i-1] lease zset, KEYS[4i] cool:AID:all, KEYS[4i+1] cool:AID:FAMILY,
 *   KEYS[4i+2] brk:AID (the transport breaker, see ars_sched_mark_transport);
 *   last, cancel:RID (ars_sched_cancel's tombstone: the request was given
 *   up after a timeout, take nothing).
 * ARGV[1] now ms, [2] lease deadline ms, [3] request id, [4] sticky TTL s
 *   (0: no stickiness), [5] lease zset TTL ms, [6] COOLDOWN_MAX ms, [7] n,
 *   then per candidate: id, priority, concurrency limit; then the number
 *   of excluded ids and the ids; last, until when a probe taken now
 *   blocks other probes (ms).
 * Breaker states: no brk hash: closed. Backing off (until > now): only a
 * last resort, when no other account is available, so a pool never has
 * nothing schedulable for longer than a probe takes. A probe in flight
 * (probe > now): nobody else. Back-off over: an ordinary candidate. An
 * account with a brk hash that is picked becomes the probe (probe = the
 * lease deadline): exactly one request at a time tests it.
 * Returns {1, id, sticky_used, probe} or {0, cooling, busy, soonest_ms}. */
static struct ars_redis_script pick_script = ARS_REDIS_SCRIPT(
    "if redis.call('EXISTS', KEYS[#KEYS]) == 1 then return {0, 0, 0, -1} end\n"
    "local now = tonumber(ARGV[1])\n"
    "local n = tonumber(ARGV[7])\n"
    "local sticky_ttl = tonumber(ARGV[4])\n"
    "local cool_max = tonumber(ARGV[6])\n"
    "local bound = false\n"
    "if sticky_ttl > 0 then bound = redis.call('GET', KEYS[2]) end\n"
    "local pick, p_prio, p_load, p_last, sticky_i, last_resort, lr_prio\n"
    "local bound_seen = false\n"
    "local ncool, nbusy, soonest = 0, 0, -1\n"
    "for i = 1, n do\n"
    "  local id = ARGV[5 + 3 * i]\n"
    "  local prio = tonumber(ARGV[6 + 3 * i])\n"
    "  local limit = tonumber(ARGV[7 + 3 * i])\n"
    "  local kconc = KEYS[4 * i - 1]\n"
    "  redis.call('ZREMRANGEBYSCORE', kconc, '-inf', now)\n"
    "  local load = redis.call('ZCARD', kconc)\n"
    "  local wait = 0\n"
    "  for _, k in ipairs({KEYS[4 * i], KEYS[4 * i + 1]}) do\n"
    "    local t = redis.call('PTTL', k)\n"
    "    if t == -1 then redis.call('PEXPIRE', k, cool_max) t = cool_max end\n"
    "    if t > wait then wait = t end\n"
    "  end\n"
    "  local b = redis.call('HMGET', KEYS[4 * i + 2], 'until', 'probe')\n"
    "  local b_until, b_probe = tonumber(b[1]), tonumber(b[2]) or 0\n"
    "  if bound == id then bound_seen = true end\n"
    "  if wait > 0 then\n"
    "    ncool = ncool + 1\n"
    "    if soonest < 0 or wait < soonest then soonest = wait end\n"
    "  elseif limit > 0 and load >= limit then\n"
    "    nbusy = nbusy + 1\n"
    "  elseif b_until and (b_probe > now or b_until > now) then\n"
    "    ncool = ncool + 1\n"
    "    local w = b_until - now\n"
    "    if w < 1000 then w = 1000 end\n"
    "    if soonest < 0 or w < soonest then soonest = w end\n"
    "    if b_probe <= now and (not last_resort or prio < lr_prio) then last_resort, lr_prio = i, prio end\n"
    "  else\n"
    "    if bound == id then sticky_i = i end\n"
    "    local last = tonumber(redis.call('HGET', KEYS[1], id) or '0') or 0\n"
    "    if not pick or prio < p_prio or (prio == p_prio and (load < p_load or\n"
    "        (load == p_load and last < p_last))) then\n"
    "      pick, p_prio, p_load, p_last = i, prio, load, last\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if sticky_i then pick = sticky_i end\n"
    "if not pick then pick = last_resort end\n"
    "if not pick then return {0, ncool, nbusy, soonest} end\n"
    "local id = ARGV[5 + 3 * pick]\n"
    "local kconc = KEYS[4 * pick - 1]\n"
    "local probe = 0\n"
    "if redis.call('HEXISTS', KEYS[4 * pick + 2], 'until') == 1 then\n"
    "  redis.call('HSET', KEYS[4 * pick + 2], 'probe', ARGV[#ARGV])\n"
    "  probe = 1\n"
    "end\n"
    "redis.call('ZADD', kconc, ARGV[2], ARGV[3])\n"
    "if redis.call('PTTL', kconc) < tonumber(ARGV[5]) then redis.call('PEXPIRE', kconc, ARGV[5]) end\n"
    "redis.call('HSET', KEYS[1], id, ARGV[1])\n"
    "local used = 0\n"
    "if sticky_ttl > 0 then\n"
    "  if sticky_i then\n"
    "    redis.call('EXPIRE', KEYS[2], sticky_ttl)\n"
    "    used = 1\n"
    "  else\n"
    "    local stale = false\n"
    "    if bound and not bound_seen then\n"
    "      stale = true\n"
    "      local base = 8 + 3 * n\n"
    "      for j = 1, tonumber(ARGV[base]) do\n"
    "        if ARGV[base + j] == bound then stale = false end\n"
    "      end\n"
    "    end\n"
    "    if (not bound or stale) and pick ~= last_resort then redis.call('SET', KEYS[2], id, 'EX', sticky_ttl) end\n"
    "  end\n"
    "end\n"
    "return {1, id, used, probe}\n");

static int excluded(const char *id, const char *const *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] && strcmp(ids[i], id) == 0)
            return 1;
    return 0;
}

static void format_utc(long long ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, n, "%lld", ms);
}

static const char *label_of(const struct ars_account *a)
{
    return a->name[0] ? a->name : a->id;
}

static const char *group_name(const struct snapshot *s, const char *gid)
{
    for (size_t i = 0; i < s->ngroups; i++)
        if (strcmp(s->groups[i].id, gid) == 0)
            return s->groups[i].name[0] ? s->groups[i].name : gid;
    return gid;
}

/* Why nothing was eligible before asking Redis. */
static void why_no_candidates(const struct snapshot *s, const char *dedicated, const char *group,
                              size_t in_scope, size_t nexcluded, char *why, size_t whylen)
{
    if (dedicated) {
        const struct ars_account *a = find_account(s->accounts, s->n, dedicated);
        if (!a)
            snprintf(why, whylen, "dedicated account %s unavailable (deleted or unknown)", dedicated);
        else if (!a->schedulable)
            snprintf(why, whylen, "dedicated account %s unavailable (disabled)", label_of(a));
        else if (!schedulable(a))
            snprintf(why, whylen, "dedicated account %s unavailable (status %s)", label_of(a), a->status);
        else
            snprintf(why, whylen, "dedicated account %s unavailable (it already failed this request)", label_of(a));
    } else if (group) {
        if (!in_scope)
            snprintf(why, whylen, "group %s has no accounts", group_name(s, group));
        else if (nexcluded)
            snprintf(why, whylen, "group %s: no other account to try (%zu already failed this request)",
                     group_name(s, group), nexcluded);
        else
            snprintf(why, whylen, "group %s: none of its %zu accounts is active and schedulable",
                     group_name(s, group), in_scope);
    } else if (!s->n) {
        snprintf(why, whylen, "no accounts configured");
    } else if (nexcluded) {
        snprintf(why, whylen, "no other account to try (%zu already failed this request)", nexcluded);
    } else {
        snprintf(why, whylen, "no schedulable accounts (%zu configured, none active and schedulable)", s->n);
    }
}

/* Why every candidate was refused by the script. */
static void why_unavailable(const struct snapshot *s, const struct ars_account *dedicated, const char *group,
                            size_t n, long long ncool, long long nbusy, long long soonest_ms, long long now_ms,
                            char *why, size_t whylen)
{
    long long secs = (soonest_ms + 999) / 1000;
    if (dedicated) {
        if (ncool) {
            char until[32];
            format_utc(now_ms + soonest_ms, until, sizeof(until));
            snprintf(why, whylen, "dedicated account %s unavailable (cooling down until %s, back in %lld s)",
                     label_of(dedicated), until, secs);
        } else {
            snprintf(why, whylen, "dedicated account %s unavailable (at its concurrency limit of %lld)",
                     label_of(dedicated), dedicated->concurrency_limit);
        }
        return;
    }
    char prefix[160] = "";
    if (group)
        snprintf(prefix, sizeof(prefix), "group %s: ", group_name(s, group));
    if (n == 1 && ncool)
        snprintf(why, whylen, "%sthe only schedulable account is cooling down (back in %lld s)", prefix, secs);
    else if (n == 1)
        snprintf(why, whylen, "%sthe only schedulable account is busy (at its concurrency limit)", prefix);
    else if (ncool == (long long)n)
        snprintf(why, whylen, "%sall %zu accounts cooling down (soonest back in %lld s)", prefix, n, secs);
    else if (nbusy == (long long)n)
        snprintf(why, whylen, "%sall %zu accounts busy (at their concurrency limit)", prefix, n);
    else
        snprintf(why, whylen,
                 "%sall %zu accounts busy or cooling down (%lld at their concurrency limit, %lld cooling down, "
                 "soonest back in %lld s)", prefix, n, nbusy, ncool, secs);
}

/* Every string the pick script gets, owned here. */
struct argv_list {
    const char **v;
    char **owned;
    size_t n, nowned, cap;
};

static int argv_add(struct argv_list *l, const char *s, int own)
{
    if (!s)
        return -1;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        const char **v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return -1;
        l->v = v;
        char **o = realloc(l->owned, cap * sizeof(*o));
        if (!o)
            return -1;
        l->owned = o;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    if (own)
        l->owned[l->nowned++] = (char *)s;
    return 0;
}

static int argv_add_owned(struct argv_list *l, char *s)
{
    if (argv_add(l, s, 1)) {
        free(s);
        return -1;
    }
    return 0;
}

static int argv_add_int(struct argv_list *l, long long x)
{
    char num[24];
    snprintf(num, sizeof(num), "%lld", x);
    return argv_add_owned(l, strdup(num));
}

static void argv_free(struct argv_list *l)
{
    for (size_t i = 0; i < l->nowned; i++)
        free(l->owned[i]);
    free(l->owned);
    free(l->v);
}

/* Session ids are the client's: a long one is reduced to its SHA-256. */
static void session_key_part(const char *session, char *out, size_t n)
{
    size_t len = strlen(session);
    if (len <= ARS_SCHED_MAX_SESSION_LEN) {
        snprintf(out, n, "%s", session);
        return;
    }
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)session, len, md);
    for (int i = 0; i < SHA256_DIGEST_LENGTH && (size_t)(2 * i + 2) < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* The accounts of snapshot s this request may use: the bound account or
 * group (or the whole pool), schedulable, not excluded by failover. */
static void collect(const struct snapshot *s, const char *dedicated, const char *group,
                    const char *const *exclude_ids, size_t nexclude, const struct ars_account **cand,
                    size_t *ncand, size_t *in_scope, size_t *nexcluded)
{
    *ncand = *in_scope = *nexcluded = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct ars_account *a = s->accounts[i];
        if (dedicated && strcmp(a->id, dedicated) != 0)
            continue;
        if (group && !in_group(a, group))
            continue;
        (*in_scope)++;
        if (!schedulable(a))
            continue;
        if (excluded(a->id, exclude_ids, nexclude)) {
            (*nexcluded)++;
            continue;
        }
        cand[(*ncand)++] = a;
    }
}

enum ars_err ars_sched_pick(struct ars_redis *r, const struct ars_config *cfg, const struct ars_key *k,
                            const char *model, const char *session_hash, const char *request_id,
                            const char *const *exclude_ids, size_t nexclude, long long now_ms,
                            struct ars_pick *out, char *why, size_t whylen)
{
    char dummy[8];
    if (!why || !whylen) {
        why = dummy;
        whylen = sizeof(dummy);
    }
    why[0] = '\0';
    memset(out, 0, sizeof(*out));
    if (!request_id || !*request_id) {
        snprintf(why, whylen, "scheduler: no request id");
        return ARS_ERR_INVALID;
    }
    struct snapshot *s = NULL;
    char errbuf[256];
    long long started_ms = ars_mono_ms();
    enum ars_err err = get_snapshot(r, cfg, &s, errbuf, sizeof(errbuf));
    if (err) {
        snprintf(why, whylen, "account list unavailable (%s)", errbuf[0] ? errbuf : ars_err_str(err));
        return ARS_ERR_UNAVAILABLE;
    }

    const char *binding = k && k->account_binding ? k->account_binding : "";
    const char *group = strncmp(binding, "group:", 6) == 0 ? binding + 6 : NULL;
    const char *dedicated = binding[0] && !group ? binding : NULL;
    const char *family = ars_model_family(model);
    struct argv_list args = { 0 };
    redisReply *rep = NULL;
    const struct ars_account **cand = calloc(s->n ? s->n : 1, sizeof(*cand));
    if (!cand) {
        err = ARS_ERR_NOMEM;
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    size_t ncand = 0, in_scope = 0, nexcluded = 0;
    collect(s, dedicated, group, exclude_ids, nexclude, cand, &ncand, &in_scope, &nexcluded);
    if (in_scope == 0 && (dedicated || group)) {
        /* The bound account is not in this list: it may be newer than the
         * list. Wait for a fresh one before calling it unavailable. */
        struct snapshot *fresh;
        if (get_fresh_snapshot(r, cfg, started_ms, &fresh, errbuf, sizeof(errbuf)) == ARS_OK) {
            const struct ars_account **more = calloc(fresh->n ? fresh->n : 1, sizeof(*more));
            if (more) {
                snapshot_release(s);
                s = fresh;
                free(cand);
                cand = more;
                collect(s, dedicated, group, exclude_ids, nexclude, cand, &ncand, &in_scope, &nexcluded);
            } else {
                snapshot_release(fresh);
            }
        }
    }
    if (!ncand) {
        why_no_candidates(s, dedicated, group, in_scope, nexcluded, why, whylen);
        err = ARS_ERR_NOTFOUND;
        goto out;
    }

    int sticky = session_hash && *session_hash && cfg->sticky_ttl_seconds > 0 && !dedicated;
    char session[2 * SHA256_DIGEST_LENGTH + ARS_SCHED_MAX_SESSION_LEN + 1] = "";
    if (sticky)
        session_key_part(session_hash, session, sizeof(session));
    int bad = argv_add_owned(&args, pool_key(cfg, "last", NULL, NULL)) ||
              argv_add_owned(&args, pool_key(cfg, "sticky", session, NULL));
    for (size_t i = 0; i < ncand && !bad; i++)
        bad = argv_add_owned(&args, pool_key(cfg, "conc", cand[i]->id, NULL)) ||
              argv_add_owned(&args, pool_key(cfg, "cool", cand[i]->id, "all")) ||
              argv_add_owned(&args, pool_key(cfg, "cool", cand[i]->id, family)) ||
              argv_add_owned(&args, pool_key(cfg, "brk", cand[i]->id, NULL));
    bad = bad || argv_add_owned(&args, pool_key(cfg, "cancel", request_id, NULL));
    int nkeys = (int)args.n;
    bad = bad || argv_add_int(&args, now_ms) || argv_add_int(&args, now_ms + cfg->lease_ttl_seconds * 1000) ||
          argv_add(&args, request_id, 0) || argv_add_int(&args, sticky ? cfg->sticky_ttl_seconds : 0) ||
          argv_add_int(&args, cfg->lease_ttl_seconds * 1000 + LEASE_KEY_SLACK_MS) ||
          argv_add_int(&args, cfg->cooldown_max_seconds * 1000) || argv_add_int(&args, (long long)ncand);
    for (size_t i = 0; i < ncand && !bad; i++)
        bad = argv_add(&args, cand[i]->id, 0) || argv_add_int(&args, cand[i]->priority) ||
              argv_add_int(&args, cand[i]->concurrency_limit);
    bad = bad || argv_add_int(&args, (long long)nexclude);
    for (size_t i = 0; i < nexclude && !bad; i++)
        bad = argv_add(&args, exclude_ids[i] ? exclude_ids[i] : "", 0);
    /* A probe ends with its answer head or its failure; this bounds one
     * whose relay died: the connect timeout plus ARS_SCHED_PROBE_SLACK_MS. */
    bad = bad || argv_add_int(&args, now_ms + cfg->upstream_connect_timeout_ms + ARS_SCHED_PROBE_SLACK_MS);
    if (bad) {
        err = ARS_ERR_NOMEM;
        snprintf(why, whylen, "out of memory");
        goto out;
    }

    err = ars_redis_eval(r, cfg, &pick_script, &rep, nkeys, (int)args.n - nkeys, args.v, NULL);
    if (err) {
        snprintf(why, whylen, "Redis unavailable (%s)", ars_redis_error(r));
        err = ARS_ERR_UNAVAILABLE;
        /* The script may still run after this timeout and take a lease
         * on some account: queue a compensating release (see
         * ars_sched_cancel). */
        struct ars_logline l;
        ars_log_begin(&l, ARS_LOG_WARN, request_id, "sched_pick_unavailable");
        ars_log_str(&l, "error", ars_redis_error(r));
        ars_log_str(&l, "action", "compensating release queued");
        ars_log_end(&l);
        if (ars_usage_cancel_later(cfg, request_id, k ? k->id : NULL, 0, 1) != ARS_OK)
            ars_log_msg(ARS_LOG_ERROR, request_id, "lease_release_lost",
                        "the compensating release could not be queued: the lease stays until its deadline");
        goto out;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 || rep->element[0]->type != REDIS_REPLY_INTEGER) {
        snprintf(why, whylen, "Redis: unexpected answer to the scheduler script (%.120s)",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "not an array");
        err = ARS_ERR_UNAVAILABLE;
        goto out;
    }
    if (rep->element[0]->integer == 1) {
        const redisReply *id = rep->element[1];
        const struct ars_account *a = NULL;
        for (size_t i = 0; i < ncand && !a && id->type == REDIS_REPLY_STRING; i++)
            if (strlen(cand[i]->id) == id->len && memcmp(cand[i]->id, id->str, id->len) == 0)
                a = cand[i];
        if (!a) {
            snprintf(why, whylen, "Redis: the scheduler script picked an unknown account");
            err = ARS_ERR_UNAVAILABLE;
            goto out;
        }
        atomic_fetch_add(&((struct ars_account *)a)->refs, 1);
        out->account = (struct ars_account *)a;
        out->sticky = rep->element[2]->type == REDIS_REPLY_INTEGER && rep->element[2]->integer == 1;
        out->probe = rep->elements > 3 && rep->element[3]->type == REDIS_REPLY_INTEGER &&
                     rep->element[3]->integer == 1;
        err = ARS_OK;
        goto out;
    }
    if (rep->elements < 4) {
        snprintf(why, whylen, "Redis: unexpected answer to the scheduler script");
        err = ARS_ERR_UNAVAILABLE;
        goto out;
    }
    why_unavailable(s, dedicated ? cand[0] : NULL, group, ncand, rep->element[1]->integer,
                    rep->element[2]->integer, rep->element[3]->integer, now_ms, why, whylen);
    err = ARS_ERR_NOTFOUND;
out:
    if (rep)
        freeReplyObject(rep);
    argv_free(&args);
    free(cand);
    snapshot_release(s);
    return err;
}

/* ------------------------------------------------------------------ */
/* leases                                                               */

void ars_sched_lease_key(const struct ars_config *cfg, const char *account_id, char *out, size_t n)
{
    snprintf(out, n, "%spool:{pool}:conc:%s", cfg->redis_key_prefix, account_id);
}

/* KEYS[1] cancel:RID, then every account's lease zset; ARGV request id,
 * tombstone TTL ms. */
static struct ars_redis_script cancel_script = ARS_REDIS_SCRIPT(
    "redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])\n"
    "local n = 0\n"
    "for i = 2, #KEYS do n = n + redis.call('ZREM', KEYS[i], ARGV[1]) end\n"
    "return n\n");

/* Which account the lost pick chose is unknown, so the request's lease is
 * removed from every account of the current list (ZREM of a missing
 * member is a no-op); the tombstone stops a pick script that runs later.
 * This path is rare (a Redis timeout), so one call with up to
 * ARS_SCHED_MAX_ACCOUNTS keys is fine. */
enum ars_err ars_sched_cancel(struct ars_redis *r, const struct ars_config *cfg, const char *request_id)
{
    struct snapshot *s = NULL;
    char errbuf[256];
    enum ars_err err = get_snapshot(r, cfg, &s, errbuf, sizeof(errbuf));
    if (err)
        return ARS_ERR_UNAVAILABLE;
    struct argv_list args = { 0 };
    int bad = argv_add_owned(&args, pool_key(cfg, "cancel", request_id, NULL));
    for (size_t i = 0; i < s->n && !bad; i++)
        bad = argv_add_owned(&args, pool_key(cfg, "conc", s->accounts[i]->id, NULL));
    int nkeys = (int)args.n;
    bad = bad || argv_add(&args, request_id, 0) ||
          argv_add_int(&args, cfg->lease_ttl_seconds * 1000 + LEASE_KEY_SLACK_MS);
    redisReply *rep = NULL;
    err = bad ? ARS_ERR_NOMEM : ars_redis_eval(r, cfg, &cancel_script, &rep, nkeys, (int)args.n - nkeys, args.v, NULL);
    if (!err && rep->type != REDIS_REPLY_INTEGER)
        err = ARS_ERR_UNAVAILABLE;
    if (rep)
        freeReplyObject(rep);
    argv_free(&args);
    snapshot_release(s);
    return err;
}

static struct ars_redis_script refresh_script = ARS_REDIS_SCRIPT(
    "redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])\n"
    "if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end\n"
    "return 1\n");

enum ars_err ars_sched_refresh(struct ars_redis *r, const struct ars_config *cfg, const char *account_id,
                               const char *request_id, long long now_ms)
{
    char *key = pool_key(cfg, "conc", account_id, NULL);
    if (!key)
        return ARS_ERR_NOMEM;
    char deadline[24], ttl[24];
    snprintf(deadline, sizeof(deadline), "%lld", now_ms + cfg->lease_ttl_seconds * 1000);
    snprintf(ttl, sizeof(ttl), "%lld", cfg->lease_ttl_seconds * 1000 + LEASE_KEY_SLACK_MS);
    const char *kv[] = { key, deadline, request_id, ttl };
    redisReply *rep;
    enum ars_err err = ars_redis_eval(r, cfg, &refresh_script, &rep, 1, 3, kv, NULL);
    free(key);
    if (err)
        return err;
    if (rep->type == REDIS_REPLY_ERROR)
        err = ARS_ERR_UNAVAILABLE;
    freeReplyObject(rep);
    return err;
}

enum ars_err ars_sched_release(struct ars_redis *r, const struct ars_config *cfg, const char *account_id,
                               const char *request_id)
{
    char *key = pool_key(cfg, "conc", account_id, NULL);
    if (!key)
        return ARS_ERR_NOMEM;
    const char *argv[] = { "ZREM", key, request_id };
    redisReply *rep;
    enum ars_err err = ars_redis_cmd(r, cfg, &rep, 3, argv, NULL);
    free(key);
    if (err)
        return err;
    if (rep->type == REDIS_REPLY_ERROR)
        err = ARS_ERR_UNAVAILABLE;
    freeReplyObject(rep);
    return err;
}

/* ------------------------------------------------------------------ */
/* header parsing (pure)                                                */

static void skip_spaces(const char **p)
{
    while (**p == ' ' || **p == '\t')
        (*p)++;
}

/* Up to maxd digits (at least 1); -1 when none. */
static int take_number(const char **p, int maxd, int *out)
{
    int v = 0, d = 0;
    while (d < maxd && isdigit((unsigned char)**p)) {
        v = v * 10 + (**p - '0');
        (*p)++;
        d++;
    }
    if (!d)
        return -1;
    *out = v;
    return 0;
}

static int take_word(const char **p, char *buf, size_t n)
{
    size_t i = 0;
    while (isalpha((unsigned char)**p)) {
        if (i + 1 < n)
            buf[i++] = (char)tolower((unsigned char)**p);
        else
            return -1;
        (*p)++;
    }
    buf[i] = '\0';
    return i ? 0 : -1;
}

static int take_char(const char **p, char c)
{
    if (**p != c)
        return -1;
    (*p)++;
    return 0;
}

static int month_of(const char *m)
{
    static const char names[][4] = { "jan", "feb", "mar", "apr", "may", "jun",
                                     "jul", "aug", "sep", "oct", "nov", "dec" };
    for (int i = 0; i < 12; i++)
        if (strcmp(m, names[i]) == 0)
            return i;
    return -1;
}

static int take_clock(const char **p, struct tm *tm)
{
    return take_number(p, 2, &tm->tm_hour) || take_char(p, ':') || take_number(p, 2, &tm->tm_min) ||
           take_char(p, ':') || take_number(p, 2, &tm->tm_sec) ? -1 : 0;
}

static int tm_valid(const struct tm *tm)
{
    return tm->tm_mday >= 1 && tm->tm_mday <= 31 && tm->tm_hour <= 23 && tm->tm_min <= 59 && tm->tm_sec <= 60 &&
           tm->tm_year >= 70 && tm->tm_year < 8000;
}

/* The three HTTP date forms (RFC 9110 §5.6.7), GMT only. */
static int parse_http_date(const char *s, long long *epoch_s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    char wd[16], mon[16], zone[8];
    const char *p = s;
    skip_spaces(&p);
    if (take_word(&p, wd, sizeof(wd)))
        return -1;
    if (*p == ',') {
        p++;
        skip_spaces(&p);
        if (take_number(&p, 2, &tm.tm_mday))
            return -1;
        int rfc850 = *p == '-';
        if (rfc850 ? take_char(&p, '-') : (skip_spaces(&p), 0))
            return -1;
        if (take_word(&p, mon, sizeof(mon)) || (tm.tm_mon = month_of(mon)) < 0)
            return -1;
        int year;
        if (rfc850) {
            if (take_char(&p, '-') || take_number(&p, 4, &year))
                return -1;
            if (year < 100)
                year += year < 70 ? 2000 : 1900;
        } else {
            skip_spaces(&p);
            if (take_number(&p, 4, &year))
                return -1;
        }
        tm.tm_year = year - 1900;
        skip_spaces(&p);
        if (take_clock(&p, &tm))
            return -1;
        skip_spaces(&p);
        if (take_word(&p, zone, sizeof(zone)) || (strcmp(zone, "gmt") && strcmp(zone, "utc")))
            return -1;
    } else {
        /* asctime: "Sun Nov  6 08:49:37 1994" */
        int year;
        skip_spaces(&p);
        if (take_word(&p, mon, sizeof(mon)) || (tm.tm_mon = month_of(mon)) < 0)
            return -1;
        skip_spaces(&p);
        if (take_number(&p, 2, &tm.tm_mday))
            return -1;
        skip_spaces(&p);
        if (take_clock(&p, &tm))
            return -1;
        skip_spaces(&p);
        if (take_number(&p, 4, &year))
            return -1;
        tm.tm_year = year - 1900;
    }
    skip_spaces(&p);
    if (*p || !tm_valid(&tm))
        return -1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *epoch_s = (long long)t;
    return 0;
}

/* Non-negative decimal "123" or "123.456" as thousandths; -1 when not one. */
static int parse_decimal_milli(const char *s, long long *out)
{
    const char *p = s;
    skip_spaces(&p);
    long long whole = 0, frac = 0;
    int digits = 0;
    while (isdigit((unsigned char)*p)) {
        if (whole > 1000000000000LL)   /* about 31,700 years in seconds: enough */
            return -1;
        whole = whole * 10 + (*p++ - '0');
        digits++;
    }
    if (!digits)
        return -1;
    if (*p == '.') {
        p++;
        int fd = 0;
        while (isdigit((unsigned char)*p)) {
            if (fd < 3) {
                frac = frac * 10 + (*p - '0');
                fd++;
            }
            p++;
        }
        for (; fd < 3; fd++)
            frac *= 10;
    }
    skip_spaces(&p);
    if (*p)
        return -1;
    *out = whole * 1000 + frac;
    return 0;
}

int ars_sched_parse_retry_after(const char *value, long long now_ms, long long *delay_ms)
{
    if (!value || !*value || strlen(value) > ARS_SCHED_MAX_HEADER_LEN)
        return -1;
    long long ms;
    if (parse_decimal_milli(value, &ms) == 0) {
        *delay_ms = ms;
        return 0;
    }
    long long t;
    if (parse_http_date(value, &t))
        return -1;
    ms = t * 1000 - now_ms;
    *delay_ms = ms > 0 ? ms : 0;
    return 0;
}

/* RFC 3339 "2025-06-01T12:00:00Z" / "...+02:00", fractions ignored. */
static int parse_rfc3339(const char *s, long long *epoch_s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *p = s;
    int year, off = 0;
    skip_spaces(&p);
    if (take_number(&p, 4, &year) || take_char(&p, '-') || take_number(&p, 2, &tm.tm_mon) || take_char(&p, '-') ||
        take_number(&p, 2, &tm.tm_mday) || (*p != 'T' && *p != 't' && *p != ' '))
        return -1;
    p++;
    if (take_clock(&p, &tm))
        return -1;
    tm.tm_year = year - 1900;
    tm.tm_mon -= 1;
    if (*p == '.')
        for (p++; isdigit((unsigned char)*p); p++)
            ;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (take_number(&p, 2, &oh) || take_char(&p, ':') || take_number(&p, 2, &om))
            return -1;
        off = sign * (oh * 3600 + om * 60);
    } else {
        return -1;
    }
    skip_spaces(&p);
    if (*p || tm.tm_mon < 0 || tm.tm_mon > 11 || !tm_valid(&tm))
        return -1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *epoch_s = (long long)t - off;
    return 0;
}

int ars_sched_parse_unified_reset(const char *value, long long *reset_ms)
{
    if (!value || !*value || strlen(value) > ARS_SCHED_MAX_HEADER_LEN)
        return -1;
    long long ms;
    if (parse_decimal_milli(value, &ms) == 0) {
        if (ms <= 0)
            return -1;
        *reset_ms = ms;
        return 0;
    }
    long long t;
    if (parse_rfc3339(value, &t))
        return -1;
    *reset_ms = t * 1000;
    return 0;
}

long long ars_sched_cooldown_clamp_ms(const struct ars_config *cfg, long long want_ms)
{
    long long max = cfg->cooldown_max_seconds * 1000;
    if (want_ms < MIN_COOLDOWN_MS)
        want_ms = MIN_COOLDOWN_MS;
    if (max >= MIN_COOLDOWN_MS && want_ms > max)
        want_ms = max;
    return want_ms;
}

/* ------------------------------------------------------------------ */
/* marks                                                                */

/* Sets a cool-down unless a longer one is already in place. */
static struct ars_redis_script cool_script = ARS_REDIS_SCRIPT(
    "local t = redis.call('PTTL', KEYS[1])\n"
    "if t == -1 or t < tonumber(ARGV[2]) then\n"
    "  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "  return 1\n"
    "end\n"
    "return 0\n");

/* KEYS[1] errors:AID, KEYS[2] cool:AID:all, KEYS[3] (optional)
 * marks:KID; ARGV window s, threshold, cool-down ms, reason, marks per
 * key per minute (0: no limit). Counts one error; at the threshold the
 * account cools down and the count starts over. A key over its marks
 * budget counts nothing. Returns {count, cooled}, {-1, 0} when the key's
 * budget refused the mark. */
static struct ars_redis_script errors_script = ARS_REDIS_SCRIPT(
    "if KEYS[3] and tonumber(ARGV[5]) > 0 then\n"
    "  local m = redis.call('INCR', KEYS[3])\n"
    "  if m == 1 then redis.call('EXPIRE', KEYS[3], 60) end\n"
    "  if m > tonumber(ARGV[5]) then return {-1, 0} end\n"
    "end\n"
    "local n = redis.call('INCR', KEYS[1])\n"
    "if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n"
    "if n >= tonumber(ARGV[2]) then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  local t = redis.call('PTTL', KEYS[2])\n"
    "  if t == -1 or t < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[3]) end\n"
    "  return {n, 1}\n"
    "end\n"
    "return {n, 0}\n");

static char *reason_json(int status, long long until_ms, const char *scope, const char *reason)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    json_object_object_add(o, "status", json_object_new_int(status));
    json_object_object_add(o, "until_ms", json_object_new_int64(until_ms));
    json_object_object_add(o, "scope", json_object_new_string(scope));
    json_object_object_add(o, "reason", json_object_new_string(reason));
    char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return s;
}

static void log_cooldown(const struct ars_account *a, int status, const char *scope, long long ms,
                         long long until_ms, const char *reason)
{
    struct ars_logline l;
    ars_log_begin(&l, ARS_LOG_WARN, NULL, "account_cooldown");
    ars_log_str(&l, "account", a->id);
    ars_log_str(&l, "name", a->name);
    ars_log_int(&l, "status", status);
    ars_log_str(&l, "scope", scope);
    ars_log_int(&l, "seconds", (ms + 999) / 1000);
    ars_log_int(&l, "until_ms", until_ms);
    ars_log_str(&l, "reason", reason);
    ars_log_end(&l);
}

static enum ars_err set_cooldown(struct ars_redis *r, const struct ars_config *cfg, const struct ars_account *a,
                                 int status, const char *scope, long long want_ms, long long now_ms,
                                 const char *reason)
{
    long long ms = ars_sched_cooldown_clamp_ms(cfg, want_ms);
    char *key = pool_key(cfg, "cool", a->id, scope);
    char *json = reason_json(status, now_ms + ms, scope, reason);
    enum ars_err err = ARS_ERR_NOMEM;
    redisReply *rep = NULL;
    if (key && json) {
        char px[24];
        snprintf(px, sizeof(px), "%lld", ms);
        const char *kv[] = { key, json, px };
        err = ars_redis_eval(r, cfg, &cool_script, &rep, 1, 2, kv, NULL);
        if (!err && rep->type == REDIS_REPLY_ERROR)
            err = ARS_ERR_UNAVAILABLE;
    }
    if (!err && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1)
        log_cooldown(a, status, scope, ms, now_ms + ms, reason);
    if (rep)
        freeReplyObject(rep);
    free(key);
    free(json);
    return err;
}

static enum ars_err count_error(struct ars_redis *r, const struct ars_config *cfg, const struct ars_account *a,
                                const char *key_id, int status, long long now_ms)
{
    char reason[128];
    snprintf(reason, sizeof(reason), "%lld errors (403/5xx) within %lld s, the last one %d", cfg->error_threshold,
             cfg->error_window_seconds, status);
    long long ms = ars_sched_cooldown_clamp_ms(cfg, cfg->error_cooldown_seconds * 1000);
    char *ekey = pool_key(cfg, "errors", a->id, NULL);
    char *ckey = pool_key(cfg, "cool", a->id, "all");
    char *mkey = key_id && *key_id ? pool_key(cfg, "marks", key_id, NULL) : NULL;
    char *json = reason_json(status, now_ms + ms, "all", reason);
    enum ars_err err = ARS_ERR_NOMEM;
    redisReply *rep = NULL;
    if (ekey && ckey && json && (mkey || !key_id || !*key_id)) {
        char window[24], threshold[24], px[24], per_key[24];
        snprintf(window, sizeof(window), "%lld", cfg->error_window_seconds);
        snprintf(threshold, sizeof(threshold), "%lld", cfg->error_threshold);
        snprintf(px, sizeof(px), "%lld", ms);
        snprintf(per_key, sizeof(per_key), "%lld", mkey ? cfg->error_marks_per_key_per_minute : 0);
        const char *kv[8];
        int n = 0;
        kv[n++] = ekey;
        kv[n++] = ckey;
        if (mkey)
            kv[n++] = mkey;   /* without a key there is no budget to charge */
        int nkeys = n;
        kv[n++] = window;
        kv[n++] = threshold;
        kv[n++] = px;
        kv[n++] = json;
        kv[n++] = per_key;
        err = ars_redis_eval(r, cfg, &errors_script, &rep, nkeys, n - nkeys, kv, NULL);
        if (!err && (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2))
            err = ARS_ERR_UNAVAILABLE;
    }
    if (!err && rep->element[0]->integer == -1) {
        struct ars_logline l;
        ars_log_begin(&l, ARS_LOG_INFO, NULL, "error_mark_skipped");
        ars_log_str(&l, "account", a->id);
        ars_log_str(&l, "key", key_id);
        ars_log_int(&l, "status", status);
        ars_log_str(&l, "reason", "ERROR_MARKS_PER_KEY_PER_MINUTE reached for this key");
        ars_log_end(&l);
    } else if (!err && rep->element[1]->integer == 1) {
        log_cooldown(a, status, "all", ms, now_ms + ms, reason);
    }
    if (rep)
        freeReplyObject(rep);
    free(ekey);
    free(ckey);
    free(mkey);
    free(json);
    return err;
}

/* KEYS[1] brk:AID; ARGV now ms, base back-off ms, max back-off ms, hold
 * ms. One more consecutive transport failure: the back-off doubles from
 * the base up to the max, a probe in flight is over. The hash expires
 * after `hold` without failures (the account counts as healed then).
 * Returns {failures, back-off ms}. */
static struct ars_redis_script transport_script = ARS_REDIS_SCRIPT(
    "local f = redis.call('HINCRBY', KEYS[1], 'fails', 1)\n"
    "local b = tonumber(ARGV[2])\n"
    "for _ = 2, math.min(f, 32) do b = b * 2 end\n"
    "if b > tonumber(ARGV[3]) then b = tonumber(ARGV[3]) end\n"
    "redis.call('HSET', KEYS[1], 'until', string.format('%.0f', tonumber(ARGV[1]) + b))\n"
    "redis.call('HDEL', KEYS[1], 'probe')\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
    "return {f, b}\n");

enum ars_err ars_sched_mark_transport(struct ars_redis *r, const struct ars_config *cfg,
                                      const struct ars_account *a, const char *what, long long now_ms)
{
    char *key = pool_key(cfg, "brk", a->id, NULL);
    if (!key)
        return ARS_ERR_NOMEM;
    long long base = cfg->transport_backoff_seconds * 1000, max = cfg->transport_backoff_max_seconds * 1000;
    if (max < base)
        max = base;
    char now[24], a_base[24], a_max[24], hold[24];
    snprintf(now, sizeof(now), "%lld", now_ms);
    snprintf(a_base, sizeof(a_base), "%lld", base);
    snprintf(a_max, sizeof(a_max), "%lld", max);
    /* Ten maximal back-offs without a failure: the account is healed. */
    snprintf(hold, sizeof(hold), "%lld", 10 * max);
    const char *kv[] = { key, now, a_base, a_max, hold };
    redisReply *rep = NULL;
    enum ars_err err = ars_redis_eval(r, cfg, &transport_script, &rep, 1, 4, kv, NULL);
    free(key);
    if (err)
        return err;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 && rep->element[0]->type == REDIS_REPLY_INTEGER &&
        rep->element[1]->type == REDIS_REPLY_INTEGER) {
        struct ars_logline l;
        ars_log_begin(&l, ARS_LOG_WARN, NULL, "account_backoff");
        ars_log_str(&l, "account", a->id);
        ars_log_str(&l, "name", a->name);
        ars_log_str(&l, "reason", what ? what : "transport failure");
        ars_log_int(&l, "failures", rep->element[0]->integer);
        ars_log_int(&l, "backoff_ms", rep->element[1]->integer);
        ars_log_end(&l);
    } else {
        err = ARS_ERR_UNAVAILABLE;
    }
    freeReplyObject(rep);
    return err;
}

enum ars_err ars_sched_breaker_close(struct ars_redis *r, const struct ars_config *cfg, const struct ars_account *a)
{
    char *key = pool_key(cfg, "brk", a->id, NULL);
    if (!key)
        return ARS_ERR_NOMEM;
    const char *argv[] = { "DEL", key };
    redisReply *rep = NULL;
    enum ars_err err = ars_redis_cmd(r, cfg, &rep, 2, argv, NULL);
    free(key);
    if (err)
        return err;
    if (rep->type == REDIS_REPLY_INTEGER && rep->integer == 1)
        ars_log_msg(ARS_LOG_INFO, NULL, "account_breaker_closed", "a probe reached the upstream: the account is back");
    else if (rep->type == REDIS_REPLY_ERROR)
        err = ARS_ERR_UNAVAILABLE;
    freeReplyObject(rep);
    return err;
}

enum ars_err ars_sched_mark(struct ars_redis *r, const struct ars_config *cfg, const struct ars_account *a,
                            const char *key_id, const char *model, int status, const char *retry_after_header,
                            const char *unified_reset_header, long long now_ms)
{
    char reason[160];
    if (status == 429) {
        const char *family = ars_model_family(model);
        long long reset_ms, delay_ms;
        if (ars_sched_parse_unified_reset(unified_reset_header, &reset_ms) == 0) {
            long long want = reset_ms - now_ms;
            if (want <= 0)   /* a reset already past (clock skew): the short default */
                want = cfg->rate_limit_cooldown_seconds * 1000;
            snprintf(reason, sizeof(reason), "429: %s limit reached until the unified reset", family);
            return set_cooldown(r, cfg, a, status, family, want, now_ms, reason);
        }
        if (ars_sched_parse_retry_after(retry_after_header, now_ms, &delay_ms) == 0) {
            snprintf(reason, sizeof(reason), "429 with retry-after %.40s", retry_after_header);
            return set_cooldown(r, cfg, a, status, "all", delay_ms, now_ms, reason);
        }
        return set_cooldown(r, cfg, a, status, "all", cfg->rate_limit_cooldown_seconds * 1000, now_ms,
                            "429 without retry-after or reset time");
    }
    if (status == 529) {
        if (cfg->overload_cooldown_seconds <= 0)
            return ARS_OK;
        return set_cooldown(r, cfg, a, status, "all", cfg->overload_cooldown_seconds * 1000, now_ms,
                            "529 overloaded");
    }
    if (status == 403 || (status >= 500 && status <= 599))
        return count_error(r, cfg, a, key_id, status, now_ms);
    return ARS_OK;
}

enum ars_err ars_sched_mark_unauthorized(struct ars_redis *r, const struct ars_config *cfg,
                                         const struct ars_account *a, const char *reason)
{
    json_object *changes = json_object_new_object(), *rec = NULL;
    if (!changes)
        return ARS_ERR_NOMEM;
    json_object_object_add(changes, "status", json_object_new_string("unauthorized"));
    char errbuf[256] = "";
    enum ars_err err = ars_accounts_update(r, cfg, a->id, changes, &rec, errbuf, sizeof(errbuf));
    json_object_put(changes);
    json_object_put(rec);
    ars_sched_cache_invalidate();
    struct ars_logline l;
    ars_log_begin(&l, err ? ARS_LOG_ERROR : ARS_LOG_WARN, NULL, "account_unauthorized");
    ars_log_str(&l, "account", a->id);
    ars_log_str(&l, "name", a->name);
    ars_log_str(&l, "reason", reason ? reason : "");
    if (err)
        ars_log_str(&l, "error", errbuf);
    ars_log_end(&l);
    return err;
}

/* KEYS: cool:AID:all, cool:AID:<each family>, errors:AID. Returns
 * {value, pttl} per cool key, then the error count. */
static struct ars_redis_script cooldowns_script = ARS_REDIS_SCRIPT(
    "local out = {}\n"
    "for i = 1, #KEYS - 1 do\n"
    "  out[#out + 1] = redis.call('GET', KEYS[i]) or ''\n"
    "  out[#out + 1] = redis.call('PTTL', KEYS[i])\n"
    "end\n"
    "out[#out + 1] = tonumber(redis.call('GET', KEYS[#KEYS]) or '0') or 0\n"
    "return out\n");

enum ars_err ars_sched_cooldowns(struct ars_redis *r, const struct ars_config *cfg, const char *account_id,
                                 json_object **out)
{
    *out = NULL;
    enum { NK = 1 + NFAMILIES + 1 };
    char *keys[NK] = { 0 };
    const char *scopes[NK - 1];
    scopes[0] = "all";
    for (size_t i = 0; i < NFAMILIES; i++)
        scopes[i + 1] = families[i];
    enum ars_err err = ARS_OK;
    for (size_t i = 0; i + 1 < NK; i++)
        if (!(keys[i] = pool_key(cfg, "cool", account_id, scopes[i])))
            err = ARS_ERR_NOMEM;
    if (!(keys[NK - 1] = pool_key(cfg, "errors", account_id, NULL)))
        err = ARS_ERR_NOMEM;
    redisReply *rep = NULL;
    if (!err)
        err = ars_redis_eval(r, cfg, &cooldowns_script, &rep, NK, 0, (const char **)keys, NULL);
    if (!err && (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 * (NK - 1) + 1))
        err = ARS_ERR_UNAVAILABLE;
    if (!err) {
        json_object *o = json_object_new_object(), *list = json_object_new_array();
        json_object_object_add(o, "account_id", json_object_new_string(account_id));
        for (size_t i = 0; i + 1 < NK; i++) {
            const redisReply *v = rep->element[2 * i], *t = rep->element[2 * i + 1];
            if (v->type != REDIS_REPLY_STRING || !v->len || t->type != REDIS_REPLY_INTEGER || t->integer == -2)
                continue;
            json_object *c = json_object_new_object();
            json_object_object_add(c, "scope", json_object_new_string(scopes[i]));
            json_object_object_add(c, "ttl_ms", json_object_new_int64(t->integer));
            json_object *why = json_tokener_parse(v->str);
            json_object_object_add(c, "reason", why ? why : json_object_new_string_len(v->str, (int)v->len));
            json_object_array_add(list, c);
        }
        json_object_object_add(o, "cooldowns", list);
        json_object_object_add(o, "recent_errors", json_object_new_int64(rep->element[rep->elements - 1]->integer));
        *out = o;
    }
    if (rep)
        freeReplyObject(rep);
    for (size_t i = 0; i < NK; i++)
        free(keys[i]);
    return err;
}
