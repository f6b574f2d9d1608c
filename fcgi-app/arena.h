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
};

void ars_arena_init(struct ars_arena *a, size_t chunk_size);
/* Runs cleanups (last registered first) and frees everything but one chunk. */
void ars_arena_reset(struct ars_arena *a);
void ars_arena_deinit(struct ars_arena *a);

/* NULL on allocation failure. Memory is 16-byte aligned. */
void *ars_arena_alloc(struct ars_arena *a, size_t n);
void *ars_arena_calloc(struct ars_arena *a, size_t n);
char *ars_arena_strndup(struct ars_arena *a, const char *s, size_t n);
char *ars_arena_strdup(struct ars_arena *a, const char *s);
/* Formats into arena memory; NULL on failure. */
char *ars_arena_printf(struct ars_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Registers fn(arg) to run at reset; returns 0 or -1 on allocation failure. */
int ars_arena_on_reset(struct ars_arena *a, void (*fn)(void *), void *arg);

#endif
