/* Records kept in both stores (API keys, accounts, groups, settings,
 * admin users): one description per entity (its fields and their kinds)
 * drives the Redis encoding, the PostgreSQL SQL and the JSON shape, so
 * each repository is a thin typed layer over this.
 *
 * A record is a json_object whose members are the entity's fields: TEXT
 * strings, INT int64, BOOL booleans, JSON objects/arrays, TS epoch
 * milliseconds (int64) or null. "version" is added by the stores.
 *
 * Redis: one hash per record, "<prefix><ns>:{<id>}", every field a string
 * (JSON fields as JSON text, TS as milliseconds, "" for null), plus a
 * "version" counter, and a sorted set "<prefix>idx:<ns>" of ids by
 * creation time. Writes go through one Lua script on the record's key
 * that sets the changed fields, bumps the version and returns the whole
 * record, so the snapshot sent to PostgreSQL is exactly Redis' state at
 * that version.
 *
 * PostgreSQL: one row per record; an upsert only replaces a row whose
 * version is older, so a retried write never undoes a newer one. */
#ifndef ARS_STORE_RECORDS_H
#define ARS_STORE_RECORDS_H

#include <json.h>
#include <stddef.h>

#include "err.h"

enum ars_field_kind { ARS_FIELD_TEXT, ARS_FIELD_INT, ARS_FIELD_BOOL, ARS_FIELD_JSON, ARS_FIELD_TS };

struct ars_field {
    const char *name;          /* JSON member, Redis hash field and PG column */
    enum ars_field_kind kind;
};

struct ars_entity {
    const char *name;          /* "api_key", in outbox entries and messages */
    const char *ns;            /* Redis namespace: "<prefix><ns>:{id}" */
    const char *table;         /* PG table */
    const char *id_field;      /* primary key field (TEXT) */
    const char *order_field;   /* TS field ordering lists (created_at), or NULL */
    const struct ars_field *fields;
    size_t nfields;
    /* Runtime fields (NULL-terminated, or NULL): written by the request
     * path in Redis only, without a version bump (a key's last_used_at),
     * so PostgreSQL's copy lags until the record's next write. Not master
     * data: comparisons of the two stores leave them out. */
    const char *const *runtime_fields;
};

struct ars_redis;
struct ars_config;
struct ars_pg_conn;

const struct ars_field *ars_entity_field(const struct ars_entity *e, const char *name);
/* Whether two copies of a record hold the same master data: every field
 * but the runtime ones, and the version. Names the first field that
 * differs in *field (NULL when none; may be NULL). */
int ars_rec_same_master(const struct ars_entity *e, json_object *a, json_object *b, const char **field);

/* ---- Redis ---- */

/* Sets the fields present in `changes` (others stay), bumps the version,
 * indexes the id, and returns the whole record after the write in *out
 * (json_object_put it). With `create`, fails ARS_ERR_INVALID if the
 * record exists. */
ARS_MUST_USE enum ars_err ars_rec_redis_write(struct ars_redis *r, const struct ars_config *cfg,
                                 const struct ars_entity *e, const char *id, json_object *changes,
                                 int create, json_object **out);
/* Writes a whole record at a given version (back-fill from PostgreSQL,
 * migrations into Redis); keeps the newer one if Redis has it. */
ARS_MUST_USE enum ars_err ars_rec_redis_restore(struct ars_redis *r, const struct ars_config *cfg,
                                   const struct ars_entity *e, json_object *rec);
/* ARS_ERR_NOTFOUND when absent. */
ARS_MUST_USE enum ars_err ars_rec_redis_get(struct ars_redis *r, const struct ars_config *cfg,
                               const struct ars_entity *e, const char *id, json_object **out);
/* Deletes the record and its index entry; returns the version it had. */
ARS_MUST_USE enum ars_err ars_rec_redis_delete(struct ars_redis *r, const struct ars_config *cfg,
                                  const struct ars_entity *e, const char *id, long long *version);
/* Ids in creation order (newest first), at most `limit` (0 = all). */
ARS_MUST_USE enum ars_err ars_rec_redis_ids(struct ars_redis *r, const struct ars_config *cfg,
                               const struct ars_entity *e, size_t limit, json_object **ids);
ARS_MUST_USE enum ars_err ars_rec_redis_count(struct ars_redis *r, const struct ars_config *cfg,
                                 const struct ars_entity *e, long long *count);

/* Decodes a Redis HGETALL-style reply (field/value pairs) into a record. */
struct redisReply;
json_object *ars_rec_from_reply(const struct ars_entity *e, const struct redisReply *rep);
json_object *ars_rec_from_pairs(const struct ars_entity *e, const char *const *fields,
                                const char *const *values, const size_t *lens, size_t n);

/* A JSON array of strings as a NULL-terminated malloc'd list (NULL on
 * allocation failure; not an array: an empty list), and its free. */
char **ars_string_list_from_json(json_object *arr);
void ars_string_list_free(char **list);

/* ---- PostgreSQL ---- */

/* Upsert guarded by version; *applied is 1 when the row changed, 0 when
 * PostgreSQL already had this version or a newer one. */
ARS_MUST_USE enum ars_err ars_rec_pg_upsert(struct ars_pg_conn *c, const struct ars_config *cfg,
                               const struct ars_entity *e, json_object *rec, int *applied,
                               char *errbuf, size_t errlen);
ARS_MUST_USE enum ars_err ars_rec_pg_delete(struct ars_pg_conn *c, const struct ars_config *cfg,
                               const struct ars_entity *e, const char *id,
                               char *errbuf, size_t errlen);
ARS_MUST_USE enum ars_err ars_rec_pg_get(struct ars_pg_conn *c, const struct ars_config *cfg,
                            const struct ars_entity *e, const char *field, const char *value,
                            json_object **out, char *errbuf, size_t errlen);

/* A filtered, paged list. where is SQL over the entity's columns with $1..
 * placeholders for params (built by the repository from fixed text, never
 * from input); NULL for none. Returns {"items":[...],"total":N}. */
ARS_MUST_USE enum ars_err ars_rec_pg_list(struct ars_pg_conn *c, const struct ars_config *cfg,
                             const struct ars_entity *e, const char *where, int nparams,
                             const char *const *params, long long limit, long long offset,
                             json_object **out, char *errbuf, size_t errlen);
ARS_MUST_USE enum ars_err ars_rec_pg_count(struct ars_pg_conn *c, const struct ars_config *cfg,
                              const struct ars_entity *e, long long *count,
                              char *errbuf, size_t errlen);

/* ---- both: the double-write rule ---- */

/* After a Redis write: the PostgreSQL copy. Written directly when the
 * outbox is empty and PostgreSQL answers; otherwise queued in the outbox
 * (in order) for the retry thread. PG disabled: nothing to do. Errors
 * here never fail the operation: Redis already holds it. */
void ars_rec_mirror_upsert(struct ars_redis *r, const struct ars_config *cfg,
                           const struct ars_entity *e, json_object *rec);
void ars_rec_mirror_delete(struct ars_redis *r, const struct ars_config *cfg,
                           const struct ars_entity *e, const char *id, long long version);

#endif
