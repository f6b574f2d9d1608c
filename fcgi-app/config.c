#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "build-config.h"
#include <json.h>
#include "caps.h"

#ifndef ARS_SYSCONFDIR
#define ARS_SYSCONFDIR "/usr/local/etc"
#endif
#include "log.h"

enum cfg_type { CFG_STR, CFG_INT, CFG_BOOL, CFG_ENUM };

#define CFG_SECRET 1u

struct cfg_key {
    const char *name;
    enum cfg_type type;
    size_t offset;
    const char *def;           /* default, as text */
    long long min, max;        /* CFG_INT bounds */
    const char *const *choices;/* CFG_ENUM values, NULL-terminated */
    unsigned flags;
    const char *section;       /* starts a section in the sample when set */
    const char *help;
};

static const char *const log_levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const log_formats[] = { "logfmt", "json", NULL };

#define OFF(f) offsetof(struct ars_config, f)
#define I(name, f, def, lo, hi, sec, help) { name, CFG_INT, OFF(f), def, lo, hi, NULL, 0, sec, help }
#define S(name, f, def, fl, sec, help) { name, CFG_STR, OFF(f), def, 0, 0, NULL, fl, sec, help }
#define B(name, f, def, sec, help) { name, CFG_BOOL, OFF(f), def, 0, 0, NULL, 0, sec, help }
#define E(name, f, def, ch, sec, help) { name, CFG_ENUM, OFF(f), def, 0, 0, ch, 0, sec, help }

