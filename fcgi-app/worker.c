#include "worker.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "response.h"
#include "redis.h"
#include "upstream.h"

#define BODY_KEEP_BYTES (1024 * 1024)   /* body buffers above this are freed after the request */

__thread const char *ars_current_request_id;
__thread const char *ars_current_route;

static const struct ars_server *server;
static pthread_mutex_t accept_lock = PTHREAD_MUTEX_INITIALIZER;

/* Requests on ARS_ROUTE_RELAY routes in this process, from routing until
 * their after-finish work is done. A stream holds its worker for minutes
 * (longer when a departed client's stream is drained), so without a
 * bound the relay takes every worker and /health, /metrics wait behind
 * it until the web server times them out. */
static atomic_int relay_in_flight;
static atomic_int threads_running;

void ars_worker_set_server(const struct ars_server *srv)
{
    server = srv;
}

void ars_worker_set_threads(int n)
{
    atomic_store(&threads_running, n);
}

int ars_worker_init(struct ars_worker *w, int index)
{
    memset(w, 0, sizeof(*w));
    w->index = index;
    ars_arena_init(&w->arena, 16384);
    ars_buf_init(&w->body, 0);
    w->redis = ars_redis_new();
    w->upstream = ars_upstream_new();
    if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng))
        w->rng = (uint64_t)time(NULL) ^ ((uint64_t)index << 32);
    w->rng |= 1;
    return w->redis && w->upstream ? 0 : -1;
}

void ars_worker_deinit(struct ars_worker *w)
{
    ars_arena_deinit(&w->arena);
    ars_buf_deinit(&w->body);
    ars_redis_free(w->redis);
    w->redis = NULL;
    ars_upstream_free(w->upstream);
    w->upstream = NULL;
}

static uint64_t next_random(struct ars_worker *w)
{
    /* xorshift64*: ids only need to be unique-ish, not secret. */
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static long long elapsed_us(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)(now.tv_sec - since->tv_sec) * 1000000LL + (now.tv_nsec - since->tv_nsec) / 1000;
}

static void access_log(const struct ars_request *req, const char *route, long long us)
{
    enum ars_log_level level = req->status >= 500 ? ARS_LOG_WARN : ARS_LOG_INFO;
    struct ars_logline l;
    ars_log_begin(&l, level, req->id, "request");
    ars_log_str(&l, "method", req->method ? req->method : "-");
    ars_log_str(&l, "route", route);
    if (req->path && req->route_index < 0)
        ars_log_strn(&l, "path", req->path, strlen(req->path) > 200 ? 200 : strlen(req->path));
    ars_log_int(&l, "status", req->status);
    ars_log_double(&l, "duration_ms", (double)us / 1000.0);
    ars_log_int(&l, "bytes", (long long)req->bytes_out);
    if (req->client_gone)
        ars_log_str(&l, "client_gone", "true");
    ars_log_end(&l);
}

static void handle_cors_preflight(struct ars_request *req)
{
    ars_resp_header_optional(req, "Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS");
    ars_resp_header_optional(req, "Access-Control-Allow-Headers",
                    "authorization, content-type, x-api-key, anthropic-version, anthropic-beta, "
                    "anthropic-dangerous-direct-browser-access, x-stainless-os, x-stainless-lang, "
                    "x-stainless-package-version, x-stainless-runtime, x-stainless-runtime-version, "
                    "x-stainless-arch, x-stainless-retry-count, x-stainless-timeout");
    ars_resp_header_optional(req, "Access-Control-Max-Age", "86400");
    ars_resp_send(req, 204, NULL, "", 0);
}

static int wants_body(const char *method)
{
    return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
           strcmp(method, "OPTIONS") != 0;
}

void ars_worker_after_finish(struct ars_request *req)
{
    if (req && req->after_finish) {
        ars_current_request_id = req->id;
        req->after_finish(req, req->after_arg);
        req->after_finish = NULL;
        ars_current_request_id = NULL;
    }
    if (req && req->worker && req->worker->relay_slot) {
        req->worker->relay_slot = 0;
        atomic_fetch_sub(&relay_in_flight, 1);
    }
}

