/* POST .../v1/messages and .../v1/messages/count_tokens: the relay.
 *
 *   auth -> body fields -> model and client restrictions -> limits (one
 *   Redis script) -> account pick (one script) -> upstream via libcurl ->
 *   response streamed or passed through -> usage recorded after the
 *   response is finished (one pipelined write).
 *
 * Failover: while nothing has reached the client (no response head sent),
 * an upstream failure marks the account and tries another, at most
 * MAX_FAILOVER times. Once the stream started, a failure becomes an
 * Anthropic `event: error`. A client that leaves mid-stream does not stop
 * the upstream read: it continues (bounded by DRAIN_MAX_*) until the
 * final usage, which is billed. Every lease is released on every path:
 * by the usage write, or by the arena cleanup if the request ends early. */
#include <curl/curl.h>
#include <json.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "clock.h"
#include "body.h"
#include "config.h"
#include "handlers.h"
#include "limits.h"
#include "log.h"
#include "metrics.h"
#include "oauth.h"
#include "openai.h"
#include "pricing.h"
#include "response.h"
#include "scheduler.h"
#include "sse.h"
#include "upstream.h"
#include "usage.h"
#include "worker.h"

#define CONVERTED_SLACK (1024 * 1024)    /* converted OpenAI answers may outgrow the Claude one */
#define MAX_TRIED 16

/* Streams of departed clients being read on for their usage in this
 * process; at most DRAIN_MAX_CONCURRENT (see drain_admit). */
static atomic_int drains_active;



struct relay {
    struct ars_request *req;
    const struct ars_config *cfg;
    struct ars_key *key;           /* the request's reference: dropped by auth's arena cleanup */
    /* The key's id, copied: arena cleanups run newest first, so auth's
     * release of the key runs BEFORE relay_release_leases (registered
     * earlier); with KEY_CACHE_SECONDS=0 that was the last reference, and
     * reading rl->key->id there was a use-after-free that left the lease. */
    char key_id[ARS_UUID_LEN + 1];
    struct ars_body_fields body;
    int count_tokens;
    const char *route_family;
    char session[65];
    long long started_ms;

    int key_lease;                 /* a concurrency lease is held */
    struct ars_account *account;   /* current attempt (reference) */
    int account_lease;
    int probe;                     /* this attempt tests the account's open transport breaker */
    char account_id[40];           /* the account that served (for usage) */

    /* one attempt */
    int stream;
    int committed;                 /* the response head went to the client */
    struct ars_buf held;           /* upstream body held back (non-stream, or an error) */
    struct ars_sse_parser sse;
    int sse_ready;
    struct ars_sse_usage su;
    size_t fed;                    /* stream bytes fed so far */
    size_t flushed_to;             /* ...of which the client has up to here */
    long long last_ping_ms;
    long long last_lease_refresh_ms;
    long long gone_at_ms;          /* client left: drain deadline starts here */
    int drain_state;               /* 1: holds a drain slot; -1: refused one, stop reading */
    size_t drained;
    long long ttfb_ms;
    int status;                    /* status the client got */
    char model_billed[ARS_BODY_MODEL_MAX];

    struct ars_usage_record rec;

    /* OpenAI-compatible route: the request converted to a Claude body,
     * and the answer converted back as it arrives. */
    const char *client;            /* recognised client, taken before the FastCGI params are freed */
    int openai;
    struct ars_openai_meta oa;
    struct ars_openai_stream oas;
    struct ars_buf claude_body;
    struct ars_buf out;
    char oa_id[48];
};

/* ---- small helpers ---- */

static void drain_end(struct relay *rl)
{
    if (rl->drain_state > 0)
        atomic_fetch_sub(&drains_active, 1);
    rl->drain_state = 0;
}

/* A Redis write about an account or a lease that failed: the request goes
 * on (the state is advisory or has a TTL backstop), the log says what was
 * lost. */
static void log_store_failure(const struct relay *rl, const char *what, enum ars_err err)
{
    if (err == ARS_OK)
        return;
    struct ars_logline l;
    ars_log_begin(&l, ARS_LOG_WARN, rl->req->id, "store_write_failed");
    ars_log_str(&l, "what", what);
    ars_log_str(&l, "error", ars_err_str(err));
    ars_log_end(&l);
}

/* A lease release that Redis did not take goes to the usage thread's
 * retried compensating release: without it the lease would block the key
 * or the account until LEASE_TTL_SECONDS. */
static void release_or_queue(struct relay *rl, int key_lease, const char *account_id)
{
    struct ars_worker *w = rl->req->worker;
    int key_left = key_lease && ars_limits_release(w->redis, rl->cfg, rl->key_id, rl->req->id) != ARS_OK;
    int account_left = account_id && ars_sched_release(w->redis, rl->cfg, account_id, rl->req->id) != ARS_OK;
    if (key_left || account_left)
        log_store_failure(rl, "lease release (queued for retry)",
                          ars_usage_cancel_later(rl->cfg, rl->req->id, rl->key_id, key_left, account_left));
}

static void relay_release_leases(void *arg)
{
    struct relay *rl = arg;
    drain_end(rl);
    release_or_queue(rl, rl->key_lease, rl->account_lease && rl->account ? rl->account->id : NULL);
    rl->key_lease = rl->account_lease = 0;
    if (rl->account) {
        ars_account_release(rl->account);
        rl->account = NULL;
    }
    if (rl->sse_ready) {
        ars_sse_deinit(&rl->sse);
        rl->sse_ready = 0;
    }
    ars_buf_deinit(&rl->held);
    ars_buf_deinit(&rl->claude_body);
    ars_buf_deinit(&rl->out);
}