static const struct cfg_key keys[] = {
    I("PORT", port, "3000", 1, 65535, "Web server",
      "Port the web server in front of the relay listens on (scripts/quickstart and the site configs use it)."),

    S("REDIS_HOST", redis_host, "127.0.0.1", 0, "Redis (hot data: limits, usage, sessions, leases)",
      "Redis host name or address; a path starting with / is a unix socket."),
    I("REDIS_PORT", redis_port, "6379", 1, 65535, NULL, "Redis TCP port."),
    S("REDIS_PASSWORD", redis_password, "", CFG_SECRET, NULL, "Redis AUTH password (empty: no AUTH)."),
    I("REDIS_DB", redis_db, "0", 0, 1023, NULL, "Redis database number (SELECT)."),
    B("REDIS_ENABLE_TLS", redis_enable_tls, "false", NULL,
      "TLS to Redis. Needs a hiredis built with TLS (hiredis_ssl); the relay refuses to start otherwise."),
    S("REDIS_KEY_PREFIX", redis_key_prefix, "ars:", 0, NULL, "Prefix of every Redis key the relay writes."),
    I("REDIS_CONNECT_TIMEOUT_MS", redis_connect_timeout_ms, "1000", 10, 60000, NULL,
      "Connect timeout for Redis, in milliseconds."),
    I("REDIS_COMMAND_TIMEOUT_MS", redis_command_timeout_ms, "2000", 10, 60000, NULL,
      "Timeout of one Redis command, in milliseconds."),

    S("PG_HOST", pg_host, "", 0, "PostgreSQL (system of record; optional)",
      "PostgreSQL host. Empty: run on Redis alone (/health shows postgres disabled)."),
    I("PG_PORT", pg_port, "5432", 1, 65535, NULL, "PostgreSQL port."),
    S("PG_DATABASE", pg_database, "ai_relay", 0, NULL, "Database name (hyphens are fine)."),
    S("PG_USER", pg_user, "ai_relay", 0, NULL, "Database user."),
    S("PG_PASSWORD", pg_password, "", CFG_SECRET, NULL, "Database password."),
    B("PG_SSL", pg_ssl, "false", NULL, "true: sslmode=require; false: sslmode=prefer."),
    I("PG_POOL_MAX", pg_pool_max, "10", 1, 1000, NULL,
      "Most PostgreSQL connections one relay process keeps open."),
    I("PG_IDLE_TIMEOUT", pg_idle_timeout_ms, "30000", 1000, 86400000, NULL,
      "Idle PostgreSQL connections are closed after this many milliseconds."),
    B("PG_LIST_API_KEYS", pg_list_api_keys, "false", NULL,
      "true: key lists, search and detail read PostgreSQL first (Redis as fallback)."),
    I("PG_CONNECT_TIMEOUT_MS", pg_connect_timeout_ms, "2000", 100, 60000, NULL,
      "Connect timeout for PostgreSQL, in milliseconds."),
    I("PG_STATEMENT_TIMEOUT_MS", pg_statement_timeout_ms, "5000", 100, 600000, NULL,
      "statement_timeout of every relay session, in milliseconds."),

    S("CLAUDE_API_URL", claude_api_url, "https://api.anthropic.com/v1/messages", 0, "Upstream",
      "Anthropic Messages endpoint used for OAuth accounts."),
    S("CLAUDE_API_VERSION", claude_api_version, "2023-06-01", 0, NULL,
      "anthropic-version sent when the client sends none."),
    S("CLAUDE_BETA_HEADER", claude_beta_header, "oauth-2025-04-20", 0, NULL,
      "anthropic-beta flag added for OAuth accounts."),

    S("OAUTH_TOKEN_URL", oauth_token_url, "https://platform.claude.com/v1/oauth/token", 0, NULL,
      "Token endpoint used to refresh OAuth accounts' access tokens."),
    S("OAUTH_CLIENT_ID", oauth_client_id, "", 0, NULL,
      "OAuth client id sent with refresh requests (the client the account was authorised for)."),
    I("OAUTH_REFRESH_AHEAD_SECONDS", oauth_refresh_ahead_seconds, "300", 0, 86400, NULL,
      "Refresh an OAuth access token this long before it expires."),
    I("UPSTREAM_CONNECT_TIMEOUT_MS", upstream_connect_timeout_ms, "10000", 100, 600000, NULL,
      "Connect timeout to the upstream API (TCP + TLS), in milliseconds."),
    I("UPSTREAM_FIRST_BYTE_TIMEOUT_MS", upstream_first_byte_timeout_ms, "600000", 1000, 3600000, NULL,
      "Longest wait for the upstream's response headers, in milliseconds."),
    I("UPSTREAM_IDLE_TIMEOUT_MS", upstream_idle_timeout_ms, "300000", 1000, 3600000, NULL,
      "Longest silence between two upstream bytes once the answer started, in milliseconds."),
    I("STREAM_PING_SECONDS", stream_ping_seconds, "15", 1, 3600, NULL,
      "Send the client an SSE ping after this much upstream silence."),
    I("DRAIN_MAX_SECONDS", drain_max_seconds, "300", 0, 3600, NULL,
      "After a client leaves mid-stream, keep reading the upstream this long for the final usage."),
    I("DRAIN_MAX_BYTES", drain_max_bytes, "67108864", 0, 1073741824LL, NULL,
      "... and at most this many bytes."),
    I("DRAIN_MAX_CONCURRENT", drain_max_concurrent, "8", 0, 100000, NULL,
      "Most such drains at once per process; past it the upstream read stops at once and the usage seen so "
      "far is billed (logged as drain_refused). Keeps departed clients from holding the worker pool."),
    I("UPSTREAM_MAX_RESPONSE_BYTES", upstream_max_response_bytes, "268435456", 65536, 4294967296LL, NULL,
      "Largest upstream answer relayed; beyond it the request fails with 502."),

    I("LEASE_TTL_SECONDS", lease_ttl_seconds, "300", 10, 86400, "Limits and scheduling",
      "Concurrency leases expire after this unless refreshed (a crashed relay heals itself); streams refresh them."),
    I("STICKY_TTL_SECONDS", sticky_ttl_seconds, "3600", 0, 604800, NULL,
      "A conversation stays on its account this long after its last request. 0: no sticky sessions."),
    I("ACCOUNT_CACHE_SECONDS", account_cache_seconds, "2", 0, 3600, NULL,
      "How long a process trusts its in-memory copy of the account list."),
    I("MAX_FAILOVER", max_failover, "1", 0, 10, NULL,
      "Extra accounts tried when an upstream fails before the first byte reached the client."),
    I("RATE_LIMIT_COOLDOWN_SECONDS", rate_limit_cooldown_seconds, "60", 1, 86400, NULL,
      "Cool-down after a 429 that says neither retry-after nor a reset time."),
    I("OVERLOAD_COOLDOWN_SECONDS", overload_cooldown_seconds, "60", 0, 86400, NULL,
      "Cool-down after a 529 (overloaded). 0: none."),
    I("ERROR_THRESHOLD", error_threshold, "3", 1, 1000, NULL,
      "This many account-attributable errors (403, 5xx) within ERROR_WINDOW_SECONDS cool an account down. "
      "Errors the request provokes (400, 404, 413, 422) never count."),
    I("ERROR_WINDOW_SECONDS", error_window_seconds, "300", 1, 86400, NULL, "See ERROR_THRESHOLD."),
    I("ERROR_COOLDOWN_SECONDS", error_cooldown_seconds, "300", 1, 86400, NULL,
      "Cool-down after ERROR_THRESHOLD errors."),
    I("ERROR_MARKS_PER_KEY_PER_MINUTE", error_marks_per_key_per_minute, "2", 0, 1000, NULL,
      "At most this many of one API key's requests per minute count toward ERROR_THRESHOLD (the rest are "
      "logged only), so one key cannot park accounts with requests that provoke upstream errors. 0: no limit."),
    I("TRANSPORT_BACKOFF_SECONDS", transport_backoff_seconds, "2", 1, 300, NULL,
      "After a transport failure (connection refused or reset, timeout before the first byte) an account "
      "backs off this long, doubling with each further failure; then one request probes it, and a success "
      "closes the breaker. Transport failures never count toward ERROR_THRESHOLD."),
    I("TRANSPORT_BACKOFF_MAX_SECONDS", transport_backoff_max_seconds, "30", 1, 3600, NULL,
      "The longest transport back-off."),
    I("COOLDOWN_MAX_SECONDS", cooldown_max_seconds, "18000", 1, 604800, NULL,
      "No cool-down lasts longer, whatever the upstream's reset header says."),

    S("OPENAI_MODEL_MAP", openai_model_map, "{}", 0, "OpenAI-compatible endpoint",
      "JSON object mapping model names clients send to Claude models, e.g. {\"gpt-4o\":\"claude-sonnet-5\"}. "
      "Unmapped names are passed through."),
    I("OPENAI_DEFAULT_MAX_TOKENS", openai_default_max_tokens, "4096", 1, 1000000, NULL,
      "max_tokens sent to Claude when an OpenAI request gives neither max_tokens nor max_completion_tokens."),
    B("OPENAI_SHOW_THINKING", openai_show_thinking, "false", NULL,
      "Pass Claude's thinking to OpenAI clients as reasoning_content; off: thinking is dropped."),

    I("REQUEST_LOG_MAX", request_log_max, "10000", 100, 10000000, NULL,
      "Entries kept in the per-request log (a Redis stream) for the console."),
    S("USAGE_SPOOL_FILE", usage_spool_file, "/var/lib/ai-relay/usage.spool", 0, NULL,
      "Usage records Redis could not take are kept here and replayed at the next start. Empty: memory only. "
      "The directory is created 0700 when missing; a file or directory that is a symlink, belongs to another "
      "user or is open to others (file not 0600, directory writable by group/others) is refused and logged."),

    S("JWT_SECRET", jwt_secret, "", CFG_SECRET, "Secrets (required)",
      "Signs admin sessions. At least 32 characters: openssl rand -hex 32"),
    S("ENCRYPTION_KEY", encryption_key, "", CFG_SECRET, NULL,
      "Encrypts account secrets at rest and keys API-key hashes. Exactly 32 characters: openssl rand -hex 16"),

    S("PRICING_FILE", pricing_file, ARS_SYSCONFDIR "/ai-relay/pricing.json", 0, "Usage and cost",
      "Model prices (USD per million tokens, per token kind). Reloaded on SIGHUP. The relay refuses to start "
      "without a valid file: usage would be billed wrong."),

    I("KEY_CACHE_SECONDS", key_cache_seconds, "5", 0, 3600, "API keys",
      "How long a process trusts its in-memory copy of an API key. A change (disable, delete, limits) "
      "reaches every process and host within this time. 0: always ask Redis."),
    I("KEY_CACHE_MAX_ENTRIES", key_cache_max_entries, "10000", 16, 10000000, NULL,
      "Most API keys one process keeps in memory."),

    I("WORKER_THREADS", worker_threads, "64", 1, 8192, "Process",
      "FastCGI worker threads per process. A streamed answer holds one for its whole life: size for concurrent streams."),
    I("WORKER_RESERVE", worker_reserve, "1", 0, 8192, NULL,
      "Worker threads relay requests may not take: when all the others hold relay requests, a new one gets "
      "529 overloaded_error (503 on /openai/) with retry-after 1 at once, so /health and /metrics still answer."),
    S("LISTEN_SOCKET_GROUP", listen_socket_group, "", 0, NULL,
      "Group of the --listen unix: socket, which is created mode 0660: the group the web server's workers run "
      "as (nginx: nobody's nogroup or www-data). Empty: the relay's own group."),
    I("WORKER_STACK_KB", worker_stack_kb, "256", 64, 16384, NULL, "Stack size of each worker thread, in KiB."),
    I("REQUEST_MAX_BYTES", request_max_bytes, "62914560", 1024, 1073741824LL, NULL,
      "Largest request body accepted; larger ones get 413. Keep the web server's limit at least this."),
    I("SHUTDOWN_GRACE_SECONDS", shutdown_grace_seconds, "30", 0, 3600, NULL,
      "On SIGTERM, how long in-flight requests may run before the process exits anyway."),
    I("HEALTH_TIMEOUT_MS", health_timeout_ms, "500", 50, 10000, NULL,
      "Deadline of each /health probe (Redis, PostgreSQL), in milliseconds."),
    B("ENABLE_CORS", enable_cors, "false", NULL,
      "Answer CORS preflights and add Access-Control-Allow-* headers (browser clients)."),
    B("ENABLE_TEST_ROUTES", enable_test_routes, "false", NULL,
      "Adds /_test/* routes used by the test suite (SSE generator). Never in production."),
    E("LOG_LEVEL", log_level, "info", log_levels, "Logging", "debug, info, warn or error."),
    E("LOG_FORMAT", log_format, "logfmt", log_formats, NULL, "logfmt or json, one line per event on stderr."),
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

size_t ars_config_key_count(void) { return NKEYS; }
const char *ars_config_key_name(size_t i) { return i < NKEYS ? keys[i].name : NULL; }

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

static const struct cfg_key *find_key(const char *name, size_t n)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strlen(keys[i].name) == n && memcmp(keys[i].name, name, n) == 0)
            return &keys[i];
    return NULL;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = { "true", "1", "yes", "on" };
    static const char *const no[] = { "false", "0", "no", "off" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) { *out = 1; return 0; }
        if (strcasecmp(v, no[i]) == 0) { *out = 0; return 0; }
    }
    return -1;
}

