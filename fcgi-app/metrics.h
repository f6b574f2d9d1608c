/* Process-wide counters for /metrics: atomics only, no locks on the
 * request path. Requests are counted per route (the route table index,
 * or "unmatched") and per status code from a fixed set. */
#ifndef ARS_METRICS_H
#define ARS_METRICS_H

#include <stddef.h>

#include "buf.h"
#include "err.h"

#define ARS_METRICS_MAX_ROUTES 96

struct ars_route;

void ars_metrics_init(const struct ars_route *routes, size_t nroutes, int worker_threads);
void ars_metrics_request_start(void);
/* route_index -1 = unmatched. */
void ars_metrics_request_done(int route_index, int status, long long duration_us);
void ars_metrics_worker_busy(int delta);
/* A 2xx upstream answer whose usage could not be read (billed 0, logged
 * as usage_unreadable): ars_usage_unreadable_total. */
void ars_metrics_usage_unreadable(void);

/* Prometheus text exposition. */
ARS_MUST_USE enum ars_err ars_metrics_render(struct ars_buf *out);

#endif
