/* Growable byte buffer with a hard cap given at init (as curl's dynbuf):
 * growing past the cap is ARS_ERR_TOOBIG, never a silent cut. Always keeps
 * a NUL after the data so text can be used as a C string. */
#ifndef ARS_BUF_H
#define ARS_BUF_H

#include <stddef.h>

#include "err.h"

struct ars_buf {
    char *data;
    size_t len;
    size_t alloc;
    size_t cap;
};

void ars_buf_init(struct ars_buf *b, size_t cap);
void ars_buf_deinit(struct ars_buf *b);
void ars_buf_reset(struct ars_buf *b);   /* len = 0, memory kept */

enum ars_err ars_buf_add(struct ars_buf *b, const void *p, size_t n);
enum ars_err ars_buf_adds(struct ars_buf *b, const char *s);
enum ars_err ars_buf_printf(struct ars_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. */
enum ars_err ars_buf_add_json_str(struct ars_buf *b, const char *s, size_t n);
/* Makes room for n more bytes; *out points at them. Commit with ars_buf_grow_done. */
enum ars_err ars_buf_reserve(struct ars_buf *b, size_t n, char **out);
void ars_buf_commit(struct ars_buf *b, size_t n);

#endif