static const char *client_name(const struct ars_request *req)
{
    const char *ua = ars_request_header(req, "user-agent");
    if (ua && strncmp(ua, "claude-cli/", 11) == 0)
        return "claude_code";
    return ua && *ua ? "other" : "unknown";
}

/* Claude Code identifies itself by its user agent and sends x-app and the
 * anthropic-* headers; the relay only recognises it, never imitates it. */
static int is_claude_code(const struct ars_request *req)
{
    const char *ua = ars_request_header(req, "user-agent");
    return ua && strncmp(ua, "claude-cli/", 11) == 0 && ars_request_header(req, "x-app") &&
           ars_request_header(req, "anthropic-version");
}

static int client_allowed(const struct ars_key *k, const struct ars_request *req)
{
    if (!k->allowed_clients || !k->allowed_clients[0])
        return 1;
    for (char **c = k->allowed_clients; *c; c++)
        if (strcmp(*c, "claude_code") == 0 && is_claude_code(req))
            return 1;
    return 0;
}

/* Conversation id for sticky routing: Claude Code's session header, the
 * session part of metadata.user_id, else a hash of system + first message
 * (the part of a conversation that does not change between turns). */
static void session_hash(const struct ars_request *req, const struct ars_body_fields *b, char out[65])
{
    const char *hdr = ars_request_header(req, "x-claude-code-session-id");
    const char *sess = strstr(b->user_id, "session_");
    out[0] = '\0';
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL))
        goto out;
    if (hdr && *hdr) {
        EVP_DigestUpdate(c, "h:", 2);
        EVP_DigestUpdate(c, hdr, strlen(hdr));
    } else if (sess) {
        EVP_DigestUpdate(c, "u:", 2);
        EVP_DigestUpdate(c, sess, strlen(sess));
    } else if (b->system.p || b->first_message.p) {
        EVP_DigestUpdate(c, "c:", 2);
        if (b->system.p)
            EVP_DigestUpdate(c, b->system.p, b->system.n);
        if (b->first_message.p)
            EVP_DigestUpdate(c, b->first_message.p, b->first_message.n);
    } else {
        goto out;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_DigestFinal_ex(c, md, &mdlen) && mdlen >= 16)
        for (int i = 0; i < 16; i++)
            snprintf(out + 2 * i, 3, "%02x", md[i]);
out:
    EVP_MD_CTX_free(c);
}

/* ---- the upstream request ---- */

static int forwardable(const char *name)
{
    static const char *const allowed[] = {
        "anthropic-version", "anthropic-beta", "accept", "user-agent", "x-app",
        "anthropic-dangerous-direct-browser-access", "x-claude-code-session-id", NULL
    };
    for (int i = 0; allowed[i]; i++)
        if (strcmp(name, allowed[i]) == 0)
            return 1;
    return strncmp(name, "x-stainless-", 12) == 0;
}

/* A value that can go on one header line: no CR, LF or other control
 * byte (HTAB aside) and within the cap. The request parser refuses such
 * client values already; this keeps any other source (an account's token)
 * from splitting the upstream request. */
static int header_value_ok(const char *v)
{
    size_t n = 0;
    for (; v[n]; n++)
        if (((unsigned char)v[n] < 0x20 && v[n] != '\t') || v[n] == 0x7f)
            return 0;
    return n <= ARS_CAP_HEADER_VALUE_BYTES;
}

static struct curl_slist *add_header(struct curl_slist *list, struct ars_arena *a, const char *name,
                                     const char *value)
{
    char *line = value && header_value_ok(value) ? ars_arena_printf(a, "%s: %s", name, value) : NULL;
    struct curl_slist *n = line ? curl_slist_append(list, line) : NULL;
    if (!n)
        curl_slist_free_all(list);
    return n;
}

static void free_headers(void *arg)
{
    curl_slist_free_all(arg);
}

/* Header whitelist from the client, its auth never forwarded, the
 * account's auth added. */
static struct curl_slist *upstream_headers(struct relay *rl, const char *token)
{
    struct ars_request *req = rl->req;
    struct ars_arena *a = req->arena;
    struct curl_slist *h = NULL;
    const char *beta = NULL;
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *name = req->headers[i].name;
        if (!forwardable(name) || !header_value_ok(req->headers[i].value))
            continue;   /* never forwarded; the parser already refused bad client values */
        if (strcmp(name, "anthropic-beta") == 0) {
            beta = req->headers[i].value;
            continue;
        }
        if (!(h = add_header(h, a, name, req->headers[i].value)))
            return NULL;
    }
    if (!ars_request_header(req, "anthropic-version") && !(h = add_header(h, a, "anthropic-version",
                                                                          rl->cfg->claude_api_version)))
        return NULL;
    if (rl->account->type == ARS_ACCOUNT_OAUTH) {
        /* OAuth tokens need the OAuth beta flag next to the client's own flags. */
        const char *flag = rl->cfg->claude_beta_header;
        const char *merged = beta && *beta ? (strstr(beta, flag) ? beta : ars_arena_printf(a, "%s,%s", beta, flag))
                                           : flag;
        if (!merged || !(h = add_header(h, a, "anthropic-beta", merged)) ||
            !(h = add_header(h, a, "authorization", ars_arena_printf(a, "Bearer %s", token))))
            return NULL;
    } else {
        if ((beta && *beta && !(h = add_header(h, a, "anthropic-beta", beta))) ||
            !(h = add_header(h, a, "x-api-key", token)))
            return NULL;
    }
    if (!(h = add_header(h, a, "content-type", "application/json")))
        return NULL;
    /* No 100-continue round trip, and bytes stay as the upstream sends them. */
    h = curl_slist_append(h, "Expect:");
    if (h)
        h = curl_slist_append(h, "Accept-Encoding: identity");
    return h;
}