static int parse_int(const char *v, long long *out)
{
    if (!*v)
        return -1;
    errno = 0;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (errno || *end)
        return -1;
    *out = x;
    return 0;
}

/* Stores one value; on a bad value, errbuf names the variable and the
 * accepted form. `where` says where the value came from. */
static enum ars_err set_value(struct ars_config *cfg, const struct cfg_key *k, const char *v,
                              const char *where, char *errbuf, size_t errlen)
{
    char *base = (char *)cfg;
    switch (k->type) {
    case CFG_STR: {
        char **slot = (char **)(base + k->offset);
        char *copy = strdup(v);
        if (!copy)
            return ARS_ERR_NOMEM;
        free(*slot);
        *slot = copy;
        return ARS_OK;
    }
    case CFG_INT: {
        long long x;
        if (parse_int(v, &x) || x < k->min || x > k->max) {
            set_err(errbuf, errlen, "%s%s: invalid value \"%s\": expected an integer from %lld to %lld",
                    k->name, where, v, k->min, k->max);
            return ARS_ERR_CONFIG;
        }
        *(long long *)(base + k->offset) = x;
        return ARS_OK;
    }
    case CFG_BOOL: {
        int b;
        if (parse_bool(v, &b)) {
            set_err(errbuf, errlen, "%s%s: invalid value \"%s\": expected true or false", k->name, where, v);
            return ARS_ERR_CONFIG;
        }
        *(int *)(base + k->offset) = b;
        return ARS_OK;
    }
    case CFG_ENUM:
        for (int i = 0; k->choices[i]; i++) {
            if (strcasecmp(v, k->choices[i]) == 0) {
                *(int *)(base + k->offset) = i;
                return ARS_OK;
            }
        }
        {
            char list[128] = "";
            size_t used = 0;
            for (int i = 0; k->choices[i] && used < sizeof(list); i++)
                used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", k->choices[i]);
            set_err(errbuf, errlen, "%s%s: invalid value \"%s\": expected one of %s", k->name, where, v, list);
        }
        return ARS_ERR_CONFIG;
    }
    return ARS_ERR_CONFIG;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Env-style file: KEY=VALUE, optional "export ", # comments, optional
 * matching quotes around the value. Unknown keys are ignored (the same
 * file often feeds other tools) but do not pass silently: they are
 * reported through *unknown_count. */
static enum ars_err load_file(struct ars_config *cfg, const char *path, int required,
                              char *errbuf, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (!required && errno == ENOENT)
            return ARS_OK;
        set_err(errbuf, errlen, "config file %s: %s", path, strerror(errno));
        return ARS_ERR_CONFIG;
    }
    enum ars_err err = ARS_OK;
    char line[ARS_CAP_CONFIG_LINE];
    long lineno = 0;
    size_t total = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        size_t n = strlen(line);
        total += n;
        if (total > ARS_CAP_CONFIG_FILE) {
            set_err(errbuf, errlen, "config file %s: larger than %d bytes", path, ARS_CAP_CONFIG_FILE);
            err = ARS_ERR_CONFIG;
            goto out;
        }
        if (n == sizeof(line) - 1 && line[n - 1] != '\n') {
            set_err(errbuf, errlen, "config file %s:%ld: line longer than %d bytes", path, lineno,
                    ARS_CAP_CONFIG_LINE - 2);
            err = ARS_ERR_CONFIG;
            goto out;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        if (strncmp(s, "export ", 7) == 0)
            s = trim(s + 7);
        char *eq = strchr(s, '=');
        if (!eq) {
            set_err(errbuf, errlen, "config file %s:%ld: expected KEY=VALUE", path, lineno);
            err = ARS_ERR_CONFIG;
            goto out;
        }
        *eq = '\0';
        char *key = trim(s);
        char *val = trim(eq + 1);
        size_t vn = strlen(val);
        if (vn >= 2 && (val[0] == '"' || val[0] == '\'') && val[vn - 1] == val[0]) {
            val[vn - 1] = '\0';
            val++;
        }
        const struct cfg_key *k = find_key(key, strlen(key));
        if (!k)
            continue;
        char where[64];
        snprintf(where, sizeof(where), " (%.30s:%ld)", strrchr(path, '/') ? strrchr(path, '/') + 1 : path, lineno);
        err = set_value(cfg, k, val, where, errbuf, errlen);
        if (err)
            goto out;
    }
    if (ferror(f)) {
        set_err(errbuf, errlen, "config file %s: read error", path);
        err = ARS_ERR_CONFIG;
    }
out:
    fclose(f);
    return err;
}

