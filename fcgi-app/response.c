#include "response.h"

#include <json.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"

const char *ars_status_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 529: return "Overloaded";
    default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

static enum ars_err raw_write(struct ars_request *req, const char *data, size_t n)
{
    if (req->client_gone)
        return ARS_ERR_CLIENT_GONE;
    if (n && req->io.write(req->io.ctx, data, n) < 0) {
        req->client_gone = 1;
        return ARS_ERR_CLIENT_GONE;
    }
    return ARS_OK;
}

/* Body bytes: counted for the access log and metrics. */
static enum ars_err out_write(struct ars_request *req, const char *data, size_t n)
{
    enum ars_err err = raw_write(req, data, n);
    if (!err)
        req->bytes_out += n;
    return err;
}

enum ars_err ars_resp_flush(struct ars_request *req)
{
    if (req->client_gone)
        return ARS_ERR_CLIENT_GONE;
    if (req->io.flush(req->io.ctx) < 0) {
        req->client_gone = 1;
        return ARS_ERR_CLIENT_GONE;
    }
    return ARS_OK;
}

enum ars_err ars_resp_header(struct ars_request *req, const char *name, const char *value)
{
    if (req->head_sent)
        return ARS_ERR_INVALID;
    /* A NULL is an arena allocation that failed in the caller
     * (ars_arena_printf/strdup): refuse it here, before strpbrk. */
    if (!name || !value)
        return ARS_ERR_NOMEM;
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return ARS_ERR_INVALID;
    if (req->nresp_headers == sizeof(req->resp_headers) / sizeof(req->resp_headers[0]))
        return ARS_ERR_TOOBIG;
    req->resp_headers[req->nresp_headers].name = name;
    req->resp_headers[req->nresp_headers].value = value;
    req->nresp_headers++;
    return ARS_OK;
}

void ars_resp_header_optional(struct ars_request *req, const char *name, const char *value)
{
    enum ars_err err = ars_resp_header(req, name, value);
    if (err) {
        struct ars_logline l;
        ars_log_begin(&l, ARS_LOG_WARN, req->id, "response_header_dropped");
        ars_log_str(&l, "header", name ? name : "-");
        ars_log_str(&l, "error", ars_err_str(err));
        ars_log_end(&l);
    }
}

enum ars_err ars_resp_head(struct ars_request *req, int status, const char *content_type)
{
    if (req->head_sent)
        return ARS_ERR_INVALID;
    struct ars_buf h;
    ars_buf_init(&h, 16384);
    enum ars_err err = ars_buf_printf(&h, "Status: %d %s\r\n", status, ars_status_reason(status));
    if (!err && content_type)
        err = ars_buf_printf(&h, "Content-Type: %s\r\n", content_type);
    if (!err)
        err = ars_buf_printf(&h, "X-Request-Id: %s\r\n", req->id);
    if (!err && req->cfg && req->cfg->enable_cors)
        err = ars_buf_adds(&h, "Access-Control-Allow-Origin: *\r\n");
    for (size_t i = 0; !err && i < req->nresp_headers; i++)
        err = ars_buf_printf(&h, "%s: %s\r\n", req->resp_headers[i].name, req->resp_headers[i].value);
    if (!err)
        err = ars_buf_add(&h, "\r\n", 2);
    if (err) {
        ars_buf_deinit(&h);
        return err;
    }
    req->status = status;
    req->head_sent = 1;
    err = raw_write(req, h.data, h.len);
    ars_buf_deinit(&h);
    return err;
}

enum ars_err ars_resp_write(struct ars_request *req, const char *data, size_t n)
{
    return out_write(req, data, n);
}

void ars_resp_send(struct ars_request *req, int status, const char *content_type, const char *body, size_t n)
{
    char len[32];
    snprintf(len, sizeof(len), "%zu", n);
    /* A failure leaves its trace in req (head_sent, client_gone): see response.h. */
    if (ars_resp_header(req, "Content-Length", ars_arena_strdup(req->arena, len)) == ARS_OK &&
        ars_resp_head(req, status, content_type) == ARS_OK)
        ars_ignore(out_write(req, body, n));   /* a failed write marked the client gone */
}

void ars_resp_json(struct ars_request *req, int status, struct json_object *obj)
{
    size_t n;
    const char *s = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN, &n);
    if (s)
        ars_resp_send(req, status, "application/json", s, n);
}

