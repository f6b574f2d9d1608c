#include "router.h"

#include <string.h>

/* Compares one pattern to the path segment by segment; captures go to
 * req->route_params only when capture is set. */
static int match_pattern(const char *pattern, const char *path, struct ars_request *req, int capture)
{
    size_t nparams = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p != '/' || *s != '/')
            return 0;
        p++;
        s++;
        const char *pend = strchr(p, '/');
        const char *send = strchr(s, '/');
        size_t plen = pend ? (size_t)(pend - p) : strlen(p);
        size_t slen = send ? (size_t)(send - s) : strlen(s);
        if (plen && p[0] == ':') {
            if (slen == 0 || nparams == ARS_CAP_ROUTE_PARAMS)
                return 0;
            if (capture) {
                char *name = ars_arena_strndup(req->arena, p + 1, plen - 1);
                char *value = ars_url_decode(req->arena, s, slen, 0);
                if (!name || !value)
                    return 0;
                req->route_params[nparams].name = name;
                req->route_params[nparams].value = value;
            }
            nparams++;
        } else if (plen != slen || memcmp(p, s, plen) != 0) {
            return 0;
        }
        p += plen;
        s += slen;
    }
    if (*p || *s)
        return 0;
    if (capture)
        req->nroute_params = nparams;
    return 1;
}

static int method_matches(const char *route_method, const char *method)
{
    return strcmp(route_method, method) == 0 ||
           (strcmp(route_method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

enum ars_route_result ars_router_match(const struct ars_route *table, size_t n,
                                       struct ars_request *req, int test_routes, int *index)
{
    int path_seen = 0;
    for (size_t i = 0; i < n; i++) {
        const struct ars_route *r = &table[i];
        if ((r->flags & ARS_ROUTE_TEST_ONLY) && !test_routes)
            continue;
        if (!match_pattern(r->pattern, req->path, req, 0))
            continue;
        if (!method_matches(r->method, req->method)) {
            path_seen = 1;
            continue;
        }
        if (!match_pattern(r->pattern, req->path, req, 1))
            return ARS_ROUTE_NOT_FOUND;   /* only on allocation failure */
        *index = (int)i;
        return ARS_ROUTE_FOUND;
    }
    return path_seen ? ARS_ROUTE_METHOD_NOT_ALLOWED : ARS_ROUTE_NOT_FOUND;
}

enum ars_error_shape ars_router_shape_for_path(const char *path)
{
    if (strncmp(path, "/openai/", 8) == 0)
        return ARS_SHAPE_OPENAI;
    if (strncmp(path, "/admin/", 7) == 0 || strncmp(path, "/stats/", 7) == 0 ||
        strcmp(path, "/health") == 0 || strcmp(path, "/metrics") == 0)
        return ARS_SHAPE_PLAIN;
    return ARS_SHAPE_ANTHROPIC;
}
