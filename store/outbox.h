/* The PostgreSQL outbox: writes PostgreSQL could not take when they
 * happened, kept in order in a Redis list (durable as Redis is) and
 * replayed by a background thread until they succeed. Entries are whole
 * records with their version, so replaying one twice, or after a newer
 * write, changes nothing (the upsert is version-guarded). An entry that
 * PostgreSQL rejects as data (constraint, type) would block the queue
 * forever; it moves to a dead list and is logged. */
#ifndef ARS_STORE_OUTBOX_H
#define ARS_STORE_OUTBOX_H

#include <json.h>
#include <stddef.h>

#include "err.h"

struct ars_redis;
struct ars_config;

ARS_MUST_USE enum ars_err ars_outbox_length(struct ars_redis *r, const struct ars_config *cfg, long long *n);
ARS_MUST_USE enum ars_err ars_outbox_dead_length(struct ars_redis *r, const struct ars_config *cfg, long long *n);

/* Appends an entry (dead: straight to the dead list). rec may be NULL for deletes. */
ARS_MUST_USE enum ars_err ars_outbox_push(struct ars_redis *r, const struct ars_config *cfg, const char *entity,
                             const char *op, const char *id, long long version, json_object *rec, int dead);

struct ars_outbox_result {
    size_t applied;     /* entries written to PostgreSQL */
    size_t dead;        /* entries moved to the dead list */
    long long left;     /* entries still queued */
    int busy;           /* another process holds the drain lock */
};

/* Replays the queue in order until it is empty or PostgreSQL fails.
 * One drainer at a time across processes and hosts (a Redis lock). */
ARS_MUST_USE enum ars_err ars_outbox_drain(struct ars_redis *r, const struct ars_config *cfg,
                              struct ars_outbox_result *res, char *errbuf, size_t errlen);

/* Background thread for ai-relay: drains every second while PostgreSQL
 * is configured. */
int ars_outbox_thread_start(void);
void ars_outbox_thread_stop(void);

#endif
