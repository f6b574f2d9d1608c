/* Per-request memory: a bump allocator over chunks, freed in one place when
 * the request ends. Cleanups registered here release non-memory resources
 * (leases, handles) on every exit path. */
#ifndef ARS_ARENA_H
#define ARS_ARENA_H

#include <stddef.h>

struct ars_arena_chunk;
struct ars_arena_cleanup;

struct ars_arena {
    struct ars_arena_chunk *head;      /* current chunk; older ones linked behind */
    struct ars_arena_cleanup *cleanups;
    size_t chunk_size;
    size_t total;                      /* bytes handed out, for metrics */
    size_t limit;                      /* 0: none; see ars_arena_set_limit */
};

void ars_arena_init(struct ars_arena *a, size_t chunk_size);
/* Runs cleanups (last registered first) and frees everything but one chunk. */
void ars_arena_reset(struct ars_arena *a);
void ars_arena_deinit(struct ars_arena *a);

/* Caps the bytes handed out since the last reset (0: no cap; the cap stays
 * across resets); past it an allocation is NULL. Tests use it to make
 * allocations fail on purpose. */
void ars_arena_set_limit(struct ars_arena *a, size_t limit);

/* NULL on allocation failure, and for a size so large that its rounding
 * would wrap. Memory is 16-byte aligned. Callers check the result before
 * it reaches a string function (strlen, strpbrk, "%s"). */
void *ars_arena_alloc(struct ars_arena *a, size_t n);
void *ars_arena_calloc(struct ars_arena *a, size_t n);
/* NULL when s is NULL, so a failed allocation passed in stays a failure. */
char *ars_arena_strndup(struct ars_arena *a, const char *s, size_t n);
char *ars_arena_strdup(struct ars_arena *a, const char *s);
/* Formats into arena memory; NULL on failure. */
char *ars_arena_printf(struct ars_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Registers fn(arg) to run at reset; returns 0 or -1 on allocation failure. */
int ars_arena_on_reset(struct ars_arena *a, void (*fn)(void *), void *arg);

#endif