static const char *upstream_url(struct relay *rl)
{
    struct ars_arena *a = rl->req->arena;
    const char *suffix = rl->count_tokens ? "/count_tokens" : "";
    const char *q = rl->req->query[0] ? rl->req->query : NULL;
    if (rl->account->type == ARS_ACCOUNT_OAUTH) {
        const char *base = rl->cfg->claude_api_url;
        return ars_arena_printf(a, "%s%s%s%s", base, suffix, q ? "?" : "", q ? q : "?beta=true");
    }
    const char *base = rl->account->base_url && *rl->account->base_url ? rl->account->base_url
                                                                        : "https://api.anthropic.com";
    size_t n = strlen(base);
    while (n && base[n - 1] == '/')
        n--;
    int has_path = n >= 12 && memcmp(base + n - 12, "/v1/messages", 12) == 0;
    return ars_arena_printf(a, "%.*s%s%s%s%s", (int)n, base, has_path ? "" : "/v1/messages", suffix, q ? "?" : "",
                            q ? q : "");
}

/* The body to send: the client's bytes, or with the model replaced when
 * the account maps it. */
static void upstream_body(struct relay *rl, const char **body, size_t *len)
{
    struct ars_buf *in = rl->openai ? &rl->claude_body : rl->req->body;
    *body = in->data;
    *len = in->len;
    const char *mapped = ars_account_map_model(rl->account, rl->body.model);
    snprintf(rl->model_billed, sizeof(rl->model_billed), "%s", rl->body.model);
    if (!mapped || strcmp(mapped, rl->body.model) == 0)
        return;
    struct ars_buf tok;
    ars_buf_init(&tok, ARS_BODY_MODEL_MAX * 6 + 2);
    if (ars_buf_add_json_str(&tok, mapped, strlen(mapped)) == ARS_OK) {
        size_t head = (size_t)(rl->body.model_value.p - in->data);
        size_t tail = in->len - head - rl->body.model_value.n;
        char *out = ars_arena_alloc(rl->req->arena, head + tok.len + tail + 1);
        if (out) {
            memcpy(out, in->data, head);
            memcpy(out + head, tok.data, tok.len);
            memcpy(out + head + tok.len, rl->body.model_value.p + rl->body.model_value.n, tail);
            out[head + tok.len + tail] = '\0';
            *body = out;
            *len = head + tok.len + tail;
            snprintf(rl->model_billed, sizeof(rl->model_billed), "%s", mapped);
        }
    }
    ars_buf_deinit(&tok);
}

/* ---- streaming callbacks ---- */

static void pass_request_id(struct relay *rl, const struct ars_upstream_headers *h)
{
    const char *rid = ars_upstream_header(h, "request-id");
    if (rid)
        ars_resp_header_optional(rl->req, "request-id", ars_arena_strdup(rl->req->arena, rid));
}

static int on_head(void *ctx, const struct ars_upstream_headers *h)
{
    struct relay *rl = ctx;
    if (rl->probe) {
        /* A probe got an answer head: the transport works again. Closed
         * now, not after a long stream, so others need not wait for it. */
        log_store_failure(rl, "breaker close", ars_sched_breaker_close(rl->req->worker->redis, rl->cfg, rl->account));
        rl->probe = 0;
    }
    const char *ct = ars_upstream_header(h, "content-type");
    if (rl->stream && h->status == 200 && ct && strstr(ct, "text/event-stream")) {
        pass_request_id(rl, h);
        rl->committed = 1;
        rl->status = 200;
        rl->ttfb_ms = ars_mono_ms() - rl->started_ms;
        if (ars_sse_start(rl->req, 200) != ARS_OK)
            rl->gone_at_ms = ars_mono_ms();
        if (rl->openai)
            ars_openai_stream_init(&rl->oas, &rl->oa, ars_wall_ms() / 1000, rl->oa_id, rl->cfg->openai_show_thinking);
    }
    return 0;
}

static void write_client(struct relay *rl, const char *data, size_t n)
{
    if (rl->gone_at_ms)
        return;
    if (ars_resp_write(rl->req, data, n) != ARS_OK)
        rl->gone_at_ms = ars_mono_ms();
}

/* Writes converted OpenAI chunks and flushes them. */
static void send_stream_error(struct relay *rl, const char *type, const char *message);

static void write_out(struct relay *rl)
{
    if (rl->out.len && !rl->gone_at_ms) {
        write_client(rl, rl->out.data, rl->out.len);
        if (!rl->gone_at_ms && ars_resp_flush(rl->req) != ARS_OK)
            rl->gone_at_ms = ars_mono_ms();
    }
    ars_buf_reset(&rl->out);
}

/* The client left mid-stream. Reading on for the final usage holds this
 * worker up to DRAIN_MAX_SECONDS; with every client gone at once (a
 * network blip, a killed load test) drains alone would fill the pool. So
 * at most DRAIN_MAX_CONCURRENT run per process; past that the upstream
 * read stops now and the usage seen so far (message_start's input, the
 * output counted until here) is what gets billed, and logged as such.
 * 0 read on, -1 stop. */