/* A relay request may use WORKER_THREADS - WORKER_RESERVE workers (at
 * least one): the reserve stays free for the cheap routes. 0 with a slot
 * taken (w->relay_slot), -1 when the relay's share is all busy. */
static int take_relay_slot(struct ars_worker *w, const struct ars_config *cfg)
{
    int threads = atomic_load(&threads_running);
    if (threads <= 0)
        return 0;
    long long reserve = cfg->worker_reserve < threads ? cfg->worker_reserve : threads - 1;
    int limit = threads - (int)reserve;
    if (atomic_fetch_add(&relay_in_flight, 1) >= limit) {
        atomic_fetch_sub(&relay_in_flight, 1);
        return -1;
    }
    w->relay_slot = 1;
    return 0;
}

/* Every relay worker is busy: say so at once, in the route's shape, with
 * a short retry-after (a stream ends any moment; 1 s is what SDKs wait
 * anyway). 529 overloaded_error is what Anthropic's SDKs retry; OpenAI's
 * know 503. */
static void refuse_overloaded(struct ars_request *req)
{
    ars_resp_header_optional(req, "retry-after", "1");
    ars_resp_error(req, req->shape == ARS_SHAPE_OPENAI ? 503 : 529, "overloaded_error",
                   "the relay is at capacity: all of its workers for relay requests are busy; retry shortly");
}

/* The answer when not even an error response can be allocated. */
static void send_static_error(struct ars_io io)
{
    static const char oom[] = "Status: 503 Service Unavailable\r\nContent-Type: application/json\r\n\r\n"
                              "{\"error\":{\"type\":\"api_error\",\"message\":\"out of memory\"}}";
    io.write(io.ctx, oom, sizeof(oom) - 1);
}

struct ars_request *ars_worker_handle(struct ars_worker *w, const struct ars_server *srv,
                                      char *const *envp, struct ars_io io)
{
    struct ars_request *req = ars_arena_calloc(&w->arena, sizeof(*req));
    if (!req) {
        send_static_error(io);
        return NULL;
    }
    const struct ars_config *cfg = ars_config_current();
    clock_gettime(CLOCK_MONOTONIC, &req->started);
    req->arena = &w->arena;
    req->io = io;
    req->cfg = cfg;
    req->worker = w;
    req->route_index = -1;
    req->body = &w->body;
    w->body.cap = (size_t)cfg->request_max_bytes;
    snprintf(req->id, sizeof(req->id), "%016llx", (unsigned long long)next_random(w));
    ars_current_request_id = req->id;
    ars_current_route = "-";
    ars_metrics_request_start();

    const char *route_name = "-";
    enum ars_err err = ars_request_parse(req, envp);
    req->shape = req->path ? ars_router_shape_for_path(req->path) : ARS_SHAPE_ANTHROPIC;
    if (err) {
        /* 400 (bad Content-Length, control characters), 414 (path or
         * query), 431 (a header value or the number of headers). */
        int status = req->parse_status ? req->parse_status : err == ARS_ERR_NOMEM ? 503 : 400;
        ars_resp_error(req, status, NULL, req->parse_error ? req->parse_error : "the request could not be parsed");
        goto done;
    }
    if (cfg->enable_cors && strcmp(req->method, "OPTIONS") == 0) {
        handle_cors_preflight(req);
        goto done;
    }

    int index = -1;
    switch (ars_router_match(srv->routes, srv->nroutes, req, cfg->enable_test_routes, &index)) {
    case ARS_ROUTE_NOT_FOUND: {
        char *msg = ars_arena_printf(req->arena, "no route for %s %.200s", req->method, req->path);
        ars_resp_error(req, 404, NULL, msg ? msg : "not found");
        goto done;
    }
    case ARS_ROUTE_METHOD_NOT_ALLOWED: {
        char *msg = ars_arena_printf(req->arena, "method %s is not allowed on %.200s", req->method, req->path);
        ars_resp_error(req, 405, NULL, msg ? msg : "method not allowed");
        goto done;
    }
    case ARS_ROUTE_FOUND:
        break;
    }
    req->route = &srv->routes[index];
    req->route_index = index;
    req->shape = req->route->shape;
    route_name = req->route->pattern;
    ars_current_route = route_name;

    if ((req->route->flags & ARS_ROUTE_RELAY) && take_relay_slot(w, cfg) != 0) {
        refuse_overloaded(req);
        goto done;
    }
    if (wants_body(req->method) && !(req->route->flags & ARS_ROUTE_NO_BODY)) {
        err = ars_request_read_body(req);
        if (err == ARS_ERR_TOOBIG) {
            char *msg = ars_arena_printf(req->arena, "request body is larger than the relay's limit of %lld bytes "
                                         "(REQUEST_MAX_BYTES)", cfg->request_max_bytes);
            ars_resp_error(req, 413, NULL, msg ? msg : "request body too large");
            goto done;
        }
        if (err == ARS_ERR_NOMEM) {
            ars_resp_error(req, 503, NULL, "out of memory reading the request body");
            goto done;
        }
        if (err) {
            ars_resp_error(req, 400, NULL, "the request body ended early or could not be read");
            goto done;
        }
    }
    req->route->handler(req);
    if (!req->head_sent && !req->client_gone)
        ars_resp_error(req, 500, NULL, "the handler sent no response");

done:
    if (!req->head_sent && !req->client_gone) {
        send_static_error(io);   /* even the error could not be built (out of memory) */
        req->status = 503;
    }
    long long us = elapsed_us(&req->started);
    if (req->client_gone && !req->status)
        req->status = 499;
    access_log(req, route_name, us);
    ars_metrics_request_done(req->route_index, req->status, us);
    ars_current_request_id = NULL;
    ars_current_route = NULL;
    return req;
}