static enum ars_err load_env(struct ars_config *cfg, char *const *env, char *errbuf, size_t errlen)
{
    for (; env && *env; env++) {
        const char *eq = strchr(*env, '=');
        if (!eq)
            continue;
        const struct cfg_key *k = find_key(*env, (size_t)(eq - *env));
        if (!k)
            continue;
        enum ars_err err = set_value(cfg, k, eq + 1, " (environment)", errbuf, errlen);
        if (err)
            return err;
    }
    return ARS_OK;
}

/* Rules that span the table: required secrets and what this build supports. */
static enum ars_err validate(const struct ars_config *cfg, char *errbuf, size_t errlen)
{
    if (strlen(cfg->jwt_secret) < 32) {
        set_err(errbuf, errlen, "JWT_SECRET is %s: it must be at least 32 characters "
                "(generate one with: openssl rand -hex 32)",
                cfg->jwt_secret[0] ? "too short" : "not set");
        return ARS_ERR_CONFIG;
    }
    if (strlen(cfg->encryption_key) != 32) {
        set_err(errbuf, errlen, "ENCRYPTION_KEY is %s: it must be exactly 32 characters "
                "(generate one with: openssl rand -hex 16)",
                cfg->encryption_key[0] ? "the wrong length" : "not set");
        return ARS_ERR_CONFIG;
    }
#ifndef HAVE_HIREDIS_SSL
    if (cfg->redis_enable_tls) {
        set_err(errbuf, errlen, "REDIS_ENABLE_TLS=true, but this build's hiredis has no TLS support "
                "(hiredis_ssl); use a TLS tunnel such as stunnel, or set REDIS_ENABLE_TLS=false");
        return ARS_ERR_CONFIG;
    }
#endif
    {
        json_object *map = json_tokener_parse(cfg->openai_model_map);
        int ok = map && json_object_is_type(map, json_type_object);
        if (ok) {
            json_object_object_foreach(map, name, value) {
                (void)name;
                ok &= json_object_is_type(value, json_type_string);
            }
        }
        json_object_put(map);
        if (!ok) {
            set_err(errbuf, errlen, "OPENAI_MODEL_MAP must be a JSON object of strings, e.g. {\"gpt-4o\":\"claude-sonnet-5\"}");
            return ARS_ERR_CONFIG;
        }
    }
    if (!cfg->redis_key_prefix[0]) {
        set_err(errbuf, errlen, "REDIS_KEY_PREFIX must not be empty (default ars:)");
        return ARS_ERR_CONFIG;
    }
    return ARS_OK;
}

