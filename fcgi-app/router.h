/* Routing on (method, path). Patterns are literal segments and ":name"
 * segments that capture one path segment. A path that matches a pattern
 * under another method is 405, not 404. */
#ifndef ARS_ROUTER_H
#define ARS_ROUTER_H

#include <stddef.h>

#include "request.h"

typedef void (*ars_handler_fn)(struct ars_request *req);

enum ars_route_flags {
    ARS_ROUTE_TEST_ONLY = 1u << 0,   /* only with ENABLE_TEST_ROUTES=true */
    ARS_ROUTE_NO_BODY = 1u << 1,     /* the handler never needs the body */
    ARS_ROUTE_RELAY = 1u << 2        /* holds its worker for an upstream call: never on the reserve */
};

struct ars_route {
    const char *method;     /* "GET", "POST", ... ; GET routes also answer HEAD */
    const char *pattern;    /* "/api/v1/messages", "/admin/api/keys/:id" */
    ars_handler_fn handler;
    enum ars_error_shape shape;
    unsigned flags;
};

enum ars_route_result { ARS_ROUTE_FOUND, ARS_ROUTE_NOT_FOUND, ARS_ROUTE_METHOD_NOT_ALLOWED };

/* Matches method and path against the table; on FOUND, *index is the
 * route's position and req's route params are filled (arena memory).
 * Routes flagged TEST_ONLY take part only when test_routes is set. */
enum ars_route_result ars_router_match(const struct ars_route *table, size_t n,
                                       struct ars_request *req, int test_routes, int *index);

/* Error shape for a path no route matched: OpenAI under /openai/, else Anthropic. */
enum ars_error_shape ars_router_shape_for_path(const char *path);

#endif