static const char *anthropic_type(int status)
{
    switch (status) {
    case 400: case 405: case 411: case 415: case 422: return "invalid_request_error";
    case 401: return "authentication_error";
    case 402: return "billing_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 504: return "timeout_error";
    case 529: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static const char *openai_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 402: return "insufficient_quota";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static const char *openai_code(int status)
{
    switch (status) {
    case 401: return "invalid_api_key";
    case 402: return "insufficient_quota";
    case 403: return "permission_denied";
    case 404: return "not_found";
    case 413: return "request_too_large";
    case 429: return "rate_limit_exceeded";
    default: return status >= 500 ? "server_error" : "invalid_request";
    }
}

enum ars_err ars_error_body(struct ars_buf *out, enum ars_error_shape shape, int status,
                            const char *type, const char *message)
{
    if (!message)   /* a message built in the arena whose allocation failed */
        message = ars_status_reason(status);
    size_t mlen = strlen(message);
    enum ars_err err;
    switch (shape) {
    case ARS_SHAPE_OPENAI:
        err = ars_buf_adds(out, "{\"error\":{\"message\":");
        if (!err) err = ars_buf_add_json_str(out, message, mlen);
        if (!err) err = ars_buf_adds(out, ",\"type\":");
        if (!err) { const char *t = type ? type : openai_type(status); err = ars_buf_add_json_str(out, t, strlen(t)); }
        if (!err) err = ars_buf_adds(out, ",\"param\":null,\"code\":");
        if (!err) { const char *c = openai_code(status); err = ars_buf_add_json_str(out, c, strlen(c)); }
        if (!err) err = ars_buf_adds(out, "}}");
        return err;
    case ARS_SHAPE_ANTHROPIC:
        err = ars_buf_adds(out, "{\"type\":\"error\",\"error\":{\"type\":");
        break;
    case ARS_SHAPE_PLAIN:
    default:
        err = ars_buf_adds(out, "{\"error\":{\"type\":");
        break;
    }
    if (!err) { const char *t = type ? type : anthropic_type(status); err = ars_buf_add_json_str(out, t, strlen(t)); }
    if (!err) err = ars_buf_adds(out, ",\"message\":");
    if (!err) err = ars_buf_add_json_str(out, message, mlen);
    if (!err) err = ars_buf_adds(out, "}}");
    return err;
}

void ars_resp_error(struct ars_request *req, int status, const char *type, const char *message)
{
    struct ars_buf body;
    ars_buf_init(&body, 65536);
    if (ars_error_body(&body, req->shape, status, type, message) == ARS_OK)
        ars_resp_send(req, status, "application/json", body.data, body.len);
    ars_buf_deinit(&body);
}

enum ars_err ars_sse_start(struct ars_request *req, int status)
{
    enum ars_err err = ars_resp_header(req, "Cache-Control", "no-cache");
    if (!err)
        err = ars_resp_header(req, "X-Accel-Buffering", "no");
    if (!err)
        err = ars_resp_head(req, status, "text/event-stream");
    if (!err)
        err = ars_resp_flush(req);
    return err;
}

enum ars_err ars_sse_raw(struct ars_request *req, const char *data, size_t n)
{
    enum ars_err err = out_write(req, data, n);
    if (!err)
        err = ars_resp_flush(req);
    return err;
}

enum ars_err ars_sse_event(struct ars_request *req, const char *name, const char *data, size_t n)
{
    struct ars_buf ev;
    ars_buf_init(&ev, n + 4096 + n / 8);
    enum ars_err err = ARS_OK;
    if (name)
        err = ars_buf_printf(&ev, "event: %s\n", name);
    /* Each line of data gets its own "data:" field, as SSE requires. */
    size_t start = 0;
    for (size_t i = 0; !err && i <= n; i++) {
        if (i == n || data[i] == '\n') {
            err = ars_buf_add(&ev, "data: ", 6);
            if (!err) err = ars_buf_add(&ev, data + start, i - start);
            if (!err) err = ars_buf_add(&ev, "\n", 1);
            start = i + 1;
        }
    }
    if (!err)
        err = ars_buf_add(&ev, "\n", 1);
    if (!err)
        err = ars_sse_raw(req, ev.data, ev.len);
    ars_buf_deinit(&ev);
    return err;
}
