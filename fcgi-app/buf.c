#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ars_buf_init(struct ars_buf *b, size_t cap)
{
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    b->cap = cap;
}

void ars_buf_deinit(struct ars_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->alloc = 0;
}

void ars_buf_reset(struct ars_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

enum ars_err ars_buf_reserve(struct ars_buf *b, size_t n, char **out)
{
    if (n > b->cap || b->len > b->cap - n)
        return ARS_ERR_TOOBIG;
    size_t need = b->len + n + 1;           /* +1 for the trailing NUL */
    if (need > b->alloc) {
        size_t size = b->alloc ? b->alloc : 256;
        while (size < need)
            size *= 2;
        if (size > b->cap + 1)
            size = b->cap + 1;
        char *p = realloc(b->data, size);
        if (!p)
            return ARS_ERR_NOMEM;
        b->data = p;
        b->alloc = size;
    }
    *out = b->data + b->len;
    return ARS_OK;
}

void ars_buf_commit(struct ars_buf *b, size_t n)
{
    b->len += n;
    b->data[b->len] = '\0';
}

enum ars_err ars_buf_add(struct ars_buf *b, const void *p, size_t n)
{
    char *dst;
    enum ars_err err = ars_buf_reserve(b, n, &dst);
    if (err)
        return err;
    if (n)
        memcpy(dst, p, n);
    ars_buf_commit(b, n);
    return ARS_OK;
}

enum ars_err ars_buf_adds(struct ars_buf *b, const char *s)
{
    return ars_buf_add(b, s, strlen(s));
}

enum ars_err ars_buf_printf(struct ars_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return ARS_ERR_INVALID;
    char *dst;
    enum ars_err err = ars_buf_reserve(b, (size_t)n, &dst);
    if (err)
        return err;
    va_start(ap, fmt);
    vsnprintf(dst, (size_t)n + 1, fmt, ap);
    va_end(ap);
    ars_buf_commit(b, (size_t)n);
    return ARS_OK;
}

enum ars_err ars_buf_add_json_str(struct ars_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    enum ars_err err = ars_buf_add(b, "\"", 1);
    size_t run = 0;   /* start of the pending run of plain bytes */
    for (size_t i = 0; !err && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t esc_len = 0;
        switch (c) {
        case '"': esc[0] = '\\'; esc[1] = '"'; esc_len = 2; break;
        case '\\': esc[0] = '\\'; esc[1] = '\\'; esc_len = 2; break;
        case '\n': esc[0] = '\\'; esc[1] = 'n'; esc_len = 2; break;
        case '\r': esc[0] = '\\'; esc[1] = 'r'; esc_len = 2; break;
        case '\t': esc[0] = '\\'; esc[1] = 't'; esc_len = 2; break;
        default:
            if (c < 0x20 || c == 0x7f) {
                esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
                esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
                esc_len = 6;
            }
        }
        if (esc_len) {
            err = ars_buf_add(b, s + run, i - run);
            if (!err)
                err = ars_buf_add(b, esc, esc_len);
            run = i + 1;
        }
    }
    if (!err)
        err = ars_buf_add(b, s + run, n - run);
    if (!err)
        err = ars_buf_add(b, "\"", 1);
    return err;
}