enum ars_err ars_config_load(const char *file, int file_required, char *const *env,
                             struct ars_config **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    struct ars_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        set_err(errbuf, errlen, "out of memory");
        return ARS_ERR_NOMEM;
    }
    enum ars_err err = ARS_OK;
    for (size_t i = 0; i < NKEYS && !err; i++)
        err = set_value(cfg, &keys[i], keys[i].def, " (built-in default)", errbuf, errlen);
    if (!err && file)
        err = load_file(cfg, file, file_required, errbuf, errlen);
    if (!err)
        err = load_env(cfg, env, errbuf, errlen);
    if (!err)
        err = validate(cfg, errbuf, errlen);
    if (!err && ars_crypto_keys_derive(cfg->encryption_key, &cfg->keys) != ARS_OK) {
        set_err(errbuf, errlen, "ENCRYPTION_KEY: key derivation failed (OpenSSL)");
        err = ARS_ERR_CONFIG;
    }
    if (err) {
        ars_config_free(cfg);
        return err;
    }
    *out = cfg;
    return ARS_OK;
}

void ars_config_free(struct ars_config *cfg)
{
    if (!cfg)
        return;
    ars_crypto_keys_clear(&cfg->keys);
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].type == CFG_STR)
            free(*(char **)((char *)cfg + keys[i].offset));
    free(cfg);
}

