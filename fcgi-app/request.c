#include "request.h"

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

static enum ars_err refuse(struct ars_request *req, enum ars_err err, int status, const char *msg)
{
    req->parse_status = status;
    req->parse_error = msg;
    return err;
}

/* RFC 9110 field values: visible bytes, SP and HTAB. CR and LF would end
 * the line and start a header of the client's choosing when the value is
 * copied into the upstream request; a NUL cannot reach us (libfcgi keeps
 * params as C strings, so it cuts the value there). */
static int bad_value_byte(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* A param name after HTTP_ as web servers make them: letters, digits, _ and -. */
static int bad_name_byte(unsigned char c)
{
    return !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-');
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
            return refuse(req, ARS_ERR_TOOBIG, 431, "too many request headers for the relay's limit");
        for (const char *c = e + 5; c < eq; c++)
            if (bad_name_byte((unsigned char)*c))
                return refuse(req, ARS_ERR_INVALID, 400, "a request header name holds a character "
                              "outside letters, digits, '-' and '_'");
        size_t vlen = strlen(eq + 1);
        char *name = header_name(req->arena, e + 5, (size_t)(eq - e - 5));
        if (!name)
            return ARS_ERR_NOMEM;
        if (vlen > ARS_CAP_HEADER_VALUE_BYTES) {
            char *msg = ars_arena_printf(req->arena, "request header %.100s is longer than the relay's limit "
                                         "of %d bytes", name, ARS_CAP_HEADER_VALUE_BYTES);
            return refuse(req, ARS_ERR_TOOBIG, 431, msg ? msg : "a request header is too long");
        }
        for (size_t i = 0; i < vlen; i++)
            if (bad_value_byte((unsigned char)eq[1 + i])) {
                char *msg = ars_arena_printf(req->arena, "request header %.100s holds a control character "
                                             "(CR, LF or NUL are never forwarded)", name);
                return refuse(req, ARS_ERR_INVALID, 400, msg ? msg : "a request header holds a control character");
            }
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

/* One plain decimal: digits only (no sign, space or '+'), at most 18 of
 * them so it fits a long long without overflow checks. -1 otherwise. */
static long long parse_length(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18)
        return -1;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* CONTENT_LENGTH, and any HTTP_CONTENT_LENGTH a server passed on, must
 * all be the same plain number: a relay that read one length while the
 * web server framed the body with another would mis-read the body. */
static enum ars_err parse_content_length(struct ars_request *req, char *const *envp)
{
    req->content_length = -1;
    for (; *envp; envp++) {
        const char *v;
        if (strncmp(*envp, "CONTENT_LENGTH=", 15) == 0)
            v = *envp + 15;
        else if (strncmp(*envp, "HTTP_CONTENT_LENGTH=", 20) == 0)
            v = *envp + 20;
        else
            continue;
        if (!*v && (*envp)[0] == 'C')
            continue;   /* CGI: an empty CONTENT_LENGTH means no body length */
        long long n = parse_length(v);
        if (n < 0)
            return refuse(req, ARS_ERR_INVALID, 400, "bad Content-Length: it must be one non-negative decimal "
                          "number of at most 18 digits");
        if (req->content_length >= 0 && req->content_length != n)
            return refuse(req, ARS_ERR_INVALID, 400, "bad Content-Length: the request carries conflicting lengths");
        req->content_length = n;
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
        return refuse(req, ARS_ERR_INVALID, 400, "malformed request: the web server sent no method or path");
    req->remote_addr = param(envp, "REMOTE_ADDR", 11);
    req->content_type = param(envp, "CONTENT_TYPE", 12);
    if (req->content_type && !*req->content_type)
        req->content_type = NULL;

    /* The path first: every later refusal is answered in its route's shape. */
    const char *qm = strchr(uri, '?');
    size_t plen = qm ? (size_t)(qm - uri) : strlen(uri);
    if (plen > ARS_CAP_PATH_BYTES || (qm && strlen(qm + 1) > ARS_CAP_QUERY_BYTES))
        return refuse(req, ARS_ERR_TOOBIG, 414, "request path or query exceeds the relay's limits");
    req->path = ars_arena_strndup(req->arena, uri, plen);
    req->query = qm ? qm + 1 : "";
    if (!req->path)
        return ARS_ERR_NOMEM;

    enum ars_err err = parse_content_length(req, envp);
    if (!err)
        err = parse_headers(req, envp);
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
        if ((err = ars_buf_commit(b, (size_t)r)) != ARS_OK)
            return err;
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