/* libfcgi streams behind struct ars_io. */
static ssize_t fcgx_read(void *ctx, char *buf, size_t n)
{
    FCGX_Request *r = ctx;
    int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
    int got = FCGX_GetStr(buf, chunk, r->in);
    if (got > 0)
        return got;
    return FCGX_GetError(r->in) ? -1 : 0;
}

static int fcgx_write(void *ctx, const char *buf, size_t n)
{
    FCGX_Request *r = ctx;
    while (n) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        if (FCGX_PutStr(buf, chunk, r->out) != chunk)
            return -1;
        buf += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

static int fcgx_flush(void *ctx)
{
    FCGX_Request *r = ctx;
    if (FCGX_FFlush(r->out) < 0 || FCGX_GetError(r->out))
        return -1;
    return 0;
}

void *ars_worker_main(void *arg)
{
    struct ars_worker *w = arg;
    if (FCGX_InitRequest(&w->fcgx, server->listen_fd, 0) != 0) {
        ars_log_msg(ARS_LOG_ERROR, NULL, "worker_init_failed", "FCGX_InitRequest failed");
        return NULL;
    }
    for (;;) {
        /* One thread in accept at a time, as libfcgi's threaded example:
         * safe because we never use FastCGI keep-conn. */
        pthread_mutex_lock(&accept_lock);
        int rc = FCGX_Accept_r(&w->fcgx);
        pthread_mutex_unlock(&accept_lock);
        if (rc < 0)
            break;
        ars_metrics_worker_busy(1);
        struct ars_io io = { fcgx_read, fcgx_write, fcgx_flush, &w->fcgx };
        struct ars_request *req = ars_worker_handle(w, server, w->fcgx.envp, io);
        FCGX_Finish_r(&w->fcgx);
        ars_worker_after_finish(req);
        ars_arena_reset(&w->arena);
        if (w->body.alloc > BODY_KEEP_BYTES)
            ars_buf_deinit(&w->body);
        w->served++;
        ars_metrics_worker_busy(-1);
    }
    FCGX_Free(&w->fcgx, 0);
    return NULL;
}
