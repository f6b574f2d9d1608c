/* A worker thread and everything it owns: its FastCGI request, request
 * arena, body buffer, and store connections. Nothing here is shared
 * between threads. */
#ifndef ARS_WORKER_H
#define ARS_WORKER_H

#include <fcgiapp.h>
#include <pthread.h>
#include <stdint.h>

#include "arena.h"
#include "buf.h"
#include "request.h"
#include "router.h"

struct ars_redis;
struct ars_upstream;

struct ars_worker {
    int index;
    pthread_t thread;
    FCGX_Request fcgx;
    struct ars_arena arena;
    struct ars_buf body;
    struct ars_redis *redis;
    struct ars_upstream *upstream;   /* reused curl handle: connections, DNS, TLS sessions */
    uint64_t rng;              /* request ids */
    unsigned long long served;
    int relay_slot;            /* the current request counts toward the relay's share */
};

struct ars_server {
    int listen_fd;
    const struct ars_route *routes;
    size_t nroutes;
};

/* Handles one request over the given params and I/O: parse, route, read
 * the body with its cap, run the handler, log the access line, count
 * metrics. Used by the FastCGI loop and by the tests. */
struct ars_request *ars_worker_handle(struct ars_worker *w, const struct ars_server *srv,
                                     char *const *envp, struct ars_io io);
/* Runs the request's after-finish work, if any, then gives back the
 * request's relay slot (the worker is free for relay work again). */
void ars_worker_after_finish(struct ars_request *req);

int ars_worker_init(struct ars_worker *w, int index);
void ars_worker_deinit(struct ars_worker *w);

/* Thread body: accept and handle until the listen socket is shut down. */
void *ars_worker_main(void *arg);

/* Set before threads start: the server every worker serves. */
void ars_worker_set_server(const struct ars_server *srv);
/* Worker threads running, for the reserve (WORKER_RESERVE); 0, the
 * default: no reserve (the unit tests call ars_worker_handle directly). */
void ars_worker_set_threads(int n);

/* The request a thread is handling, for the crash reporter. */
extern __thread const char *ars_current_request_id;
extern __thread const char *ars_current_route;

#endif
