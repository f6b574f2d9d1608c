/* Routes for the test suite only (ENABLE_TEST_ROUTES=true): an SSE
 * generator to check that events reach the client one by one through the
 * web server, and a slow request to check draining on SIGTERM. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "handlers.h"
#include "response.h"

static long query_long(const struct ars_request *req, const char *name, long def, long lo, long hi)
{
    const char *v = ars_request_query(req, name);
    if (!v || !*v)
        return def;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < lo || x > hi)
        return def;
    return x;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

void ars_handle_test_sse(struct ars_request *req)
{
    long events = query_long(req, "events", 5, 1, 10000);
    long interval = query_long(req, "interval_ms", 200, 0, 60000);
    if (ars_sse_start(req, 200))
        return;
    for (long i = 1; i <= events; i++) {
        if (interval)
            sleep_ms(interval);
        char data[32];
        int n = snprintf(data, sizeof(data), "%ld", i);
        if (ars_sse_event(req, NULL, data, (size_t)n))
            return;   /* client gone */
    }
}

/* GET: sleeps ?ms= then answers; POST: echoes the body length. */
void ars_handle_test_sleep(struct ars_request *req)
{
    long ms = query_long(req, "ms", 0, 0, 600000);
    if (ms)
        sleep_ms(ms);
    char body[96];
    int n = snprintf(body, sizeof(body), "{\"slept_ms\":%ld,\"body_bytes\":%zu}", ms, req->body->len);
    ars_resp_send(req, 200, "application/json", body, (size_t)n);
}
