/* In-memory struct ars_io for the unit tests: the body comes from a
 * string (optionally in small pieces), output goes to an ars_buf, and
 * writes can be made to fail to play a client that went away. */
#ifndef ARS_TEST_MEMIO_H
#define ARS_TEST_MEMIO_H

#include <json.h>
#include <string.h>
#include <sys/types.h>

#include "buf.h"
#include "request.h"

struct memio {
    const char *in;
    size_t in_len;
    size_t in_pos;
    size_t piece;          /* max bytes per read; 0 = all */
    int read_error;        /* read fails at end of input instead of EOF */
    struct ars_buf out;
    int fail_writes;       /* writes fail after this many succeeded; -1 never */
    int writes;
    int flushes;
};

static ssize_t memio_read(void *ctx, char *buf, size_t n)
{
    struct memio *m = ctx;
    size_t left = m->in_len - m->in_pos;
    if (left == 0)
        return m->read_error ? -1 : 0;
    if (m->piece && n > m->piece)
        n = m->piece;
    if (n > left)
        n = left;
    memcpy(buf, m->in + m->in_pos, n);
    m->in_pos += n;
    return (ssize_t)n;
}

static int memio_write(void *ctx, const char *buf, size_t n)
{
    struct memio *m = ctx;
    if (m->fail_writes >= 0 && m->writes >= m->fail_writes)
        return -1;
    m->writes++;
    return ars_buf_add(&m->out, buf, n) == ARS_OK ? 0 : -1;
}

static int memio_flush(void *ctx)
{
    struct memio *m = ctx;
    if (m->fail_writes >= 0 && m->writes >= m->fail_writes)
        return -1;
    m->flushes++;
    return 0;
}

static inline void memio_init(struct memio *m, const char *in, size_t in_len)
{
    memset(m, 0, sizeof(*m));
    m->in = in;
    m->in_len = in_len;
    m->fail_writes = -1;
    ars_buf_init(&m->out, 64 * 1024 * 1024);
}

static inline struct ars_io memio_io(struct memio *m)
{
    struct ars_io io = { memio_read, memio_write, memio_flush, m };
    return io;
}

/* Body of a captured FastCGI response (after the blank line). */
static inline const char *memio_body(const struct memio *m)
{
    const char *p = m->out.data ? strstr(m->out.data, "\r\n\r\n") : NULL;
    return p ? p + 4 : "";
}

/* o[a] or o[a][b] as a string (NULL when absent), for asserting on JSON
 * answers. */
static inline const char *json_member_str(struct json_object *o, const char *a, const char *b)
{
    struct json_object *x, *y;
    if (!json_object_object_get_ex(o, a, &x))
        return NULL;
    if (!b)
        return json_object_get_string(x);
    return json_object_object_get_ex(x, b, &y) ? json_object_get_string(y) : NULL;
}

#endif
