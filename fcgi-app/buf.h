/* Growable byte buffer with a hard cap given at init (as curl's dynbuf):
 * growing past the cap is ARS_ERR_TOOBIG, never a silent cut. Always keeps
 * a NUL after the data so text can be used as a C string.
 *
 * Every append is all-or-nothing: when it fails (TOOBIG, NOMEM, INVALID)
 * nothing of it is added, and len, the bytes and the trailing NUL are as
 * they were before the call. Unlike dynbuf, a failed append does not free
 * or poison the buffer: the converters (openai.c, openai_stream.c) build a
 * result of many appends into a buffer that already holds earlier output
 * and, on any failure, roll back to where they started, so the bytes before
 * must survive; and the body reader (request.c) asks for 64 KiB, gets
 * TOOBIG near REQUEST_MAX_BYTES and then asks for exactly what is left,
 * which a poisoned buffer would refuse. What dynbuf's free
 * guards against -- a caller that ignores an error and ships half a
 * string -- the compiler catches here: every append is ARS_MUST_USE. */
#ifndef ARS_BUF_H
#define ARS_BUF_H

#include <stddef.h>

#include "err.h"

struct ars_buf {
    char *data;      /* NULL until the first append */
    size_t len;
    size_t alloc;
    size_t cap;
};

void ars_buf_init(struct ars_buf *b, size_t cap);
void ars_buf_deinit(struct ars_buf *b);
void ars_buf_reset(struct ars_buf *b);   /* len = 0, memory kept */

/* n bytes at p (p may be NULL only when n is 0). */
ARS_MUST_USE enum ars_err ars_buf_add(struct ars_buf *b, const void *p, size_t n);
/* A C string; NULL (a failed allocation upstream) is ARS_ERR_NOMEM. */
ARS_MUST_USE enum ars_err ars_buf_adds(struct ars_buf *b, const char *s);
ARS_MUST_USE enum ars_err ars_buf_printf(struct ars_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included; the escaped length
 * is measured first, so it lands whole or not at all. */
ARS_MUST_USE enum ars_err ars_buf_add_json_str(struct ars_buf *b, const char *s, size_t n);
/* Makes room for n more bytes; *out points at them. Nothing is added until
 * ars_buf_commit, so a writer that fails half-way just does not commit. */
ARS_MUST_USE enum ars_err ars_buf_reserve(struct ars_buf *b, size_t n, char **out);
/* Adds n of the bytes written after the last reserve. ARS_ERR_INVALID, and
 * nothing added, when n is more than was reserved. */
ARS_MUST_USE enum ars_err ars_buf_commit(struct ars_buf *b, size_t n);

#endif