static void format_value(const struct ars_config *cfg, const struct cfg_key *k, char *out, size_t n)
{
    const char *base = (const char *)cfg;
    switch (k->type) {
    case CFG_STR: {
        const char *v = *(char *const *)(base + k->offset);
        if (k->flags & CFG_SECRET) {
            char masked[64];
            ars_mask_secret(v, masked, sizeof(masked));
            snprintf(out, n, "%s", masked);
        } else {
            snprintf(out, n, "%s", v);
        }
        break;
    }
    case CFG_INT:
        snprintf(out, n, "%lld", *(const long long *)(base + k->offset));
        break;
    case CFG_BOOL:
        snprintf(out, n, "%s", *(const int *)(base + k->offset) ? "true" : "false");
        break;
    case CFG_ENUM:
        snprintf(out, n, "%s", k->choices[*(const int *)(base + k->offset)]);
        break;
    }
}

void ars_config_print(const struct ars_config *cfg, FILE *f)
{
    for (size_t i = 0; i < NKEYS; i++) {
        char v[512];
        format_value(cfg, &keys[i], v, sizeof(v));
        fprintf(f, "%s=%s\n", keys[i].name, v);
    }
}

static void describe_bounds(const struct cfg_key *k, char *out, size_t n)
{
    out[0] = '\0';
    if (k->type == CFG_INT) {
        snprintf(out, n, " Range %lld..%lld.", k->min, k->max);
    } else if (k->type == CFG_BOOL) {
        snprintf(out, n, " true or false.");
    }
}

