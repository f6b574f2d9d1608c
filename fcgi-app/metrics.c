#include "metrics.h"

#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "router.h"

static const int tracked_status[] = {
    200, 201, 204, 400, 401, 402, 403, 404, 405, 408, 413, 414, 429, 431, 500, 502, 503, 504, 529
};
#define NSTATUS (sizeof(tracked_status) / sizeof(tracked_status[0]))
#define OTHER_STATUS NSTATUS

/* Upper bounds of the latency histogram, in microseconds. */
static const long long bucket_us[] = {
    1000, 5000, 25000, 100000, 500000, 1000000, 5000000, 30000000, 120000000
};
#define NBUCKETS (sizeof(bucket_us) / sizeof(bucket_us[0]))

static const struct ars_route *route_table;
static size_t route_count;
static int workers_total;
static time_t started_at;

static atomic_ullong requests[ARS_METRICS_MAX_ROUTES + 1][NSTATUS + 1];
static atomic_ullong duration_bucket[NBUCKETS + 1];
static atomic_ullong duration_sum_us;
static atomic_ullong duration_count;
static atomic_llong in_flight;
static atomic_int workers_busy;
static atomic_ullong usage_unreadable;

void ars_metrics_init(const struct ars_route *routes, size_t nroutes, int worker_threads)
{
    route_table = routes;
    route_count = nroutes < ARS_METRICS_MAX_ROUTES ? nroutes : ARS_METRICS_MAX_ROUTES;
    workers_total = worker_threads;
    started_at = time(NULL);
}

void ars_metrics_request_start(void)
{
    atomic_fetch_add(&in_flight, 1);
}

void ars_metrics_request_done(int route_index, int status, long long duration_us)
{
    size_t r = route_index >= 0 && (size_t)route_index < route_count ? (size_t)route_index : ARS_METRICS_MAX_ROUTES;
    size_t s = OTHER_STATUS;
    for (size_t i = 0; i < NSTATUS; i++)
        if (tracked_status[i] == status) {
            s = i;
            break;
        }
    atomic_fetch_add(&requests[r][s], 1);
    atomic_fetch_sub(&in_flight, 1);
    size_t b = 0;
    while (b < NBUCKETS && duration_us > bucket_us[b])
        b++;
    atomic_fetch_add(&duration_bucket[b], 1);
    atomic_fetch_add(&duration_sum_us, (unsigned long long)(duration_us > 0 ? duration_us : 0));
    atomic_fetch_add(&duration_count, 1);
}

void ars_metrics_worker_busy(int delta)
{
    atomic_fetch_add(&workers_busy, delta);
}

void ars_metrics_usage_unreadable(void)
{
    atomic_fetch_add(&usage_unreadable, 1);
}

static enum ars_err render_requests(struct ars_buf *out)
{
    enum ars_err err = ars_buf_adds(out,
        "# HELP ars_requests_total Requests finished, by route and status.\n"
        "# TYPE ars_requests_total counter\n");
    for (size_t r = 0; !err && r <= ARS_METRICS_MAX_ROUTES; r++) {
        if (r >= route_count && r != ARS_METRICS_MAX_ROUTES)
            continue;
        const char *route = r == ARS_METRICS_MAX_ROUTES ? "unmatched" : route_table[r].pattern;
        const char *method = r == ARS_METRICS_MAX_ROUTES ? "" : route_table[r].method;
        for (size_t s = 0; !err && s <= NSTATUS; s++) {
            unsigned long long v = atomic_load(&requests[r][s]);
            if (!v)
                continue;
            if (s == OTHER_STATUS)
                err = ars_buf_printf(out, "ars_requests_total{method=\"%s\",route=\"%s\",status=\"other\"} %llu\n",
                                     method, route, v);
            else
                err = ars_buf_printf(out, "ars_requests_total{method=\"%s\",route=\"%s\",status=\"%d\"} %llu\n",
                                     method, route, tracked_status[s], v);
        }
    }
    return err;
}

static enum ars_err render_duration(struct ars_buf *out)
{
    enum ars_err err = ars_buf_adds(out,
        "# HELP ars_request_duration_seconds Time from accept to the end of the response.\n"
        "# TYPE ars_request_duration_seconds histogram\n");
    unsigned long long cumulative = 0;
    for (size_t b = 0; !err && b < NBUCKETS; b++) {
        cumulative += atomic_load(&duration_bucket[b]);
        err = ars_buf_printf(out, "ars_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                             (double)bucket_us[b] / 1e6, cumulative);
    }
    cumulative += atomic_load(&duration_bucket[NBUCKETS]);
    if (!err)
        err = ars_buf_printf(out, "ars_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                                  "ars_request_duration_seconds_sum %.6f\n"
                                  "ars_request_duration_seconds_count %llu\n",
                             cumulative, (double)atomic_load(&duration_sum_us) / 1e6,
                             atomic_load(&duration_count));
    return err;
}

enum ars_err ars_metrics_render(struct ars_buf *out)
{
    enum ars_err err = render_requests(out);
    if (!err)
        err = render_duration(out);
    if (!err)
        err = ars_buf_printf(out,
            "# HELP ars_requests_in_flight Requests being handled now.\n"
            "# TYPE ars_requests_in_flight gauge\n"
            "ars_requests_in_flight %lld\n"
            "# HELP ars_worker_threads_busy Worker threads handling a request.\n"
            "# TYPE ars_worker_threads_busy gauge\n"
            "ars_worker_threads_busy %d\n"
            "# HELP ars_worker_threads_total Worker threads in this process.\n"
            "# TYPE ars_worker_threads_total gauge\n"
            "ars_worker_threads_total %d\n"
            "# HELP ars_process_start_time_seconds Start of this process, Unix time.\n"
            "# TYPE ars_process_start_time_seconds gauge\n"
            "ars_process_start_time_seconds %lld\n"
            "# HELP ars_usage_unreadable_total Successful upstream answers whose usage could not be read.\n"
            "# TYPE ars_usage_unreadable_total counter\n"
            "ars_usage_unreadable_total %llu\n",
            (long long)atomic_load(&in_flight), atomic_load(&workers_busy), workers_total,
            (long long)started_at, atomic_load(&usage_unreadable));
    return err;
}
