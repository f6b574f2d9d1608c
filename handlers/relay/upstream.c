#include "upstream.h"
#include "clock.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ars_upstream {
    CURL *easy;
};

struct transfer {
    const struct ars_upstream_call *call;
    struct ars_upstream_result *res;
    long long started_ms;
    long long last_byte_ms;
    long long last_tick_ms;
    int head_done;
    int too_big;
    int aborted;
    int timeout_head;
    int timeout_idle;
};


struct ars_upstream *ars_upstream_new(void)
{
    struct ars_upstream *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->easy = curl_easy_init();
    if (!u->easy) {
        free(u);
        return NULL;
    }
    return u;
}

void ars_upstream_free(struct ars_upstream *u)
{
    if (!u)
        return;
    curl_easy_cleanup(u->easy);
    free(u);
}

const char *ars_upstream_header(const struct ars_upstream_headers *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->h[i].name, name) == 0)
            return h->h[i].value;
    return NULL;
}

static void headers_clear(struct ars_upstream_headers *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->h[i].name);
        free(h->h[i].value);
    }
    h->n = 0;
    h->bytes = 0;
}

void ars_upstream_result_clear(struct ars_upstream_result *res)
{
    headers_clear(&res->head);
}

const char *ars_upstream_outcome_str(enum ars_upstream_outcome o)
{
    switch (o) {
    case ARS_UP_DONE: return "done";
    case ARS_UP_CONNECT_FAILED: return "connect_failed";
    case ARS_UP_TIMEOUT_HEAD: return "timeout_first_byte";
    case ARS_UP_TIMEOUT_IDLE: return "timeout_idle";
    case ARS_UP_BROKEN: return "broken";
    case ARS_UP_TOO_BIG: return "too_big";
    case ARS_UP_ABORTED: return "aborted";
    }
    return "unknown";
}

static int parse_status(const char *p, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n && i < 3 && p[i] >= '0' && p[i] <= '9'; i++)
        v = v * 10 + (p[i] - '0');
    return v;
}

/* Header lines one at a time. A new status line (after a 100 Continue or
 * a proxy's CONNECT answer) starts the set again; the blank line ends it. */
static size_t on_header(char *buf, size_t size, size_t nitems, void *arg)
{
    struct transfer *t = arg;
    size_t n = size * nitems;
    struct ars_upstream_headers *h = &t->res->head;
    t->last_byte_ms = ars_mono_ms();
    if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        headers_clear(h);
        const char *sp = memchr(buf, ' ', n);
        h->status = sp ? parse_status(sp + 1, n - (size_t)(sp + 1 - buf)) : 0;
        return n;
    }
    if (n <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        /* End of a header block; 1xx blocks are followed by the real one. */
        if (h->status >= 200 && !t->head_done) {
            t->head_done = 1;
            t->res->ttfb_ms = ars_mono_ms() - t->started_ms;
            if (t->call->on_head && t->call->on_head(t->call->ctx, h) != 0) {
                t->aborted = 1;
                return 0;
            }
        }
        return n;
    }
    h->bytes += n;
    const char *colon = memchr(buf, ':', n);
    if (!colon || h->n == ARS_UPSTREAM_MAX_HEADERS || h->bytes > ARS_UPSTREAM_MAX_HEADER_BYTES)
        return n;   /* odd lines and headers past the caps are dropped, not fatal */
    size_t name_len = (size_t)(colon - buf);
    const char *v = colon + 1;
    size_t vlen = n - name_len - 1;
    while (vlen && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    char *name = malloc(name_len + 1), *value = malloc(vlen + 1);
    if (!name || !value) {
        free(name);
        free(value);
        return n;
    }
    for (size_t i = 0; i < name_len; i++)
        name[i] = (char)tolower((unsigned char)buf[i]);
    name[name_len] = '\0';
    memcpy(value, v, vlen);
    value[vlen] = '\0';
    h->h[h->n].name = name;
    h->h[h->n].value = value;
    h->n++;
    return n;
}

static size_t on_write(char *buf, size_t size, size_t nmemb, void *arg)
{
    struct transfer *t = arg;
    size_t n = size * nmemb;
    t->last_byte_ms = ars_mono_ms();
    t->res->bytes += n;
    if (t->res->bytes > t->call->max_response_bytes) {
        t->too_big = 1;
        return 0;
    }
    if (t->call->on_data && t->call->on_data(t->call->ctx, buf, n) != 0) {
        t->aborted = 1;
        return 0;
    }
    return n;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal; (void)dlnow; (void)ultotal; (void)ulnow;
    struct transfer *t = arg;
    long long now = ars_mono_ms();
    if (!t->head_done && now - t->started_ms > t->call->first_byte_timeout_ms) {
        t->timeout_head = 1;
        return 1;
    }
    if (t->head_done && now - t->last_byte_ms > t->call->idle_timeout_ms) {
        t->timeout_idle = 1;
        return 1;
    }
    if (t->call->on_tick && now - t->last_tick_ms >= 1000) {
        t->last_tick_ms = now;
        if (t->call->on_tick(t->call->ctx, now - t->last_byte_ms) != 0) {
            t->aborted = 1;
            return 1;
        }
    }
    return 0;
}

void ars_upstream_perform(struct ars_upstream *u, const struct ars_upstream_call *call, struct ars_upstream_result *res)
{
    memset(res, 0, sizeof(*res));
    struct transfer t = { .call = call, .res = res };
    t.started_ms = t.last_byte_ms = t.last_tick_ms = ars_mono_ms();
    CURL *e = u->easy;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, call->url);
    /* Only HTTP(S), also after a redirect: an account's base URL or a
     * proxy answer must never make the relay read file://, gopher://,
     * dict:// or the like on the relay's host. */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
    if (call->body) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
    }
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)call->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, res->error);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    /* Never decode: bytes go to the client exactly as the upstream sent them. */
    curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    if (call->proxy && *call->proxy) {
        curl_easy_setopt(e, CURLOPT_PROXY, call->proxy);
        /* socks5:// would resolve locally; the account's proxy should see the name. */
        if (strncmp(call->proxy, "socks5://", 9) == 0)
            curl_easy_setopt(e, CURLOPT_PROXYTYPE, (long)CURLPROXY_SOCKS5_HOSTNAME);
    } else {
        curl_easy_setopt(e, CURLOPT_PROXY, "");   /* ignore *_proxy environment variables */
    }

    CURLcode rc = curl_easy_perform(e);
    res->total_ms = ars_mono_ms() - t.started_ms;
    if (rc == CURLE_OK)
        res->outcome = ARS_UP_DONE;
    else if (t.too_big)
        res->outcome = ARS_UP_TOO_BIG;
    else if (t.timeout_head)
        res->outcome = ARS_UP_TIMEOUT_HEAD;
    else if (t.timeout_idle)
        res->outcome = ARS_UP_TIMEOUT_IDLE;
    else if (t.aborted)
        res->outcome = ARS_UP_ABORTED;
    else if (!t.head_done && res->bytes == 0)
        res->outcome = rc == CURLE_OPERATION_TIMEDOUT ? ARS_UP_TIMEOUT_HEAD : ARS_UP_CONNECT_FAILED;
    else
        res->outcome = ARS_UP_BROKEN;
    if (rc != CURLE_OK && !res->error[0])
        snprintf(res->error, sizeof(res->error), "%s", curl_easy_strerror(rc));
}
