/* libFuzzer target for the FastCGI params -> request parsing and the body
 * reader (fcgi-app/request.c: ars_request_parse, ars_request_read_body).
 * Build and run: check/fuzz/README.md, scripts/fuzz.
 *
 * Input: byte 0 picks the body buffer's cap (bits 0-1: 0, 16, 4096 or
 * 1 MiB), the read piece size (bits 2-5: 0 = all at once, else 1..15
 * bytes) and whether reading fails at the end of the body (bit 6). Then
 * the params, one "NAME=value" per line, up to the first NUL byte; the
 * bytes after it are the request body. Checked against request.h:
 * - a parsed request has a method, a path that starts with '/' and holds
 *   no '?', a path and query within their caps, at most ARS_CAP_PARAMS
 *   headers with lower-case dashed names that ars_request_header finds,
 *   at most ARS_CAP_QUERY_PARAMS decoded query pairs;
 * - parsing the same params again in a reset arena gives the same result;
 * - the body reader never reads when CONTENT_LENGTH is over the cap,
 *   never holds more than the cap, and on success holds exactly
 *   CONTENT_LENGTH bytes (or all of them when it is absent), equal to the
 *   bytes sent.
 * A broken invariant aborts with __builtin_trap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* More lines than ARS_CAP_PARAMS, so the cap itself is exercised. */
#define MAX_PARAMS 400

struct memin {
    const char *p;
    size_t n, pos, piece;
    int fail_at_end;
    size_t reads;
};

static ssize_t mem_read(void *ctx, char *buf, size_t n)
{
    struct memin *m = ctx;
    m->reads++;
    size_t left = m->n - m->pos;
    if (!left)
        return m->fail_at_end ? -1 : 0;
    if (m->piece && n > m->piece)
        n = m->piece;
    if (n > left)
        n = left;
    memcpy(buf, m->p + m->pos, n);
    m->pos += n;
    return (ssize_t)n;
}

static int mem_write(void *ctx, const char *buf, size_t n)
{
    (void)ctx;
    (void)buf;
    (void)n;
    return 0;
}

static int mem_flush(void *ctx)
{
    (void)ctx;
    return 0;
}

/* The fields a second parse must reproduce. */
static void check_same(const struct ars_request *a, const struct ars_request *b)
{
    CHECK(strcmp(a->method, b->method) == 0 && strcmp(a->path, b->path) == 0);
    CHECK(strcmp(a->query, b->query) == 0);
    CHECK(a->content_length == b->content_length);
    CHECK(a->nheaders == b->nheaders && a->nquery == b->nquery);
    for (size_t i = 0; i < a->nheaders; i++)
        CHECK(strcmp(a->headers[i].name, b->headers[i].name) == 0
              && strcmp(a->headers[i].value, b->headers[i].value) == 0);
    for (size_t i = 0; i < a->nquery; i++)
        CHECK(strcmp(a->query_params[i].name, b->query_params[i].name) == 0
              && strcmp(a->query_params[i].value, b->query_params[i].value) == 0);
}

static void check_parsed(const struct ars_request *r)
{
    CHECK(r->method && r->path && r->query);
    CHECK(r->path[0] == '/' && !strchr(r->path, '?'));
    CHECK(strlen(r->path) <= ARS_CAP_PATH_BYTES && strlen(r->query) <= ARS_CAP_QUERY_BYTES);
    CHECK(r->content_length >= -1);
    CHECK(r->nheaders <= ARS_CAP_PARAMS && r->nquery <= ARS_CAP_QUERY_PARAMS);
    for (size_t i = 0; i < r->nheaders; i++) {
        const char *name = r->headers[i].name;
        CHECK(name && r->headers[i].value);
        for (const char *c = name; *c; c++)
            CHECK(!(*c >= 'A' && *c <= 'Z') && *c != '_');
        CHECK(ars_request_header(r, name) != NULL);
    }
    for (size_t i = 0; i < r->nquery; i++) {
        CHECK(r->query_params[i].name && r->query_params[i].value);
        CHECK(ars_request_query(r, r->query_params[i].name) != NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const size_t caps[4] = { 0, 16, 4096, 1 << 20 };
    size_t cap = caps[data[0] & 3];
    size_t piece = (data[0] >> 2) & 15;
    int fail_at_end = (data[0] >> 6) & 1;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    const char *nul = memchr(in, '\0', n);
    size_t plen = nul ? (size_t)(nul - in) : n;
    const char *body = nul ? nul + 1 : in + n;
    size_t blen = nul ? n - plen - 1 : 0;

    /* The params as the web server hands them over: NUL-terminated
     * strings, the array NULL-terminated. */
    char *ptext = malloc(plen + 1);
    char **envp = calloc(MAX_PARAMS + 1, sizeof(char *));
    CHECK(ptext && envp);
    memcpy(ptext, in, plen);
    ptext[plen] = '\0';
    size_t np = 0;
    for (char *line = ptext; line && np < MAX_PARAMS;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        envp[np++] = line;
        line = nl ? nl + 1 : NULL;
    }

    struct ars_arena arena;
    ars_arena_init(&arena, 16384);
    struct ars_buf bodybuf;
    ars_buf_init(&bodybuf, cap);
    struct memin mi = { body, blen, 0, piece, fail_at_end, 0 };
    struct ars_request *r = calloc(2, sizeof(*r));
    CHECK(r);
    r[0].arena = &arena;
    r[0].io = (struct ars_io){ mem_read, mem_write, mem_flush, &mi };
    r[0].body = &bodybuf;

    enum ars_err e = ars_request_parse(&r[0], envp);
    if (e == ARS_OK) {
        check_parsed(&r[0]);
        /* The same params in a second request: the same answer. */
        r[1].arena = &arena;
        CHECK(ars_request_parse(&r[1], envp) == ARS_OK);
        check_same(&r[0], &r[1]);

        enum ars_err be = ars_request_read_body(&r[0]);
        CHECK(bodybuf.len <= cap);
        CHECK(bodybuf.len <= blen && (bodybuf.len == 0 || memcmp(bodybuf.data, body, bodybuf.len) == 0));
        if (r[0].content_length > (long long)cap) {
            CHECK(be == ARS_ERR_TOOBIG && mi.reads == 0);
        }
        if (be == ARS_OK) {
            if (r[0].content_length >= 0)
                CHECK(bodybuf.len == (size_t)r[0].content_length);
            else
                CHECK(bodybuf.len == blen);
        }
    } else {
        CHECK(e == ARS_ERR_INVALID || e == ARS_ERR_TOOBIG || e == ARS_ERR_NOMEM);
    }

    free(r);
    ars_buf_deinit(&bodybuf);
    ars_arena_deinit(&arena);
    free(envp);
    free(ptext);
    return 0;
}