static int drain_admit(struct relay *rl)
{
    if (rl->drain_state)
        return rl->drain_state > 0 ? 0 : -1;
    if (atomic_fetch_add(&drains_active, 1) < rl->cfg->drain_max_concurrent) {
        rl->drain_state = 1;
        return 0;
    }
    atomic_fetch_sub(&drains_active, 1);
    rl->drain_state = -1;
    struct ars_logline l;
    ars_log_begin(&l, ARS_LOG_WARN, rl->req->id, "drain_refused");
    ars_log_str(&l, "msg", "client left mid-stream and DRAIN_MAX_CONCURRENT drains run: upstream read stopped, "
                           "usage so far billed");
    ars_log_int(&l, "drain_max_concurrent", rl->cfg->drain_max_concurrent);
    ars_log_int(&l, "input", rl->su.usage.input);
    ars_log_int(&l, "output", rl->su.usage.output);
    ars_log_end(&l);
    return -1;
}

static int on_data(void *ctx, const char *data, size_t n)
{
    struct relay *rl = ctx;
    if (!rl->committed) {
        /* Not streaming to the client (yet): hold the bytes. */
        if (rl->held.len + n > rl->held.cap)
            return -1;
        return ars_buf_add(&rl->held, data, n) == ARS_OK ? 0 : -1;
    }
    size_t boundary = 0;
    enum ars_err err = ars_sse_feed(&rl->sse, data, n, &boundary);
    struct ars_sse_event ev;
    /* Events that completed before an error still count (and bill). */
    while (ars_sse_next(&rl->sse, &ev)) {
        ars_sse_usage_update(&rl->su, &ev);
        if (rl->openai && !rl->gone_at_ms) {
            if (ars_openai_stream_event(&rl->oas, &ev, &rl->out) != ARS_OK) {
                /* A converted chunk over its cap: the client's stream
                 * cannot go on whole. End it with an error chunk and
                 * read on for the usage as for a client that left. */
                ars_log_msg(ARS_LOG_WARN, rl->req->id, "openai_stream_convert_failed",
                            "a converted chunk did not fit; the client's stream is ended");
                send_stream_error(rl, "api_error", "the upstream event could not be converted");
                rl->gone_at_ms = ars_mono_ms();
            } else {
                write_out(rl);
            }
        }
    }
    rl->fed += n;
    if (rl->gone_at_ms) {
        /* Client gone: keep reading for the usage, within the bounds. */
        if (drain_admit(rl) != 0)
            return -1;
        rl->drained += n;
        if (rl->su.saw_stop || ars_mono_ms() - rl->gone_at_ms > rl->cfg->drain_max_seconds * 1000 ||
            rl->drained > (size_t)rl->cfg->drain_max_bytes)
            return -1;
        return 0;
    }
    if (rl->openai) {
        rl->flushed_to = boundary;
    } else {
        write_client(rl, data, n);
        /* Flush once per complete event, so each reaches the client at once. */
        if (!rl->gone_at_ms && boundary > rl->flushed_to) {
            rl->flushed_to = boundary;
            if (ars_resp_flush(rl->req) != ARS_OK)
                rl->gone_at_ms = ars_mono_ms();
        }
    }
    if (err != ARS_OK)
        return -1;   /* an event over the parser's cap: the stream is not Anthropic's */
    return 0;
}

static void refresh_leases(struct relay *rl)
{
    struct ars_worker *w = rl->req->worker;
    long long now = ars_wall_ms();
    /* A refresh that fails leaves the lease to its deadline: the next
     * tick tries again; the log says the limit may admit early. */
    if (rl->key_lease)
        log_store_failure(rl, "key lease refresh", ars_limits_refresh(w->redis, rl->cfg, rl->key_id, rl->req->id, now));
    if (rl->account_lease)
        log_store_failure(rl, "account lease refresh",
                          ars_sched_refresh(w->redis, rl->cfg, rl->account->id, rl->req->id, now));
}

static int on_tick(void *ctx, long long silent_ms)
{
    struct relay *rl = ctx;
    long long now = ars_mono_ms();
    if (now - rl->last_lease_refresh_ms >= rl->cfg->lease_ttl_seconds * 1000 / 3) {
        rl->last_lease_refresh_ms = now;
        refresh_leases(rl);
    }
    if (rl->committed && !rl->gone_at_ms && silent_ms >= rl->cfg->stream_ping_seconds * 1000 &&
        now - rl->last_ping_ms >= rl->cfg->stream_ping_seconds * 1000) {
        static const char ping[] = "event: ping\ndata: {\"type\": \"ping\"}\n\n";
        static const char keepalive[] = ": keepalive\n\n";
        rl->last_ping_ms = now;
        /* Only between events: never split an event the upstream is sending. */
        if (rl->flushed_to == rl->fed &&
            (rl->openai ? ars_sse_raw(rl->req, keepalive, sizeof(keepalive) - 1)
                        : ars_sse_raw(rl->req, ping, sizeof(ping) - 1)) != ARS_OK)
            rl->gone_at_ms = now;
    }
    if (rl->gone_at_ms && (drain_admit(rl) != 0 || now - rl->gone_at_ms > rl->cfg->drain_max_seconds * 1000))
        return -1;
    return 0;
}

/* ---- responses ---- */

static void send_stream_error(struct relay *rl, const char *type, const char *message)
{
    if (rl->gone_at_ms)
        return;
    if (rl->openai) {
        if (!ars_openai_stream_done(&rl->oas)) {
            if (ars_openai_stream_abort(&rl->oas, message, &rl->out) == ARS_OK)
                write_out(rl);
            else
                ars_log_msg(ARS_LOG_WARN, rl->req->id, "openai_stream_abort_failed", "the error chunk did not fit");
        }
        return;
    }
    struct ars_buf b;
    ars_buf_init(&b, 4096);
    if (ars_error_body(&b, ARS_SHAPE_ANTHROPIC, 502, type, message) == ARS_OK) {
        if (rl->flushed_to != rl->fed)
            write_client(rl, "\n\n", 2);   /* end a cut-off event first */
        if (ars_sse_event(rl->req, "error", b.data, b.len) != ARS_OK)
            rl->gone_at_ms = ars_mono_ms();
    }
    ars_buf_deinit(&b);
}

