#include "oauth.h"
#include "clock.h"

#include <curl/curl.h>
#include <hiredis.h>
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accounts.h"
#include "build-config.h"
#include "config.h"
#include "crypto.h"
#include "log.h"
#include "redis.h"
#include "scheduler.h"

/* The refresh request must end before the lock it runs under expires,
 * or a second refresher could spend the same (rotating) refresh token. */
#define LOCK_MARGIN_MS 1000



static void sleep_ms(long ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

static json_object *member(json_object *o, const char *name)
{
    json_object *v = NULL;
    if (o)
        json_object_object_get_ex(o, name, &v);
    return v;
}

static const char *str_member(json_object *o, const char *name)
{
    json_object *v = member(o, name);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

/* Good for more than OAUTH_REFRESH_AHEAD_SECONDS. An unknown expiry is
 * trusted only when there is nothing to refresh with. */
static int usable(const struct ars_config *cfg, const char *access, long long expires_ms, const char *refresh,
                  long long now)
{
    if (!access || !access[0])
        return 0;
    if (expires_ms == 0)
        return !refresh || !refresh[0];
    return expires_ms - now > cfg->oauth_refresh_ahead_seconds * 1000;
}

static void log_refresh(const struct ars_account *a, enum ars_log_level level, const char *outcome, long status,
                        long long started, const char *detail)
{
    struct ars_logline l;
    ars_log_begin(&l, level, NULL, "oauth_refresh");
    ars_log_str(&l, "account", a->id);
    ars_log_str(&l, "name", a->name);
    ars_log_str(&l, "outcome", outcome);
    if (status)
        ars_log_int(&l, "http_status", status);
    ars_log_int(&l, "ms", ars_mono_ms() - started);
    if (detail && *detail)
        ars_log_str(&l, "detail", detail);
    ars_log_end(&l);
}

/* ---- the account record, as stored now ---- */

struct stored {
    json_object *rec;
    json_object *creds;   /* decrypted */
};

static void stored_clear(struct stored *s)
{
    json_object_put(s->rec);
    json_object_put(s->creds);
    s->rec = s->creds = NULL;
}

static enum ars_err stored_read(struct ars_redis *r, const struct ars_config *cfg, const char *id, struct stored *s,
                                char *err, size_t errlen)
{
    s->rec = s->creds = NULL;
    enum ars_err rc = ars_accounts_get(r, cfg, id, &s->rec, err, errlen);
    if (rc)
        return rc == ARS_ERR_NOTFOUND ? ARS_ERR_INVALID : ARS_ERR_UNAVAILABLE;
    rc = ars_accounts_credentials(cfg, s->rec, &s->creds, err, errlen);
    if (rc) {
        stored_clear(s);
        return ARS_ERR_INVALID;
    }
    return ARS_OK;
}

static long long stored_expires(const struct stored *s)
{
    json_object *v = member(s->creds, "expires_at");
    return v ? json_object_get_int64(v) : 0;
}

/* The stored token when it is newer than the one the caller has: good
 * for a while (normal refresh) or, after a 401, merely different and not
 * expired. 1 adopted, 0 not, -1 the account is unauthorized. */
static int adopt_stored(const struct ars_config *cfg, const struct ars_account *a, int force, const struct stored *s,
                        char **token)
{
    if (strcmp(str_member(s->rec, "status"), "unauthorized") == 0)
        return -1;
    const char *access = str_member(s->creds, "access_token");
    long long exp = stored_expires(s), now = ars_wall_ms();
    int newer = force ? access[0] && strcmp(access, a->access_token) != 0 && (exp == 0 || exp > now)
                      : usable(cfg, access, exp, str_member(s->creds, "refresh_token"), now);
    if (!newer)
        return 0;
    *token = strdup(access);
    return *token ? 1 : 0;
}

/* ---- the lock ---- */

static void lock_key(const struct ars_config *cfg, const char *id, char *out, size_t n)
{
    snprintf(out, n, "%slock:oauth:%s", cfg->redis_key_prefix, id);
}

static enum ars_err lock_take(struct ars_redis *r, const struct ars_config *cfg, const char *key,
                              const char *value, int *won)
{
    char px[24];
    snprintf(px, sizeof(px), "%d", ARS_OAUTH_LOCK_MS);
    const char *argv[] = { "SET", key, value, "NX", "PX", px };
    redisReply *rep;
    enum ars_err err = ars_redis_cmd(r, cfg, &rep, 6, argv, NULL);
    if (err)
        return err;
    *won = rep->type == REDIS_REPLY_STATUS;
    if (rep->type == REDIS_REPLY_ERROR)
        err = ARS_ERR_UNAVAILABLE;
    freeReplyObject(rep);
    return err;
}

static struct ars_redis_script unlock_script = ARS_REDIS_SCRIPT(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n");

static void lock_release(struct ars_redis *r, const struct ars_config *cfg, const char *key, const char *value)
{
    const char *kv[] = { key, value };
    redisReply *rep;
    if (ars_redis_eval(r, cfg, &unlock_script, &rep, 1, 1, kv, NULL) == ARS_OK)
        freeReplyObject(rep);
    /* On failure the lock expires by itself. */
}

/* Polls until the lock is gone or ARS_OAUTH_WAIT_MS passed; *released
 * says which. */
static enum ars_err lock_wait(struct ars_redis *r, const struct ars_config *cfg, const char *key, int *released)
{
    *released = 0;
    long long deadline = ars_mono_ms() + ARS_OAUTH_WAIT_MS;
    const char *argv[] = { "EXISTS", key };
    while (ars_mono_ms() < deadline) {
        sleep_ms(ARS_OAUTH_POLL_MS);
        redisReply *rep;
        enum ars_err err = ars_redis_cmd(r, cfg, &rep, 2, argv, NULL);
        if (err)
            return err;
        int gone = rep->type == REDIS_REPLY_INTEGER && rep->integer == 0;
        freeReplyObject(rep);
        if (gone) {
            *released = 1;
            return ARS_OK;
        }
    }
    return ARS_OK;
}

/* ---- the token endpoint ---- */

struct body {
    char *p;
    size_t n;
    int toobig;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct body *b = ud;
    size_t n = size * nmemb;
    if (b->n + n > ARS_OAUTH_MAX_RESPONSE) {
        b->toobig = 1;
        return 0;
    }
    char *p = realloc(b->p, b->n + n + 1);
    if (!p)
        return 0;
    memcpy(p + b->n, ptr, n);
    b->p = p;
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

static void body_free(struct body *b)
{
    if (b->p) {
        wipe(b->p, b->n);
        free(b->p);
    }
    b->p = NULL;
    b->n = 0;
}

/* POSTs the refresh grant. ARS_OK with *status and the answer in b when
 * an HTTP answer came; ARS_ERR_UNAVAILABLE on transport failure. */
static enum ars_err post_refresh(const struct ars_config *cfg, const struct ars_account *a, const char *refresh_token,
                                 long timeout_ms, long *status, struct body *b, char *err, size_t errlen)
{
    *status = 0;
    enum ars_err rc = ARS_ERR_UNAVAILABLE;
    struct curl_slist *hdrs = NULL;
    json_object *req = json_object_new_object();
    CURL *h = curl_easy_init();
    if (!req || !h) {
        snprintf(err, errlen, "out of memory");
        rc = ARS_ERR_NOMEM;
        goto out;
    }
    json_object_object_add(req, "grant_type", json_object_new_string("refresh_token"));
    json_object_object_add(req, "refresh_token", json_object_new_string(refresh_token));
    json_object_object_add(req, "client_id", json_object_new_string(cfg->oauth_client_id));
    const char *json = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
    struct curl_slist *t;
    if (!(t = curl_slist_append(hdrs, "Content-Type: application/json")) || !(hdrs = t) ||
        !(t = curl_slist_append(hdrs, "Accept: application/json")) || !(hdrs = t) ||
        !(t = curl_slist_append(hdrs, "User-Agent: ai-relay-service/" PACKAGE_VERSION)) || !(hdrs = t)) {
        snprintf(err, errlen, "out of memory");
        rc = ARS_ERR_NOMEM;
        goto out;
    }
    curl_easy_setopt(h, CURLOPT_URL, cfg->oauth_token_url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(json));
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     timeout_ms < ARS_OAUTH_CONNECT_TIMEOUT_MS ? timeout_ms : (long)ARS_OAUTH_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    if (a->proxy && a->proxy[0])
        curl_easy_setopt(h, CURLOPT_PROXY, a->proxy);
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        if (b->toobig)
            snprintf(err, errlen, "token endpoint answer larger than %d bytes", ARS_OAUTH_MAX_RESPONSE);
        else
            snprintf(err, errlen, "token endpoint unreachable: %s", curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    rc = ARS_OK;
out:
    if (req)
        json_object_put(req);
    curl_slist_free_all(hdrs);
    if (h)
        curl_easy_cleanup(h);
    return rc;
}

/* The new credentials: the stored ones with the answer's tokens, expiry
 * and scopes. NULL when the answer has no access token. */
static json_object *new_credentials(const struct stored *s, json_object *ans, long long now)
{
    json_object *access = member(ans, "access_token");
    if (!access || !json_object_is_type(access, json_type_string) || !json_object_get_string_len(access))
        return NULL;
    json_object *creds = NULL;
    if (json_object_deep_copy(s->creds, &creds, NULL) || !creds)
        return NULL;
    json_object_object_add(creds, "access_token", json_object_new_string(json_object_get_string(access)));
    json_object *refresh = member(ans, "refresh_token");
    if (refresh && json_object_is_type(refresh, json_type_string) && json_object_get_string_len(refresh))
        json_object_object_add(creds, "refresh_token", json_object_new_string(json_object_get_string(refresh)));
    json_object *expires = member(ans, "expires_in");
    long long secs = expires ? json_object_get_int64(expires) : 0;
    if (secs <= 0)
        secs = ARS_OAUTH_DEFAULT_EXPIRES_S;
    json_object_object_add(creds, "expires_at", json_object_new_int64(now + secs * 1000));
    json_object *scope = member(ans, "scope");
    if (scope && json_object_is_type(scope, json_type_string))
        json_object_object_add(creds, "scopes", json_object_new_string(json_object_get_string(scope)));
    return creds;
}

/* Holding the lock: re-read, then refresh unless someone already did. */
static enum ars_err refresh_owned(struct ars_redis *r, const struct ars_config *cfg, const struct ars_account *a,
                                  int force, long long lock_taken, char **token, char *err, size_t errlen)
{
    long long started = ars_mono_ms();
    struct stored s;
    struct body b = { 0 };
    json_object *ans = NULL, *creds = NULL;
    long status = 0;
    enum ars_err rc = stored_read(r, cfg, a->id, &s, err, errlen);
    if (rc)
        return rc;
    int adopted = adopt_stored(cfg, a, force, &s, token);
    if (adopted) {
        rc = adopted > 0 ? ARS_OK : ARS_ERR_INVALID;
        if (adopted < 0)
            snprintf(err, errlen, "account %s is unauthorized: authorise it again", a->name);
        goto out;
    }
    const char *refresh = str_member(s.creds, "refresh_token");
    if (!refresh[0]) {
        snprintf(err, errlen, "account %s has no refresh token: authorise it again", a->name);
        rc = ARS_ERR_INVALID;
        goto out;
    }
    long left = (long)(lock_taken + ARS_OAUTH_LOCK_MS - LOCK_MARGIN_MS - ars_mono_ms());
    long timeout = left < ARS_OAUTH_HTTP_TIMEOUT_MS ? left : ARS_OAUTH_HTTP_TIMEOUT_MS;
    if (timeout < 1000) {
        snprintf(err, errlen, "account %s: no time left under the refresh lock", a->name);
        rc = ARS_ERR_UNAVAILABLE;
        goto out;
    }
    rc = post_refresh(cfg, a, refresh, timeout, &status, &b, err, errlen);
    if (rc) {
        log_refresh(a, ARS_LOG_WARN, "failed", 0, started, err);
        goto out;
    }
    if (b.p) {
        struct json_tokener *tok = json_tokener_new();
        ans = tok ? json_tokener_parse_ex(tok, b.p, (int)b.n) : NULL;
        json_tokener_free(tok);
    }
    if (status == 200) {
        creds = ans ? new_credentials(&s, ans, ars_wall_ms()) : NULL;
        if (!creds) {
            snprintf(err, errlen, "token endpoint answered 200 without an access token");
            log_refresh(a, ARS_LOG_ERROR, "failed", status, started, err);
            rc = ARS_ERR_UNAVAILABLE;
            goto out;
        }
        *token = strdup(str_member(creds, "access_token"));
        if (!*token) {
            rc = ARS_ERR_NOMEM;
            goto out;
        }
        json_object *changes = json_object_new_object(), *rec = NULL;
        json_object_object_add(changes, "credentials", json_object_get(creds));
        char uerr[256] = "";
        enum ars_err urc = ars_accounts_update(r, cfg, a->id, changes, &rec, uerr, sizeof(uerr));
        json_object_put(changes);
        json_object_put(rec);
        ars_sched_cache_invalidate();
        /* Not stored: the token still serves this request, but the
         * refresh token may have rotated; say so loudly. */
        log_refresh(a, urc ? ARS_LOG_ERROR : ARS_LOG_INFO, urc ? "refreshed_not_stored" : "refreshed", status,
                    started, urc ? uerr : NULL);
        rc = ARS_OK;
        goto out;
    }
    const char *code = str_member(ans, "error");
    if ((status == 400 || status == 401) && strcmp(code, "invalid_grant") == 0) {
        /* A refresh token rotated by someone else meanwhile (a lock that
         * expired under a slow refresh) is not a revoked account. */
        struct stored now_s;
        if (stored_read(r, cfg, a->id, &now_s, err, errlen) == ARS_OK) {
            int rotated = strcmp(str_member(now_s.creds, "refresh_token"), refresh) != 0;
            int adopted_now = rotated ? adopt_stored(cfg, a, 0, &now_s, token) : 0;
            stored_clear(&now_s);
            if (adopted_now > 0) {
                log_refresh(a, ARS_LOG_WARN, "adopted_after_rotation", status, started, NULL);
                err[0] = '\0';
                rc = ARS_OK;
                goto out;
            }
            if (rotated) {
                snprintf(err, errlen, "account %s: its refresh token changed during the refresh; try again", a->name);
                rc = ARS_ERR_UNAVAILABLE;
                goto out;
            }
        }
        if (ars_sched_mark_unauthorized(r, cfg, a, "OAuth refresh token rejected (invalid_grant)") != ARS_OK)
            ars_log_msg(ARS_LOG_WARN, NULL, "account_mark_failed",
                        "the account could not be marked unauthorized (Redis); the next request tries it again");
        snprintf(err, errlen,
                 "account %s: the token endpoint rejected its refresh token (invalid_grant); the account is now "
                 "unauthorized and must be authorised again", a->name);
        log_refresh(a, ARS_LOG_ERROR, "invalid_grant", status, started, NULL);
        rc = ARS_ERR_INVALID;
        goto out;
    }
    if (status >= 400 && status < 500 && status != 408 && status != 429) {
        snprintf(err, errlen, "account %s: the token endpoint refused the refresh (HTTP %ld%s%.60s)", a->name,
                 status, code[0] ? ", " : "", code);
        rc = ARS_ERR_INVALID;
    } else {
        snprintf(err, errlen, "account %s: the token endpoint answered HTTP %ld", a->name, status);
        rc = ARS_ERR_UNAVAILABLE;
    }
    log_refresh(a, ARS_LOG_WARN, "failed", status, started, err);
out:
    json_object_put(ans);
    json_object_put(creds);
    body_free(&b);
    stored_clear(&s);
    return rc;
}

enum ars_err ars_oauth_access_token(struct ars_redis *r, const struct ars_config *cfg,
                                    const struct ars_account *a, int force_refresh, char **token,
                                    char *err, size_t errlen)
{
    *token = NULL;
    err[0] = '\0';
    if (a->type != ARS_ACCOUNT_OAUTH) {
        snprintf(err, errlen, "account %s is not an OAuth account", a->name);
        return ARS_ERR_INVALID;
    }
    long long now = ars_wall_ms();
    if (!force_refresh && usable(cfg, a->access_token, a->token_expires_ms, a->refresh_token, now)) {
        *token = strdup(a->access_token);
        return *token ? ARS_OK : ARS_ERR_NOMEM;
    }
    if (!a->refresh_token[0] && !force_refresh && a->access_token[0] && a->token_expires_ms > now) {
        /* Expiring soon, nothing to refresh with: use it while it lasts. */
        *token = strdup(a->access_token);
        return *token ? ARS_OK : ARS_ERR_NOMEM;
    }

    char key[512], value[33];
    lock_key(cfg, a->id, key, sizeof(key));
    if (ars_crypto_random_hex(value, 16)) {
        snprintf(err, errlen, "no randomness for the refresh lock");
        return ARS_ERR_UNAVAILABLE;
    }
    /* Two rounds: if the holder of the lock gave up without a new token,
     * this process tries once itself. */
    for (int round = 0; round < 2; round++) {
        int won = 0;
        enum ars_err rc = lock_take(r, cfg, key, value, &won);
        if (rc) {
            snprintf(err, errlen, "Redis: %s", ars_redis_error(r));
            return ARS_ERR_UNAVAILABLE;
        }
        if (won) {
            long long taken = ars_mono_ms();
            rc = refresh_owned(r, cfg, a, force_refresh, taken, token, err, errlen);
            lock_release(r, cfg, key, value);
            return rc;
        }
        int released = 0;
        if (lock_wait(r, cfg, key, &released)) {
            snprintf(err, errlen, "Redis: %s", ars_redis_error(r));
            return ARS_ERR_UNAVAILABLE;
        }
        struct stored s;
        rc = stored_read(r, cfg, a->id, &s, err, errlen);
        if (rc)
            return rc;
        int adopted = adopt_stored(cfg, a, force_refresh, &s, token);
        stored_clear(&s);
        if (adopted > 0) {
            log_refresh(a, ARS_LOG_DEBUG, "adopted", 0, ars_mono_ms(), NULL);
            return ARS_OK;
        }
        if (adopted < 0) {
            snprintf(err, errlen, "account %s is unauthorized: authorise it again", a->name);
            return ARS_ERR_INVALID;
        }
        if (!released) {
            snprintf(err, errlen, "account %s: another process has been refreshing its token for %d s; try again",
                     a->name, ARS_OAUTH_WAIT_MS / 1000);
            return ARS_ERR_UNAVAILABLE;
        }
    }
    snprintf(err, errlen, "account %s: its token refresh failed in another process", a->name);
    return ARS_ERR_UNAVAILABLE;
}
