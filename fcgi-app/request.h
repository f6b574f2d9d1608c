/* A request as the handlers see it: FastCGI params parsed into the arena,
 * headers with lower-case dashed names, the query split and decoded, the
 * body read with a hard cap. I/O goes through struct ars_io so the same
 * code runs over libfcgi streams and over memory in the unit tests. */
#ifndef ARS_REQUEST_H
#define ARS_REQUEST_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "arena.h"
#include "buf.h"
#include "caps.h"
#include "err.h"

struct ars_io {
    /* Up to n body bytes: count, 0 at end of body, -1 on error. */
    ssize_t (*read)(void *ctx, char *buf, size_t n);
    /* All n bytes: 0, or -1 when the client is gone. */
    int (*write)(void *ctx, const char *buf, size_t n);
    /* Pushes buffered output to the web server: 0, or -1 when the client is gone. */
    int (*flush)(void *ctx);
    void *ctx;
};

struct ars_kv {
    const char *name;
    const char *value;
};

enum ars_error_shape { ARS_SHAPE_ANTHROPIC, ARS_SHAPE_OPENAI, ARS_SHAPE_PLAIN };

struct ars_route;
struct ars_worker;
struct ars_config;

struct ars_request {
    struct ars_arena *arena;
    struct ars_io io;
    const struct ars_config *cfg;
    struct ars_worker *worker;
    char id[24];

    const char *method;
    const char *path;          /* raw path, no query */
    const char *query;         /* raw query without '?', "" when none */
    const char *remote_addr;
    const char *content_type;
    long long content_length;  /* -1 when the web server sent none */

    struct ars_kv headers[ARS_CAP_PARAMS];
    size_t nheaders;
    struct ars_kv query_params[ARS_CAP_QUERY_PARAMS];
    size_t nquery;

    const struct ars_route *route;
    int route_index;           /* -1 when no route matched */
    struct ars_kv route_params[ARS_CAP_ROUTE_PARAMS];
    size_t nroute_params;
    enum ars_error_shape shape;

    struct ars_buf *body;      /* owned by the worker; valid during the request */

    /* Set by ars_request_parse when it refuses the request: the status to
     * answer (400, 414, 431) and a sentence for the client. */
    int parse_status;
    const char *parse_error;

    /* response state */
    int status;
    int head_sent;
    int client_gone;
    unsigned long long bytes_out;
    struct ars_kv resp_headers[32];
    size_t nresp_headers;
    struct timespec started;

    /* Work to do after the response is finished (FCGX_Finish_r), off the
     * client's latency path: usage accounting, lease releases. By then the
     * FastCGI params are freed: method, headers and query must not be
     * used; copy what is needed before (arena memory stays). */
    void (*after_finish)(struct ars_request *req, void *arg);
    void *after_arg;
};

/* Fills req from FastCGI params (NULL-terminated "NAME=value" array).
 * ARS_ERR_INVALID when a required param is missing, CONTENT_LENGTH is not
 * one plain decimal length, or a header value holds a control character
 * (CR, LF, NUL: it would inject headers upstream); ARS_ERR_TOOBIG when the
 * path or query (414), a header value or the number of headers (431) is
 * over its cap. On failure req->parse_status / parse_error say what to
 * answer. */
ARS_MUST_USE enum ars_err ars_request_parse(struct ars_request *req, char *const *envp);

/* Reads the body into req->body (cap = the buffer's cap). Checks
 * CONTENT_LENGTH against the cap before reading anything; reads to end of
 * stream when CONTENT_LENGTH is absent. ARS_ERR_TOOBIG over the cap,
 * ARS_ERR_IO when the body ends early or the read fails. */
ARS_MUST_USE enum ars_err ars_request_read_body(struct ars_request *req);

/* Header by lower-case name, or NULL. */
const char *ars_request_header(const struct ars_request *req, const char *name);
/* Decoded query parameter, or NULL. */
const char *ars_request_query(const struct ars_request *req, const char *name);
/* Route parameter (":name" in the pattern), or NULL. */
const char *ars_request_param(const struct ars_request *req, const char *name);

/* Percent-decodes n bytes of s into arena memory ('+' to space when
 * form is set). NULL on allocation failure. */
char *ars_url_decode(struct ars_arena *a, const char *s, size_t n, int form);

#endif