/* Passes a held upstream answer (status, type, request id, body) on;
 * on the OpenAI route converted to OpenAI's shapes. */
static void send_held(struct relay *rl, const struct ars_upstream_result *res)
{
    if (rl->openai) {
        int status = res->head.status;
        ars_buf_reset(&rl->out);
        enum ars_err e = status >= 200 && status < 300
            ? ars_claude_to_openai_response(rl->held.data ? rl->held.data : "", rl->held.len, &rl->oa,
                                            ars_wall_ms() / 1000, rl->oa_id, &rl->out)
            : ars_claude_error_to_openai(status, rl->held.data ? rl->held.data : "", rl->held.len, &rl->out);
        pass_request_id(rl, &res->head);
        if (e) {
            rl->status = 502;
            ars_resp_error(rl->req, 502, NULL, "the upstream answer could not be converted to the OpenAI format");
            return;
        }
        rl->status = status;
        ars_resp_send(rl->req, status, "application/json", rl->out.data, rl->out.len);
        return;
    }
    const char *ct = ars_upstream_header(&res->head, "content-type");
    pass_request_id(rl, &res->head);
    const char *ra = ars_upstream_header(&res->head, "retry-after");
    if (ra && res->head.status == 429)
        ars_resp_header_optional(rl->req, "retry-after", ars_arena_strdup(rl->req->arena, ra));
    rl->status = res->head.status;
    const char *ct_copy = ct ? ars_arena_strdup(rl->req->arena, ct) : NULL;
    ars_resp_send(rl->req, res->head.status, ct_copy ? ct_copy : "application/json",
                  rl->held.data ? rl->held.data : "", rl->held.len);
}

static int retryable(int status)
{
    return status == 401 || status == 403 || status == 429 || status == 529 || status >= 500;
}

static void log_attempt(struct relay *rl, const struct ars_upstream_result *res, const char *what)
{
    struct ars_logline l;
    ars_log_begin(&l, ARS_LOG_WARN, rl->req->id, "upstream_failed");
    ars_log_str(&l, "account", rl->account ? rl->account->id : "-");
    ars_log_str(&l, "outcome", ars_upstream_outcome_str(res->outcome));
    ars_log_int(&l, "status", res->head.status);
    if (res->error[0])
        ars_log_str(&l, "error", res->error);
    ars_log_str(&l, "action", what);
    ars_log_end(&l);
}

/* ---- usage, after the response ---- */

/* A 2xx answer without readable usage is billed 0 tokens, which must never
 * go unnoticed: one warn line with the request id and a /metrics counter. */
static void usage_unreadable(const struct ars_request *req, const struct relay *rl,
                             const struct ars_usage_record *rec)
{
    struct ars_logline l;
    ars_log_begin(&l, ARS_LOG_WARN, req->id, "usage_unreadable");
    ars_log_str(&l, "key", rec->key_id);
    ars_log_str(&l, "account", rec->account_id);
    ars_log_str(&l, "model", rec->model);
    ars_log_int(&l, "status", rec->status);
    ars_log_str(&l, "stream", rl->stream ? "true" : "false");
    ars_log_str(&l, "billed", "0 tokens");
    ars_log_end(&l);
    ars_metrics_usage_unreadable();
}

static void record_usage(struct ars_request *req, void *arg)
{
    struct relay *rl = arg;
    struct ars_usage_record *rec = &rl->rec;
    if (!rl->account_id[0])
        return;   /* no upstream answered: nothing to bill; the cleanup releases the leases */
    snprintf(rec->request_id, sizeof(rec->request_id), "%s", req->id);
    snprintf(rec->key_id, sizeof(rec->key_id), "%s", rl->key->id);
    snprintf(rec->account_id, sizeof(rec->account_id), "%s", rl->account_id);
    snprintf(rec->model, sizeof(rec->model), "%.*s", (int)sizeof(rec->model) - 1,
             rl->su.model[0] ? rl->su.model : rl->model_billed);
    snprintf(rec->route_family, sizeof(rec->route_family), "%s", rl->route_family);
    snprintf(rec->client, sizeof(rec->client), "%s", rl->client);
    rec->usage = rl->su.usage;
    rec->status = rl->status ? rl->status : req->status;
    if (rec->status >= 200 && rec->status < 300 && !rl->su.have_start && !rl->su.have_delta && !rl->su.saw_error)
        usage_unreadable(req, rl, rec);
    const struct ars_model_price *price = ars_pricing_lookup(ars_pricing_current(), rec->model, NULL);
    rec->cost_micros = price ? ars_cost_micros(price, &rec->usage) : 0;
    rec->duration_ms = ars_mono_ms() - rl->started_ms;
    rec->ttfb_ms = rl->ttfb_ms;
    rec->stream = rl->stream;
    rec->at_ms = ars_wall_ms();
    rec->window_active = rl->key->window_minutes > 0;
    rec->week_start_ms = ars_week_start_ms(rec->at_ms, rl->key->weekly_reset_day, rl->key->weekly_reset_hour);
    rec->release_key_lease = rl->key_lease;
    rec->release_account_lease = rl->account_lease && rl->account_id[0];
    /* Queued for retry if Redis fails; a record that could be neither
     * applied nor kept is logged there as usage_lost. */
    log_store_failure(rl, "usage record", ars_usage_record(req->worker->redis, rl->cfg, rec));
    /* The usage write released them (or its retry will); the lease TTL is the backstop. */
    rl->key_lease = 0;
    rl->account_lease = 0;

    struct ars_logline l;
    ars_log_begin(&l, ARS_LOG_INFO, req->id, "usage");
    ars_log_str(&l, "key", rec->key_id);
    ars_log_str(&l, "account", rec->account_id);
    ars_log_str(&l, "model", rec->model);
    ars_log_int(&l, "input", rec->usage.input);
    ars_log_int(&l, "output", rec->usage.output);
    ars_log_int(&l, "cache_5m", rec->usage.cache_write_5m);
    ars_log_int(&l, "cache_1h", rec->usage.cache_write_1h);
    ars_log_int(&l, "cache_read", rec->usage.cache_read);
    ars_log_int(&l, "cost_micros", rec->cost_micros);
    ars_log_end(&l);
}

