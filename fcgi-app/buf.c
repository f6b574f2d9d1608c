#include "buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ars_buf_init(struct ars_buf *b, size_t cap)
{
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    /* One byte below SIZE_MAX, so cap + 1 (room for the NUL) cannot wrap. */
    b->cap = cap < SIZE_MAX ? cap : SIZE_MAX - 1;
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
            size = size > SIZE_MAX / 2 ? need : size * 2;
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

enum ars_err ars_buf_commit(struct ars_buf *b, size_t n)
{
    /* alloc - len - 1 is what the last reserve left room for (the 1 is the
     * trailing NUL); more would write past the allocation. */
    if (!b->data || n > b->alloc - b->len - 1)
        return ARS_ERR_INVALID;
    b->len += n;
    b->data[b->len] = '\0';
    return ARS_OK;
}

enum ars_err ars_buf_add(struct ars_buf *b, const void *p, size_t n)
{
    if (!p && n)
        return ARS_ERR_INVALID;
    char *dst;
    enum ars_err err = ars_buf_reserve(b, n, &dst);
    if (err)
        return err;
    if (n)
        memcpy(dst, p, n);
    return ars_buf_commit(b, n);
}

enum ars_err ars_buf_adds(struct ars_buf *b, const char *s)
{
    if (!s)
        return ARS_ERR_NOMEM;
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
    return ars_buf_commit(b, (size_t)n);
}

/* The escape for one byte, or 0 when it goes as it is. */
static size_t json_escape(unsigned char c, char esc[6])
{
    static const char hex[] = "0123456789abcdef";
    switch (c) {
    case '"': esc[0] = '\\'; esc[1] = '"'; return 2;
    case '\\': esc[0] = '\\'; esc[1] = '\\'; return 2;
    case '\n': esc[0] = '\\'; esc[1] = 'n'; return 2;
    case '\r': esc[0] = '\\'; esc[1] = 'r'; return 2;
    case '\t': esc[0] = '\\'; esc[1] = 't'; return 2;
    default:
        if (c < 0x20 || c == 0x7f) {
            esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
            return 6;
        }
        return 0;
    }
}

/* Two passes: measure, reserve once, write. One reservation makes it
 * all-or-nothing (a string that crosses the cap half-way adds nothing, not
 * an opening quote and a prefix) and is cheaper than a grow per escape. */
enum ars_err ars_buf_add_json_str(struct ars_buf *b, const char *s, size_t n)
{
    if (!s && n)
        return ARS_ERR_NOMEM;
    /* Each byte becomes at most 6; past this the sum could wrap. */
    if (n > (SIZE_MAX - 2) / 6)
        return ARS_ERR_TOOBIG;
    char esc[6];
    size_t need = 2;
    for (size_t i = 0; i < n; i++) {
        size_t e = json_escape((unsigned char)s[i], esc);
        need += e ? e : 1;
    }
    char *dst;
    enum ars_err err = ars_buf_reserve(b, need, &dst);
    if (err)
        return err;
    size_t o = 0;
    dst[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        size_t e = json_escape((unsigned char)s[i], esc);
        if (e) {
            memcpy(dst + o, esc, e);
            o += e;
        } else {
            dst[o++] = s[i];
        }
    }
    dst[o++] = '"';
    return ars_buf_commit(b, o);
}
