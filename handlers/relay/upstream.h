/* The upstream HTTP call, over libcurl. One easy handle per worker thread,
 * reused across requests so connections, DNS and TLS sessions are kept
 * (curl_easy_reset keeps them). HTTP/2 when the upstream offers it over
 * TLS. Three deadlines: connect, first byte (response headers) and idle
 * (silence between bytes); a progress callback enforces the last two and
 * gives the caller a tick to send keepalives and refresh leases. */
#ifndef ARS_RELAY_UPSTREAM_H
#define ARS_RELAY_UPSTREAM_H

#include <curl/curl.h>
#include <stddef.h>

#include "err.h"

#define ARS_UPSTREAM_MAX_HEADERS 64
#define ARS_UPSTREAM_MAX_HEADER_BYTES 16384

struct ars_upstream_headers {
    int status;
    size_t n;
    struct { char *name; char *value; } h[ARS_UPSTREAM_MAX_HEADERS];  /* names lower-cased */
    size_t bytes;
};

const char *ars_upstream_header(const struct ars_upstream_headers *h, const char *name);

struct ars_upstream_call {
    const char *url;
    const char *proxy;                  /* "" or NULL: direct */
    const struct curl_slist *headers;
    const char *body;
    size_t body_len;
    long long connect_timeout_ms;
    long long first_byte_timeout_ms;
    long long idle_timeout_ms;
    size_t max_response_bytes;
    /* Called once when the response headers are complete: 0 go on, -1 abort. */
    int (*on_head)(void *ctx, const struct ars_upstream_headers *h);
    /* Body bytes as they arrive: 0 go on, -1 abort. */
    int (*on_data)(void *ctx, const char *data, size_t n);
    /* About once a second while the call runs, with ms since the last
     * byte: 0 go on, -1 abort. May be NULL. */
    int (*on_tick)(void *ctx, long long silent_ms);
    void *ctx;
};

enum ars_upstream_outcome {
    ARS_UP_DONE,            /* complete response (any status) */
    ARS_UP_CONNECT_FAILED,  /* nothing was received */
    ARS_UP_TIMEOUT_HEAD,    /* no response headers in time */
    ARS_UP_TIMEOUT_IDLE,    /* stalled after the response started */
    ARS_UP_BROKEN,          /* the connection failed mid-response */
    ARS_UP_TOO_BIG,         /* over max_response_bytes */
    ARS_UP_ABORTED          /* a callback asked to stop */
};

struct ars_upstream_result {
    enum ars_upstream_outcome outcome;
    struct ars_upstream_headers head;   /* valid when head.status != 0 */
    long long ttfb_ms;                  /* until response headers */
    long long total_ms;
    size_t bytes;
    char error[CURL_ERROR_SIZE];
};

struct ars_upstream;

struct ars_upstream *ars_upstream_new(void);
void ars_upstream_free(struct ars_upstream *u);

/* Runs the call to its end; *res describes it (free with
 * ars_upstream_result_clear): the outcome says how it ended, whatever the
 * HTTP status. */
void ars_upstream_perform(struct ars_upstream *u, const struct ars_upstream_call *call, struct ars_upstream_result *res);
void ars_upstream_result_clear(struct ars_upstream_result *res);

const char *ars_upstream_outcome_str(enum ars_upstream_outcome o);

#endif