/* ---- one attempt on one account ---- */

enum attempt_result { ATTEMPT_DONE, ATTEMPT_RETRY, ATTEMPT_RETRY_SAME };

static enum attempt_result attempt(struct relay *rl, int oauth_forced, struct ars_upstream_result *res)
{
    struct ars_request *req = rl->req;
    struct ars_worker *w = req->worker;
    char err[256];
    char *token = NULL;
    if (rl->account->type == ARS_ACCOUNT_OAUTH) {
        if (ars_oauth_access_token(w->redis, rl->cfg, rl->account, oauth_forced, &token, err, sizeof(err)) != ARS_OK) {
            struct ars_logline l;
            ars_log_begin(&l, ARS_LOG_WARN, req->id, "oauth_failed");
            ars_log_str(&l, "account", rl->account->id);
            ars_log_str(&l, "error", err);
            ars_log_end(&l);
            memset(res, 0, sizeof(*res));
            res->outcome = ARS_UP_CONNECT_FAILED;
            snprintf(res->error, sizeof(res->error), "OAuth token: %.200s", err);
            if (rl->probe) {
                /* The probe could not even start: end it, so the next
                 * request may probe (a failed probe backs off further). */
                log_store_failure(rl, "account mark",
                                  ars_sched_mark_transport(w->redis, rl->cfg, rl->account, "OAuth token unavailable",
                                                           ars_wall_ms()));
                rl->probe = 0;
            }
            return ATTEMPT_RETRY;
        }
    } else {
        token = strdup(rl->account->api_key ? rl->account->api_key : "");
    }
    struct curl_slist *headers = token ? upstream_headers(rl, token) : NULL;
    free(token);
    const char *url = upstream_url(rl);
    if (!url || !headers || ars_arena_on_reset(req->arena, free_headers, headers)) {
        /* Out of memory here is the relay's, not the account's: no mark. */
        curl_slist_free_all(headers);
        memset(res, 0, sizeof(*res));
        res->outcome = ARS_UP_CONNECT_FAILED;
        snprintf(res->error, sizeof(res->error), "out of memory");
        return ATTEMPT_RETRY;
    }
    const char *body;
    size_t body_len;
    upstream_body(rl, &body, &body_len);

    ars_buf_reset(&rl->held);
    memset(&rl->su, 0, sizeof(rl->su));
    rl->fed = rl->flushed_to = 0;
    struct ars_upstream_call call = {
        .url = url,
        .proxy = rl->account->proxy,
        .headers = headers,
        .body = body,
        .body_len = body_len,
        .connect_timeout_ms = rl->cfg->upstream_connect_timeout_ms,
        .first_byte_timeout_ms = rl->cfg->upstream_first_byte_timeout_ms,
        .idle_timeout_ms = rl->cfg->upstream_idle_timeout_ms,
        .max_response_bytes = (size_t)rl->cfg->upstream_max_response_bytes,
        .on_head = on_head,
        .on_data = on_data,
        .on_tick = on_tick,
        .ctx = rl,
    };
    rl->last_ping_ms = rl->last_lease_refresh_ms = ars_mono_ms();
    ars_upstream_perform(w->upstream, &call, res);
    drain_end(rl);

    if (rl->committed) {
        /* The stream reached the client: whatever happens now is told in-band. */
        snprintf(rl->account_id, sizeof(rl->account_id), "%s", rl->account->id);
        if (res->outcome != ARS_UP_DONE && !(res->outcome == ARS_UP_ABORTED && rl->gone_at_ms)) {
            log_attempt(rl, res, "stream_error_event");
            send_stream_error(rl, res->outcome == ARS_UP_TIMEOUT_IDLE ? "timeout_error" : "api_error",
                              res->outcome == ARS_UP_TIMEOUT_IDLE ? "the upstream stopped sending (idle timeout)"
                                                                  : "the upstream connection broke mid-stream");
        } else if (res->outcome == ARS_UP_DONE && !rl->su.saw_stop && !rl->su.saw_error) {
            log_attempt(rl, res, "stream_error_event");
            send_stream_error(rl, "api_error", "the upstream stream ended before message_stop");
        }
        return ATTEMPT_DONE;
    }