void ars_config_print_sample(FILE *f)
{
    fprintf(f, "# ai-relay configuration (env-style: KEY=VALUE).\n"
               "# Read from --config FILE (default: .env in the working directory, if present);\n"
               "# variables in the process environment override the file.\n"
               "# This file is generated from the relay's config table: ai-relay --print-sample-config\n"
               "# Check the effective values with: ai-relay --check-config\n");
    for (size_t i = 0; i < NKEYS; i++) {
        const struct cfg_key *k = &keys[i];
        if (k->section)
            fprintf(f, "\n# ---- %s ----\n", k->section);
        char bounds[96];
        describe_bounds(k, bounds, sizeof(bounds));
        fprintf(f, "\n# %s%s%s\n", k->help, bounds, (k->flags & CFG_SECRET) ? " Secret: never logged." : "");
        if (!strcmp(k->name, "JWT_SECRET") || !strcmp(k->name, "ENCRYPTION_KEY"))
            fprintf(f, "%s=\n", k->name);
        else if (!strcmp(k->name, "PRICING_FILE"))
            /* The default depends on the install prefix; the manual names it. */
            fprintf(f, "#%s=$(sysconfdir)/ai-relay/pricing.json\n", k->name);
        else
            fprintf(f, "#%s=%s\n", k->name, k->def);
    }
}

void ars_config_print_help(FILE *f)
{
    for (size_t i = 0; i < NKEYS; i++)
        fprintf(f, "  %-26s %s (default: %s)\n", keys[i].name, keys[i].help,
                keys[i].def[0] ? keys[i].def : "empty");
}

/* Current config: an atomic pointer. Replaced configs are kept on a list
 * and freed at exit, so readers never need a lock or a refcount. Reloads
 * are rare and small, so the retained memory stays trivial. */
static _Atomic(struct ars_config *) current;
static struct retired { struct retired *next; struct ars_config *cfg; } *retired_list;
static pthread_mutex_t retired_lock = PTHREAD_MUTEX_INITIALIZER;

const struct ars_config *ars_config_current(void)
{
    return atomic_load(&current);
}

void ars_config_install(struct ars_config *cfg)
{
    struct ars_config *old = atomic_exchange(&current, cfg);
    if (!old)
        return;
    struct retired *r = malloc(sizeof(*r));
    pthread_mutex_lock(&retired_lock);
    if (r) {
        r->cfg = old;
        r->next = retired_list;
        retired_list = r;
    }
    /* Without memory for the record the old config leaks: safer than a
     * free under a reader. */
    pthread_mutex_unlock(&retired_lock);
}

void ars_config_release_all(void)
{
    pthread_mutex_lock(&retired_lock);
    while (retired_list) {
        struct retired *r = retired_list;
        retired_list = r->next;
        ars_config_free(r->cfg);
        free(r);
    }
    pthread_mutex_unlock(&retired_lock);
    ars_config_free(atomic_exchange(&current, NULL));
}
