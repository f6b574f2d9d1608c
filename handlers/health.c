/* /health: is this relay able to serve? Redis is required (503 when it is
 * down); PostgreSQL is optional (degraded when down, disabled when not
 * configured). Each probe has its own short deadline so the endpoint
 * never hangs on a dead store. /metrics: Prometheus text. */
#include <json.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "build-config.h"
#include "config.h"
#include "handlers.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "redis.h"
#include "response.h"
#include "worker.h"

static time_t process_start;

__attribute__((constructor)) static void note_start(void)
{
    process_start = time(NULL);
}

/* Public: status and latency only. Error texts name hosts and ports
 * (hiredis, libpq); they go to the log with the request id. */
static json_object *component(const char *status, double latency_ms)
{
    json_object *c = json_object_new_object();
    json_object_object_add(c, "status", json_object_new_string(status));
    if (latency_ms >= 0) {
        /* Three decimals: json-c would print the double's full expansion. */
        char text[32];
        snprintf(text, sizeof(text), "%.3f", latency_ms);
        json_object_object_add(c, "latency_ms", json_object_new_double_s(latency_ms, text));
    }
    return c;
}

void ars_handle_health(struct ars_request *req)
{
    const struct ars_config *cfg = req->cfg;
    double redis_ms = -1, pg_ms = -1;
    char pg_err[256] = "";

    enum ars_err redis_err = ars_redis_ping(req->worker->redis, cfg, (long)cfg->health_timeout_ms, &redis_ms);
    const char *pg_status = "disabled";
    if (ars_pg_enabled(cfg)) {
        enum ars_err e = ars_pg_ping(cfg, (long)cfg->health_timeout_ms, &pg_ms, pg_err, sizeof(pg_err));
        pg_status = e ? "down" : "up";
    }

    if (redis_err || pg_err[0]) {
        struct ars_logline l;
        ars_log_begin(&l, ARS_LOG_WARN, req->id, "health_probe_failed");
        if (redis_err)
            ars_log_str(&l, "redis_error", ars_redis_error(req->worker->redis));
        if (pg_err[0])
            ars_log_str(&l, "postgres_error", pg_err);
        ars_log_end(&l);
    }
    const char *status = redis_err ? "unhealthy" : strcmp(pg_status, "down") == 0 ? "degraded" : "healthy";
    json_object *root = json_object_new_object();
    json_object *components = json_object_new_object();
    json_object_object_add(root, "status", json_object_new_string(status));
    json_object_object_add(root, "version", json_object_new_string(PACKAGE_VERSION));
    json_object_object_add(root, "uptime_s", json_object_new_int64((int64_t)(time(NULL) - process_start)));
    json_object_object_add(components, "redis",
        component(redis_err ? "down" : "up", redis_err ? -1 : redis_ms));
    json_object_object_add(components, "postgres",
        component(pg_status, pg_ms >= 0 && pg_err[0] == '\0' ? pg_ms : -1));
    json_object_object_add(root, "components", components);
    ars_resp_header_optional(req, "Cache-Control", "no-store");
    ars_resp_json(req, redis_err ? 503 : 200, root);
    json_object_put(root);
}

void ars_handle_metrics(struct ars_request *req)
{
    struct ars_buf out;
    ars_buf_init(&out, 1024 * 1024);
    if (ars_metrics_render(&out) == ARS_OK)
        ars_resp_send(req, 200, "text/plain; version=0.0.4", out.data, out.len);
    else
        ars_resp_error(req, 500, NULL, "metrics could not be rendered");
    ars_buf_deinit(&out);
}
