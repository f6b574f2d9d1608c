#include "arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ars_arena_chunk {
    struct ars_arena_chunk *next;
    size_t size;
    size_t used;
    _Alignas(16) unsigned char data[];
};

struct ars_arena_cleanup {
    struct ars_arena_cleanup *next;
    void (*fn)(void *);
    void *arg;
};

#define ALIGN16(n) (((n) + 15u) & ~(size_t)15u)

void ars_arena_init(struct ars_arena *a, size_t chunk_size)
{
    a->head = NULL;
    a->cleanups = NULL;
    a->chunk_size = chunk_size ? chunk_size : 16384;
    a->total = 0;
    a->limit = 0;
}

void ars_arena_set_limit(struct ars_arena *a, size_t limit)
{
    a->limit = limit;
}

static struct ars_arena_chunk *chunk_new(size_t size)
{
    struct ars_arena_chunk *c = malloc(sizeof(*c) + size);
    if (!c)
        return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

void *ars_arena_alloc(struct ars_arena *a, size_t n)
{
    /* Past this, rounding up to 16 or adding the chunk header wraps and a
     * huge request would get a tiny block. */
    if (n > SIZE_MAX - 16 - sizeof(struct ars_arena_chunk))
        return NULL;
    n = ALIGN16(n ? n : 1);
    if (a->limit && (n > a->limit || a->total > a->limit - n))
        return NULL;
    struct ars_arena_chunk *c = a->head;
    if (!c || c->size - c->used < n) {
        /* Big requests get a chunk of their own, linked behind the current
         * one so the current chunk's free space is not wasted. */
        if (n > a->chunk_size / 4 && c) {
            struct ars_arena_chunk *big = chunk_new(n);
            if (!big)
                return NULL;
            big->next = c->next;
            c->next = big;
            big->used = n;
            a->total += n;
            return big->data;
        }
        size_t size = n > a->chunk_size ? n : a->chunk_size;
        struct ars_arena_chunk *fresh = chunk_new(size);
        if (!fresh)
            return NULL;
        fresh->next = c;
        a->head = fresh;
        c = fresh;
    }
    void *p = c->data + c->used;
    c->used += n;
    a->total += n;
    return p;
}

void *ars_arena_calloc(struct ars_arena *a, size_t n)
{
    void *p = ars_arena_alloc(a, n);
    if (p)
        memset(p, 0, n);
    return p;
}

char *ars_arena_strndup(struct ars_arena *a, const char *s, size_t n)
{
    if (!s || n == SIZE_MAX)
        return NULL;
    char *p = ars_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *ars_arena_strdup(struct ars_arena *a, const char *s)
{
    return s ? ars_arena_strndup(a, s, strlen(s)) : NULL;
}

char *ars_arena_printf(struct ars_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = ars_arena_alloc(a, (size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int ars_arena_on_reset(struct ars_arena *a, void (*fn)(void *), void *arg)
{
    struct ars_arena_cleanup *c = ars_arena_alloc(a, sizeof(*c));
    if (!c)
        return -1;
    c->fn = fn;
    c->arg = arg;
    c->next = a->cleanups;
    a->cleanups = c;
    return 0;
}

static void run_cleanups(struct ars_arena *a)
{
    /* Cleanup records live in the arena itself: unlink before running so a
     * cleanup that allocates cannot loop. */
    struct ars_arena_cleanup *c = a->cleanups;
    a->cleanups = NULL;
    while (c) {
        struct ars_arena_cleanup *next = c->next;
        c->fn(c->arg);
        c = next;
    }
}

void ars_arena_reset(struct ars_arena *a)
{
    run_cleanups(a);
    struct ars_arena_chunk *keep = NULL;
    struct ars_arena_chunk *c = a->head;
    while (c) {
        struct ars_arena_chunk *next = c->next;
        /* Keep one standard-size chunk for the next request. */
        if (!keep && c->size == a->chunk_size) {
            keep = c;
        } else {
            free(c);
        }
        c = next;
    }
    if (keep) {
        keep->next = NULL;
        keep->used = 0;
    }
    a->head = keep;
    a->total = 0;
}

void ars_arena_deinit(struct ars_arena *a)
{
    ars_arena_reset(a);
    free(a->head);
    a->head = NULL;
}
