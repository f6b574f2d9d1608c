#include "auth.h"
#include "clock.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config.h"
#include "crypto.h"
#include "response.h"
#include "worker.h"

const char *ars_auth_presented_key(const struct ars_request *req)
{
    const char *k = ars_request_header(req, "x-api-key");
    if (k && *k)
        return k;
    const char *auth = ars_request_header(req, "authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        auth += 7;
        while (*auth == ' ')
            auth++;
        return *auth ? auth : NULL;
    }
    return NULL;
}


static void iso_time(long long ms, char *out, size_t n)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void release_key(void *arg)
{
    ars_key_release(arg);
}

static enum ars_err deny(struct ars_request *req, int status, const char *message)
{
    ars_resp_error(req, status, NULL, message);
    return ARS_ERR_INVALID;
}

enum ars_err ars_auth_key(struct ars_request *req, unsigned family, struct ars_key **key)
{
    *key = NULL;
    const struct ars_config *cfg = req->cfg;
    const char *presented = ars_auth_presented_key(req);
    if (!presented)
        return deny(req, 401, "missing API key: send it in the x-api-key header or as Authorization: Bearer <key>");
    if (!ars_crypto_api_key_format_ok(presented))
        return deny(req, 401, "invalid API key format: expected cr_ followed by 64 hexadecimal characters");

    char hash[ARS_CRYPTO_HASH_HEX_LEN + 1];
    if (ars_crypto_key_hash(&cfg->keys, presented, hash))
        return deny(req, 500, "could not hash the API key");
    struct ars_key *k;
    enum ars_err err = ars_keys_lookup(req->worker->redis, cfg, hash, &k);
    if (err == ARS_ERR_NOTFOUND)
        return deny(req, 401, "invalid API key: no such key");
    if (err) {
        ars_resp_error(req, 503, "api_error", "the key store is unavailable (Redis and PostgreSQL did not answer); retry shortly");
        return ARS_ERR_UNAVAILABLE;
    }
    /* From here the key is released with the request, on every path. */
    if (ars_arena_on_reset(req->arena, release_key, k) != 0) {
        ars_key_release(k);
        return deny(req, 503, "out of memory");
    }
    if (k->deleted)
        return deny(req, 401, "API key has been deleted");
    if (!k->enabled)
        return deny(req, 401, "API key is disabled");

    long long now = ars_wall_ms();
    long long expires = k->expires_at_ms;
    if (k->activation_mode && k->activated_at_ms == 0) {
        /* First use starts the clock. */
        err = ars_keys_activate(req->worker->redis, cfg, k, hash, now, &expires);
        if (err) {
            ars_resp_error(req, 503, "api_error", "could not activate the API key (Redis unavailable); retry shortly");
            return ARS_ERR_UNAVAILABLE;
        }
    }
    if (expires > 0 && now >= expires) {
        char when[32], msg[96];
        iso_time(expires, when, sizeof(when));
        snprintf(msg, sizeof(msg), "API key expired at %s", when);
        return deny(req, 401, msg);
    }
    if (k->permissions && !(k->permissions & family)) {
        ars_resp_error(req, 403, "permission_error",
                       family == ARS_PERM_OPENAI ? "this API key may not use the OpenAI-compatible API"
                                                 : "this API key may not use the Claude API");
        return ARS_ERR_INVALID;
    }
    *key = k;
    return ARS_OK;
}
