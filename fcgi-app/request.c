#include "request.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *param(char *const *envp, const char *name, size_t n)
{
    for (; *envp; envp++)
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
            return *envp + n + 1;
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

char *ars_url_decode(struct ars_arena *a, const char *s, size_t n, int form)
{
    char *out = ars_arena_alloc(a, n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else if (form && s[i] == '+') {
            out[o++] = ' ';
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* HTTP_ACCEPT_ENCODING -> accept-encoding */
static char *header_name(struct ars_arena *a, const char *p, size_t n)
{
    char *name = ars_arena_alloc(a, n + 1);
    if (!name)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        name[i] = c == '_' ? '-' : (c >= 'A' && c <= 'Z' ? (char)(c + 32) : c);
    }
    name[n] = '\0';
    return name;
}

static enum ars_err parse_headers(struct ars_request *req, char *const *envp)
{
    for (; *envp; envp++) {
        const char *e = *envp;
        if (strncmp(e, "HTTP_", 5) != 0)
            continue;
        const char *eq = strchr(e, '=');
        if (!eq)
            continue;
        if (req->nheaders == ARS_CAP_PARAMS)
            return ARS_ERR_TOOBIG;
        char *name = header_name(req->arena, e + 5, (size_t)(eq - e - 5));
        if (!name)
            return ARS_ERR_NOMEM;
        req->headers[req->nheaders].name = name;
        req->headers[req->nheaders].value = eq + 1;
        req->nheaders++;
    }
    /* The CGI spec moves these two out of HTTP_*; handlers look them up as headers. */
    if (req->content_type && req->nheaders < ARS_CAP_PARAMS) {
        req->headers[req->nheaders].name = "content-type";
        req->headers[req->nheaders].value = req->content_type;
        req->nheaders++;
    }
    return ARS_OK;
}

static enum ars_err parse_query(struct ars_request *req)
{
    const char *q = req->query;
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len) {
            if (req->nquery == ARS_CAP_QUERY_PARAMS)
                return ARS_OK;   /* extra pairs are ignored, never an error */
            const char *eq = memchr(q, '=', len);
            size_t klen = eq ? (size_t)(eq - q) : len;
            char *k = ars_url_decode(req->arena, q, klen, 1);
            char *v = eq ? ars_url_decode(req->arena, eq + 1, len - klen - 1, 1)
                         : ars_arena_strdup(req->arena, "");
            if (!k || !v)
                return ARS_ERR_NOMEM;
            req->query_params[req->nquery].name = k;
            req->query_params[req->nquery].value = v;
            req->nquery++;
        }
        q += len + (amp ? 1 : 0);
        if (!amp)
            break;
    }
    return ARS_OK;
}

enum ars_err ars_request_parse(struct ars_request *req, char *const *envp)
{
    req->method = param(envp, "REQUEST_METHOD", 14);
    const char *uri = param(envp, "REQUEST_URI", 11);
    if (!uri)
        uri = param(envp, "SCRIPT_NAME", 11);   /* servers that send no REQUEST_URI */
    if (!req->method || !uri || uri[0] != '/')
        return ARS_ERR_INVALID;
    req->remote_addr = param(envp, "REMOTE_ADDR", 11);
    req->content_type = param(envp, "CONTENT_TYPE", 12);
    if (req->content_type && !*req->content_type)
        req->content_type = NULL;

    const char *cl = param(envp, "CONTENT_LENGTH", 14);
    req->content_length = -1;
    if (cl && *cl) {
        char *end;
        errno = 0;
        long long n = strtoll(cl, &end, 10);
        if (errno || *end || n < 0)
            return ARS_ERR_INVALID;
        req->content_length = n;
    }

    const char *qm = strchr(uri, '?');
    size_t plen = qm ? (size_t)(qm - uri) : strlen(uri);
    if (plen > ARS_CAP_PATH_BYTES || (qm && strlen(qm + 1) > ARS_CAP_QUERY_BYTES))
        return ARS_ERR_TOOBIG;
    req->path = ars_arena_strndup(req->arena, uri, plen);
    req->query = qm ? qm + 1 : "";
    if (!req->path)
        return ARS_ERR_NOMEM;

    enum ars_err err = parse_headers(req, envp);
    if (!err)
        err = parse_query(req);
    return err;
}

enum ars_err ars_request_read_body(struct ars_request *req)
{
    struct ars_buf *b = req->body;
    ars_buf_reset(b);
    if (req->content_length > 0 && (unsigned long long)req->content_length > b->cap)
        return ARS_ERR_TOOBIG;
    if (req->content_length == 0)
        return ARS_OK;

    /* Known length: one reservation; unknown: read in 64 KiB steps to EOF. */
    size_t want = req->content_length > 0 ? (size_t)req->content_length : 0;
    for (;;) {
        size_t step = want ? want - b->len : 65536;
        if (want && step == 0)
            return ARS_OK;
        char *dst;
        enum ars_err err = ars_buf_reserve(b, step, &dst);
        if (err == ARS_ERR_TOOBIG && !want) {
            /* Unknown length at the cap: one more byte decides. */
            if (b->len == b->cap) {
                char probe;
                ssize_t r = req->io.read(req->io.ctx, &probe, 1);
                return r == 0 ? ARS_OK : r < 0 ? ARS_ERR_IO : ARS_ERR_TOOBIG;
            }
            step = b->cap - b->len;
            err = ars_buf_reserve(b, step, &dst);
        }
        if (err)
            return err;
        ssize_t r = req->io.read(req->io.ctx, dst, step);
        if (r < 0)
            return ARS_ERR_IO;
        if (r == 0)
            return want ? ARS_ERR_IO : ARS_OK;   /* short body when a length was promised */
        ars_buf_commit(b, (size_t)r);
    }
}

static const char *find_kv(const struct ars_kv *kv, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(kv[i].name, name) == 0)
            return kv[i].value;
    return NULL;
}

const char *ars_request_header(const struct ars_request *req, const char *name)
{
    return find_kv(req->headers, req->nheaders, name);
}

const char *ars_request_query(const struct ars_request *req, const char *name)
{
    return find_kv(req->query_params, req->nquery, name);
}

const char *ars_request_param(const struct ars_request *req, const char *name)
{
    return find_kv(req->route_params, req->nroute_params, name);
}