    int status = res->head.status;
    if (status >= 200 && status < 300 && res->outcome != ARS_UP_DONE) {
        /* A 2xx head whose body did not arrive whole (connection broken,
         * over UPSTREAM_MAX_RESPONSE_BYTES, idle timeout): nothing reached
         * the client yet, so it is a failed attempt, never a 200 with cut
         * JSON. Another account may answer; answer_failed says 502. */
        if (res->outcome != ARS_UP_TOO_BIG) {   /* too big is the answer's size, not the account's fault */
            log_store_failure(rl, "account mark",
                              ars_sched_mark_transport(w->redis, rl->cfg, rl->account,
                                                       ars_upstream_outcome_str(res->outcome), ars_wall_ms()));
            rl->probe = 0;
        }
        log_attempt(rl, res, "failover");
        ars_buf_reset(&rl->held);
        return ATTEMPT_RETRY;
    }
    if (res->outcome == ARS_UP_DONE && status >= 200 && status < 300) {
        /* Non-stream success (or a stream the upstream answered as JSON).
         * Usage is read as what the upstream sent (its content type), not
         * as what the request asked for; record_usage reports it when none
         * could be read. */
        snprintf(rl->account_id, sizeof(rl->account_id), "%s", rl->account->id);
        if (ars_sse_usage_from_body(&rl->su, ars_upstream_header(&res->head, "content-type"), rl->held.data,
                                    rl->held.len) == ARS_ERR_NOMEM)
            ars_log_msg(ARS_LOG_WARN, req->id, "usage_unreadable", "out of memory reading the usage");
        rl->ttfb_ms = res->ttfb_ms;
        send_held(rl, res);
        return ATTEMPT_DONE;
    }
    if (res->outcome == ARS_UP_DONE || status) {
        const char *retry_after = ars_upstream_header(&res->head, "retry-after");
        const char *reset = ars_upstream_header(&res->head, "anthropic-ratelimit-unified-reset");
        if (status == 401 && rl->account->type == ARS_ACCOUNT_OAUTH && !oauth_forced) {
            log_attempt(rl, res, "refresh_token_and_retry");
            return ATTEMPT_RETRY_SAME;
        }
        if (status == 401)
            log_store_failure(rl, "account mark",
                              ars_sched_mark_unauthorized(w->redis, rl->cfg, rl->account, "upstream answered 401"));
        else
            log_store_failure(rl, "account mark",
                              ars_sched_mark(w->redis, rl->cfg, rl->account, rl->key_id, rl->body.model, status,
                                             retry_after, reset, ars_wall_ms()));
        if (!retryable(status)) {
            snprintf(rl->account_id, sizeof(rl->account_id), "%s", rl->account->id);
            send_held(rl, res);
            return ATTEMPT_DONE;
        }
        log_attempt(rl, res, "failover");
        return ATTEMPT_RETRY;
    }
    /* Nothing usable arrived: connect failure or timeout before the head.
     * A transport failure backs the account off briefly (a breaker), it
     * does not count toward the long error cool-down: a 5-second outage
     * must not park the pool for ERROR_COOLDOWN_SECONDS. */
    log_store_failure(rl, "account mark",
                      ars_sched_mark_transport(w->redis, rl->cfg, rl->account, ars_upstream_outcome_str(res->outcome),
                                               ars_wall_ms()));
    rl->probe = 0;
    log_attempt(rl, res, "failover");
    return ATTEMPT_RETRY;
}

static void answer_failed(struct relay *rl, const struct ars_upstream_result *res)
{
    int st = res->head.status;
    if (st >= 200 && st < 300 && res->outcome != ARS_UP_DONE) {
        /* The last attempt's 2xx body broke off (see attempt()). */
        rl->status = 502;
        ars_resp_error(rl->req, 502, "api_error",
                       res->outcome == ARS_UP_TOO_BIG ? "the upstream answer exceeded the relay's size limit"
                       : res->outcome == ARS_UP_TIMEOUT_IDLE ? "the upstream stopped sending mid-answer (idle timeout)"
                                                            : "the upstream connection broke mid-answer");
        return;
    }
    if (st) {
        send_held(rl, res);
        return;
    }
    /* libcurl's text names the upstream's or the proxy's host and port;
     * the client gets what happened, the log (log_attempt, with the
     * request id) keeps the details. */
    int timeout = res->outcome == ARS_UP_TIMEOUT_HEAD;
    rl->status = timeout ? 504 : 502;
    ars_resp_error(rl->req, rl->status, timeout ? "timeout_error" : "api_error",
                   timeout ? "the upstream did not answer in time" : "the upstream could not be reached");
}

static void relay_messages(struct ars_request *req, int count_tokens, int openai)
{
    const struct ars_config *cfg = req->cfg;
    struct ars_worker *w = req->worker;
    struct relay *rl = ars_arena_calloc(req->arena, sizeof(*rl));
    if (!rl) {
        ars_resp_error(req, 503, NULL, "out of memory");
        return;
    }
    rl->req = req;
    rl->cfg = cfg;
    rl->count_tokens = count_tokens;
    rl->openai = openai;
    rl->route_family = openai ? "openai" : "claude";
    rl->started_ms = ars_mono_ms();
    rl->client = client_name(req);
    /* A whole non-stream answer is held before it is passed on. */
    ars_buf_init(&rl->held, (size_t)cfg->upstream_max_response_bytes);
    ars_buf_init(&rl->claude_body, (size_t)cfg->request_max_bytes + 65536);
    ars_buf_init(&rl->out, CONVERTED_SLACK + 2 * (size_t)cfg->upstream_max_response_bytes);
    if (ars_arena_on_reset(req->arena, relay_release_leases, rl)) {
        ars_resp_error(req, 503, NULL, "out of memory");
        return;
    }

    if (ars_auth_key(req, openai ? ARS_PERM_OPENAI : ARS_PERM_CLAUDE, &rl->key))
        return;
    snprintf(rl->key_id, sizeof(rl->key_id), "%s", rl->key->id);
    char err[512];
    struct ars_buf *claude = req->body;
    if (openai) {
        struct ars_openai_opts o = { cfg->openai_model_map, cfg->openai_default_max_tokens, cfg->openai_show_thinking };
        if (ars_openai_to_claude(req->body->data ? req->body->data : "", req->body->len, &o, &rl->claude_body, &rl->oa,
                                 err, sizeof(err))) {
            ars_resp_error(req, 400, "invalid_request_error", err);
            return;
        }
        claude = &rl->claude_body;
        snprintf(rl->oa_id, sizeof(rl->oa_id), "%s", req->id);
    }
    if (ars_body_scan(claude->data ? claude->data : "", claude->len, 1, &rl->body, err, sizeof(err))) {
        ars_resp_error(req, 400, "invalid_request_error", err);
        return;
    }
    rl->stream = rl->body.stream && !count_tokens;
    if (ars_key_model_blocked(rl->key, rl->body.model)) {
        char *msg = ars_arena_printf(req->arena, "model %s is not allowed for this API key", rl->body.model);
        ars_resp_error(req, 403, "permission_error", msg ? msg : "model not allowed");
        return;
    }
    if (!client_allowed(rl->key, req)) {
        ars_resp_error(req, 403, "permission_error",
                       "this API key only accepts requests from its allowed clients (claude_code)");
        return;
    }

    struct ars_admission adm;
    enum ars_err e = ars_limits_admit(w->redis, cfg, rl->key, req->id, ars_wall_ms(), count_tokens, &adm);
    if (e) {
        ars_resp_error(req, 503, "api_error", "the limit store (Redis) is unavailable; retry shortly");
        return;
    }
    if (adm.verdict != ARS_LIMIT_OK) {
        int status;
        const char *type;
        char msg[512];
        ars_limits_describe(&adm, &status, &type, msg, sizeof(msg));
        if (status == 429) {
            char *ra = ars_arena_printf(req->arena, "%lld", ars_limits_retry_after_seconds(&adm));
            if (ra)
                ars_resp_header_optional(req, "retry-after", ra);
        }
        ars_resp_error(req, status, type, msg);
        return;
    }
    rl->key_lease = !count_tokens;
    session_hash(req, &rl->body, rl->session);
    if (rl->stream) {
        ars_sse_init(&rl->sse, ARS_SSE_MAX_EVENT_BYTES);
        rl->sse_ready = 1;
    }

    const char *tried[MAX_TRIED];
    char tried_ids[MAX_TRIED][sizeof(rl->account_id)];   /* the accounts themselves are released on failover */
    size_t ntried = 0;
    struct ars_upstream_result res;
    memset(&res, 0, sizeof(res));
    int have_res = 0;
    for (long long attempt_no = 0; attempt_no <= cfg->max_failover && ntried < MAX_TRIED; attempt_no++) {
        struct ars_pick pick;
        char why[256];
        e = ars_sched_pick(w->redis, cfg, rl->key, rl->body.model, rl->session[0] ? rl->session : NULL, req->id,
                           tried, ntried, ars_wall_ms(), &pick, why, sizeof(why));
        if (e) {
            if (e == ARS_ERR_UNAVAILABLE && rl->key_lease) {
                /* Redis failed: the key's lease goes by the retried
                 * compensating release (ars_sched_pick queued the pool's). */
                if (ars_usage_cancel_later(cfg, req->id, rl->key_id, 1, 0) == ARS_OK)
                    rl->key_lease = 0;
            }
            /* The why names accounts and groups: for the log only. */
            struct ars_logline l;
            ars_log_begin(&l, ARS_LOG_WARN, req->id, "no_account");
            ars_log_str(&l, "key", rl->key_id);
            ars_log_str(&l, "why", why);
            ars_log_end(&l);
            if (have_res) {
                answer_failed(rl, &res);
            } else {
                ars_resp_error(req, 503, "overloaded_error",
                               e == ARS_ERR_UNAVAILABLE ? "the account store (Redis) is unavailable; retry shortly"
                                                        : "no upstream account can take this request right now "
                                                          "(busy, cooling down or unavailable); retry shortly");
            }
            goto out;
        }
        rl->account = pick.account;
        rl->account_lease = 1;
        rl->probe = pick.probe;
        snprintf(tried_ids[ntried], sizeof(tried_ids[ntried]), "%s", rl->account->id);
        tried[ntried] = tried_ids[ntried];
        ntried++;
        if (have_res)
            ars_upstream_result_clear(&res);
        enum attempt_result ar = attempt(rl, 0, &res);
        if (ar == ATTEMPT_RETRY_SAME) {
            ars_upstream_result_clear(&res);
            ar = attempt(rl, 1, &res);
        }
        have_res = 1;
        if (ar == ATTEMPT_DONE)
            goto out;
        /* Failover: this account's lease goes now; the next pick excludes it. */
        release_or_queue(rl, 0, rl->account->id);
        rl->account_lease = 0;
        ars_account_release(rl->account);
        rl->account = NULL;
    }
    answer_failed(rl, &res);
out:
    if (have_res)
        ars_upstream_result_clear(&res);
    if (!count_tokens) {
        req->after_finish = record_usage;
        req->after_arg = rl;
    }
}

void ars_handle_messages(struct ars_request *req)
{
    relay_messages(req, 0, 0);
}

void ars_handle_count_tokens(struct ars_request *req)
{
    relay_messages(req, 1, 0);
}

void ars_handle_chat_completions(struct ars_request *req)
{
    relay_messages(req, 0, 1);
}
