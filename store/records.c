#include "records.h"

#include <hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "outbox.h"
#include "pg.h"
#include "redis.h"

#define SQL_CAP (64 * 1024)

const struct ars_field *ars_entity_field(const struct ars_entity *e, const char *name)
{
    for (size_t i = 0; i < e->nfields; i++)
        if (strcmp(e->fields[i].name, name) == 0)
            return &e->fields[i];
    return NULL;
}

static int is_runtime(const struct ars_entity *e, const char *name)
{
    for (size_t i = 0; e->runtime_fields && e->runtime_fields[i]; i++)
        if (!strcmp(e->runtime_fields[i], name))
            return 1;
    return 0;
}

static int member_equal(json_object *a, json_object *b, const char *name)
{
    json_object *va = NULL, *vb = NULL;
    int ha = json_object_object_get_ex(a, name, &va), hb = json_object_object_get_ex(b, name, &vb);
    /* absent and null are the same thing in both stores */
    if (!ha || json_object_is_type(va, json_type_null))
        return !hb || json_object_is_type(vb, json_type_null);
    return hb && json_object_equal(va, vb);
}

int ars_rec_same_master(const struct ars_entity *e, json_object *a, json_object *b, const char **field)
{
    if (field)
        *field = NULL;
    for (size_t i = 0; i < e->nfields; i++) {
        if (is_runtime(e, e->fields[i].name))
            continue;
        if (!member_equal(a, b, e->fields[i].name)) {
            if (field)
                *field = e->fields[i].name;
            return 0;
        }
    }
    if (!member_equal(a, b, "version")) {
        if (field)
            *field = "version";
        return 0;
    }
    return 1;
}

/* ---- text encoding shared by Redis values and PG parameters ---- */

/* Encodes one field for storage; *out is malloc'd, NULL for SQL NULL
 * (a null TS). Redis stores a NULL as "". */
static enum ars_err field_encode(enum ars_field_kind kind, json_object *v, char **out)
{
    *out = NULL;
    char num[32];
    switch (kind) {
    case ARS_FIELD_TEXT:
        *out = strdup(v ? json_object_get_string(v) : "");
        break;
    case ARS_FIELD_INT:
        snprintf(num, sizeof(num), "%" PRId64, v ? json_object_get_int64(v) : 0);
        *out = strdup(num);
        break;
    case ARS_FIELD_BOOL:
        *out = strdup(v && json_object_get_boolean(v) ? "true" : "false");
        break;
    case ARS_FIELD_JSON:
        *out = strdup(v ? json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN) : "null");
        break;
    case ARS_FIELD_TS:
        if (!v || json_object_is_type(v, json_type_null))
            return ARS_OK;
        snprintf(num, sizeof(num), "%" PRId64, json_object_get_int64(v));
        *out = strdup(num);
        break;
    }
    return *out ? ARS_OK : ARS_ERR_NOMEM;
}

/* Decodes a stored text value (from Redis, or a PG column rendered as
 * text); NULL value = SQL NULL. */
static json_object *field_decode(enum ars_field_kind kind, const char *s, size_t n)
{
    switch (kind) {
    case ARS_FIELD_TEXT:
        return json_object_new_string_len(s ? s : "", s ? (int)n : 0);
    case ARS_FIELD_INT:
        return json_object_new_int64(s ? strtoll(s, NULL, 10) : 0);
    case ARS_FIELD_BOOL:
        return json_object_new_boolean(s && (n == 4 ? !memcmp(s, "true", 4) : n == 1 && s[0] == 't'));
    case ARS_FIELD_JSON: {
        if (!s || !n)
            return NULL;
        struct json_tokener *tok = json_tokener_new();
        json_object *v = tok ? json_tokener_parse_ex(tok, s, (int)n) : NULL;
        json_tokener_free(tok);
        return v;
    }
    case ARS_FIELD_TS:
        if (!s || !n)
            return NULL;
        return json_object_new_int64(strtoll(s, NULL, 10));
    }
    return NULL;
}

json_object *ars_rec_from_pairs(const struct ars_entity *e, const char *const *fields,
                                const char *const *values, const size_t *lens, size_t n)
{
    json_object *rec = json_object_new_object();
    if (!rec)
        return NULL;
    /* Every field of the entity is present; a missing one decodes as its
     * empty value, so a record written by an older version still reads. */
    for (size_t f = 0; f < e->nfields; f++) {
        const char *val = NULL;
        size_t len = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(fields[i], e->fields[f].name) == 0) {
                val = values[i];
                len = lens[i];
                break;
            }
        }
        json_object_object_add(rec, e->fields[f].name, field_decode(e->fields[f].kind, val, len));
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i], "version") == 0)
            json_object_object_add(rec, "version", json_object_new_int64(strtoll(values[i], NULL, 10)));
    return rec;
}

char **ars_string_list_from_json(json_object *arr)
{
    size_t n = json_object_is_type(arr, json_type_array) ? json_object_array_length(arr) : 0;
    char **list = calloc(n + 1, sizeof(*list));
    if (!list)
        return NULL;
    for (size_t i = 0; i < n; i++)
        list[i] = strdup(json_object_get_string(json_object_array_get_idx(arr, i)));
    return list;
}

void ars_string_list_free(char **list)
{
    if (!list)
        return;
    for (char **p = list; *p; p++)
        free(*p);
    free(list);
}

/* ---- Redis ---- */

static char *record_key(const struct ars_config *cfg, const struct ars_entity *e, const char *id)
{
    size_t n = strlen(cfg->redis_key_prefix) + strlen(e->ns) + strlen(id) + 5;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%s%s:{%s}", cfg->redis_key_prefix, e->ns, id);
    return k;
}

static char *index_key(const struct ars_config *cfg, const struct ars_entity *e)
{
    size_t n = strlen(cfg->redis_key_prefix) + strlen(e->ns) + 6;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%sidx:%s", cfg->redis_key_prefix, e->ns);
    return k;
}

json_object *ars_rec_from_reply(const struct ars_entity *e, const redisReply *rep)
{
    size_t n = rep->elements / 2;
    const char **fields = calloc(n + 1, sizeof(*fields));
    const char **values = calloc(n + 1, sizeof(*values));
    size_t *lens = calloc(n + 1, sizeof(*lens));
    json_object *rec = NULL;
    if (fields && values && lens) {
        for (size_t i = 0; i < n; i++) {
            fields[i] = rep->element[2 * i]->str;
            values[i] = rep->element[2 * i + 1]->str;
            lens[i] = rep->element[2 * i + 1]->len;
        }
        rec = ars_rec_from_pairs(e, fields, values, lens, n);
    }
    free(fields);
    free(values);
    free(lens);
    return rec;
}

static struct ars_redis_script write_script = ARS_REDIS_SCRIPT(
    "local exists = redis.call('EXISTS', KEYS[1]) == 1\n"
    "if ARGV[1] == 'create' and exists then return redis.error_reply('ARS_EXISTS') end\n"
    "if ARGV[1] == 'update' and not exists then return redis.error_reply('ARS_NOTFOUND') end\n"
    "if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end\n"
    "redis.call('HINCRBY', KEYS[1], 'version', 1)\n"
    "return redis.call('HGETALL', KEYS[1])\n");

static struct ars_redis_script restore_script = ARS_REDIS_SCRIPT(
    "local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')\n"
    "if cur >= tonumber(ARGV[1]) then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('HSET', KEYS[1], 'version', ARGV[1], unpack(ARGV, 2))\n"
    "return 1\n");

/* argv for the scripts: key, fixed args, then field/value pairs of the
 * entity's fields present in rec. */
struct script_args {
    const char **argv;
    char **owned;
    size_t n;
};

static void script_args_free(struct script_args *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->owned[i]);
    free(a->owned);
    free(a->argv);
}

static enum ars_err script_args_build(struct script_args *a, const struct ars_entity *e, json_object *rec,
                                      int nfixed, const char *const *fixed)
{
    size_t cap = (size_t)nfixed + 2 * e->nfields;
    a->argv = calloc(cap, sizeof(*a->argv));
    a->owned = calloc(cap, sizeof(*a->owned));
    a->n = 0;
    if (!a->argv || !a->owned)
        return ARS_ERR_NOMEM;
    for (int i = 0; i < nfixed; i++)
        a->argv[a->n++] = fixed[i];
    for (size_t f = 0; f < e->nfields; f++) {
        json_object *v;
        if (!json_object_object_get_ex(rec, e->fields[f].name, &v))
            continue;
        char *text;
        if (field_encode(e->fields[f].kind, v, &text))
            return ARS_ERR_NOMEM;
        a->argv[a->n] = e->fields[f].name;
        a->owned[a->n++] = NULL;
        a->owned[a->n] = text ? text : strdup("");
        if (!a->owned[a->n])
            return ARS_ERR_NOMEM;
        a->argv[a->n] = a->owned[a->n];
        a->n++;
    }
    return ARS_OK;
}

static enum ars_err index_add(struct ars_redis *r, const struct ars_config *cfg, const struct ars_entity *e,
                              const char *id, json_object *rec)
{
    char *idx = index_key(cfg, e);
    if (!idx)
        return ARS_ERR_NOMEM;
    json_object *ts = NULL;
    long long score = 0;
    if (e->order_field && json_object_object_get_ex(rec, e->order_field, &ts) && ts)
        score = (long long)json_object_get_int64(ts);
    char sc[32];
    snprintf(sc, sizeof(sc), "%lld", score);
    const char *argv[] = { "ZADD", idx, sc, id };
    redisReply *rep;
    enum ars_err err = ars_redis_cmd(r, cfg, &rep, 4, argv, NULL);
    if (!err) {
        if (rep->type == REDIS_REPLY_ERROR)
            err = ARS_ERR_INVALID;
        freeReplyObject(rep);
    }
    free(idx);
    return err;
}

enum ars_err ars_rec_redis_write(struct ars_redis *r, const struct ars_config *cfg,
                                 const struct ars_entity *e, const char *id, json_object *changes,
                                 int create, json_object **out)
{
    *out = NULL;
    char *key = record_key(cfg, e, id);
    struct script_args a = { 0 };
    redisReply *rep = NULL;
    enum ars_err err = key ? ARS_OK : ARS_ERR_NOMEM;
    if (!err) {
        const char *fixed[] = { key, create == 1 ? "create" : create == 0 ? "update" : "upsert" };
        err = script_args_build(&a, e, changes, 2, fixed);
    }
    if (!err)
        err = ars_redis_eval(r, cfg, &write_script, &rep, 1, (int)a.n - 1, a.argv, NULL);
    if (!err) {
        if (rep->type == REDIS_REPLY_ERROR)
            err = strstr(rep->str, "ARS_EXISTS") ? ARS_ERR_INVALID
                : strstr(rep->str, "ARS_NOTFOUND") ? ARS_ERR_NOTFOUND : ARS_ERR_UNAVAILABLE;
        else if (rep->type != REDIS_REPLY_ARRAY)
            err = ARS_ERR_UNAVAILABLE;
    }
    if (!err) {
        *out = ars_rec_from_reply(e, rep);
        if (!*out)
            err = ARS_ERR_NOMEM;
    }
    if (!err)
        err = index_add(r, cfg, e, id, *out);
    if (err && *out) {
        json_object_put(*out);
        *out = NULL;
    }
    if (rep)
        freeReplyObject(rep);
    script_args_free(&a);
    free(key);
    return err;
}

enum ars_err ars_rec_redis_restore(struct ars_redis *r, const struct ars_config *cfg,
                                   const struct ars_entity *e, json_object *rec)
{
    json_object *idv, *verv;
    if (!json_object_object_get_ex(rec, e->id_field, &idv) || !json_object_object_get_ex(rec, "version", &verv))
        return ARS_ERR_INVALID;
    const char *id = json_object_get_string(idv);
    char *key = record_key(cfg, e, id);
    char version[32];
    snprintf(version, sizeof(version), "%" PRId64, json_object_get_int64(verv));
    struct script_args a = { 0 };
    redisReply *rep = NULL;
    enum ars_err err = key ? ARS_OK : ARS_ERR_NOMEM;
    if (!err) {
        const char *fixed[] = { key, version };
        err = script_args_build(&a, e, rec, 2, fixed);
    }
    if (!err)
        err = ars_redis_eval(r, cfg, &restore_script, &rep, 1, (int)a.n - 1, a.argv, NULL);
    if (!err && rep->type == REDIS_REPLY_ERROR)
        err = ARS_ERR_UNAVAILABLE;
    if (!err)
        err = index_add(r, cfg, e, id, rec);
    if (rep)
        freeReplyObject(rep);
    script_args_free(&a);
    free(key);
    return err;
}

enum ars_err ars_rec_redis_get(struct ars_redis *r, const struct ars_config *cfg,
                               const struct ars_entity *e, const char *id, json_object **out)
{
    *out = NULL;
    char *key = record_key(cfg, e, id);
    if (!key)
        return ARS_ERR_NOMEM;
    const char *argv[] = { "HGETALL", key };
    redisReply *rep;
    enum ars_err err = ars_redis_cmd(r, cfg, &rep, 2, argv, NULL);
    free(key);
    if (err)
        return err;
    if (rep->type != REDIS_REPLY_ARRAY)
        err = ARS_ERR_UNAVAILABLE;
    else if (rep->elements == 0)
        err = ARS_ERR_NOTFOUND;
    else if (!(*out = ars_rec_from_reply(e, rep)))
        err = ARS_ERR_NOMEM;
    freeReplyObject(rep);
    return err;
}

enum ars_err ars_rec_redis_delete(struct ars_redis *r, const struct ars_config *cfg,
                                  const struct ars_entity *e, const char *id, long long *version)
{
    *version = 0;
    char *key = record_key(cfg, e, id);
    char *idx = index_key(cfg, e);
    enum ars_err err = key && idx ? ARS_OK : ARS_ERR_NOMEM;
    redisReply *rep = NULL;
    if (!err) {
        const char *argv[] = { "HGET", key, "version" };
        err = ars_redis_cmd(r, cfg, &rep, 3, argv, NULL);
        if (!err && rep->type == REDIS_REPLY_STRING)
            *version = strtoll(rep->str, NULL, 10) + 1;
        if (rep)
            freeReplyObject(rep);
    }
    if (!err) {
        const char *argv[] = { "DEL", key };
        err = ars_redis_cmd(r, cfg, &rep, 2, argv, NULL);
        if (!err)
            freeReplyObject(rep);
    }
    if (!err) {
        const char *argv[] = { "ZREM", idx, id };
        err = ars_redis_cmd(r, cfg, &rep, 3, argv, NULL);
        if (!err)
            freeReplyObject(rep);
    }
    free(key);
    free(idx);
    return err;
}

enum ars_err ars_rec_redis_ids(struct ars_redis *r, const struct ars_config *cfg,
                               const struct ars_entity *e, size_t limit, json_object **ids)
{
    *ids = NULL;
    char *idx = index_key(cfg, e);
    if (!idx)
        return ARS_ERR_NOMEM;
    char stop[32];
    snprintf(stop, sizeof(stop), "%lld", limit ? (long long)limit - 1 : -1LL);
    const char *argv[] = { "ZREVRANGE", idx, "0", stop };
    redisReply *rep;
    enum ars_err err = ars_redis_cmd(r, cfg, &rep, 4, argv, NULL);
    free(idx);
    if (err)
        return err;
    if (rep->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return ARS_ERR_UNAVAILABLE;
    }
    *ids = json_object_new_array();
    for (size_t i = 0; i < rep->elements; i++)
        json_object_array_add(*ids, json_object_new_string_len(rep->element[i]->str, (int)rep->element[i]->len));
    freeReplyObject(rep);
    return ARS_OK;
}

enum ars_err ars_rec_redis_count(struct ars_redis *r, const struct ars_config *cfg,
                                 const struct ars_entity *e, long long *count)
{
    char *idx = index_key(cfg, e);
    if (!idx)
        return ARS_ERR_NOMEM;
    const char *argv[] = { "ZCARD", idx };
    redisReply *rep;
    enum ars_err err = ars_redis_cmd(r, cfg, &rep, 2, argv, NULL);
    free(idx);
    if (err)
        return err;
    *count = rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
    freeReplyObject(rep);
    return ARS_OK;
}

/* ---- PostgreSQL ---- */

/* Placeholder expression turning a text parameter into the column type. */
static enum ars_err sql_param(struct ars_buf *b, enum ars_field_kind kind, int n)
{
    switch (kind) {
    case ARS_FIELD_TEXT: return ars_buf_printf(b, "$%d", n);
    case ARS_FIELD_INT: return ars_buf_printf(b, "$%d::bigint", n);
    case ARS_FIELD_BOOL: return ars_buf_printf(b, "$%d::boolean", n);
    case ARS_FIELD_JSON: return ars_buf_printf(b, "$%d::jsonb", n);
    case ARS_FIELD_TS: return ars_buf_printf(b, "to_timestamp($%d::double precision / 1000)", n);
    }
    return ARS_ERR_INVALID;
}

/* Column rendered as the text the decoder reads. */
static enum ars_err sql_column(struct ars_buf *b, const struct ars_field *f)
{
    switch (f->kind) {
    case ARS_FIELD_INT: return ars_buf_printf(b, "%s::bigint", f->name);
    case ARS_FIELD_JSON: return ars_buf_printf(b, "%s::text", f->name);
    case ARS_FIELD_TS: return ars_buf_printf(b, "(extract(epoch from %s) * 1000)::bigint", f->name);
    default: return ars_buf_printf(b, "%s", f->name);
    }
}

static enum ars_err sql_select_list(struct ars_buf *b, const struct ars_entity *e)
{
    enum ars_err err = ARS_OK;
    for (size_t i = 0; !err && i < e->nfields; i++) {
        if (i)
            err = ars_buf_adds(b, ", ");
        if (!err)
            err = sql_column(b, &e->fields[i]);
    }
    if (!err)
        err = ars_buf_adds(b, ", version");
    return err;
}

static json_object *row_to_record(const struct ars_entity *e, const PGresult *res, int row)
{
    json_object *rec = json_object_new_object();
    if (!rec)
        return NULL;
    for (size_t i = 0; i < e->nfields; i++) {
        int col = (int)i;
        const char *v = PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
        json_object_object_add(rec, e->fields[i].name,
                               field_decode(e->fields[i].kind, v, v ? (size_t)PQgetlength(res, row, col) : 0));
    }
    json_object_object_add(rec, "version",
                           json_object_new_int64(strtoll(PQgetvalue(res, row, (int)e->nfields), NULL, 10)));
    return rec;
}

static long timeout_of(const struct ars_config *cfg)
{
    return (long)cfg->pg_statement_timeout_ms;
}

enum ars_err ars_rec_pg_upsert(struct ars_pg_conn *c, const struct ars_config *cfg,
                               const struct ars_entity *e, json_object *rec, int *applied,
                               char *errbuf, size_t errlen)
{
    *applied = 0;
    struct ars_buf sql;
    ars_buf_init(&sql, SQL_CAP);
    char **params = calloc(e->nfields + 1, sizeof(*params));
    PGresult *res = NULL;
    enum ars_err err = params ? ARS_OK : ARS_ERR_NOMEM;

    if (!err)
        err = ars_buf_printf(&sql, "INSERT INTO %s (", e->table);
    for (size_t i = 0; !err && i < e->nfields; i++)
        err = ars_buf_printf(&sql, "%s, ", e->fields[i].name);
    if (!err)
        err = ars_buf_adds(&sql, "version) VALUES (");
    for (size_t i = 0; !err && i < e->nfields; i++) {
        err = sql_param(&sql, e->fields[i].kind, (int)i + 1);
        if (!err)
            err = ars_buf_adds(&sql, ", ");
    }
    if (!err)
        err = ars_buf_printf(&sql, "$%zu::bigint) ON CONFLICT (%s) DO UPDATE SET ", e->nfields + 1, e->id_field);
    for (size_t i = 0; !err && i < e->nfields; i++)
        err = ars_buf_printf(&sql, "%s = EXCLUDED.%s, ", e->fields[i].name, e->fields[i].name);
    if (!err)
        err = ars_buf_printf(&sql, "version = EXCLUDED.version WHERE %s.version < EXCLUDED.version", e->table);

    for (size_t i = 0; !err && i < e->nfields; i++) {
        json_object *v = NULL;
        json_object_object_get_ex(rec, e->fields[i].name, &v);
        err = field_encode(e->fields[i].kind, v, &params[i]);
    }
    if (!err) {
        json_object *v = NULL;
        json_object_object_get_ex(rec, "version", &v);
        char num[32];
        snprintf(num, sizeof(num), "%" PRId64, v ? json_object_get_int64(v) : 0);
        params[e->nfields] = strdup(num);
        if (!params[e->nfields])
            err = ARS_ERR_NOMEM;
    }
    if (!err)
        err = ars_pg_exec(c, sql.data, (int)e->nfields + 1, (const char *const *)params, timeout_of(cfg), &res,
                          errbuf, errlen);
    if (!err)
        *applied = strtol(PQcmdTuples(res), NULL, 10) > 0;
    PQclear(res);
    if (params)
        for (size_t i = 0; i <= e->nfields; i++)
            free(params[i]);
    free(params);
    ars_buf_deinit(&sql);
    return err;
}

enum ars_err ars_rec_pg_delete(struct ars_pg_conn *c, const struct ars_config *cfg,
                               const struct ars_entity *e, const char *id,
                               char *errbuf, size_t errlen)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE %s = $1", e->table, e->id_field);
    const char *params[] = { id };
    PGresult *res = NULL;
    enum ars_err err = ars_pg_exec(c, sql, 1, params, timeout_of(cfg), &res, errbuf, errlen);
    PQclear(res);
    return err;
}

enum ars_err ars_rec_pg_get(struct ars_pg_conn *c, const struct ars_config *cfg,
                            const struct ars_entity *e, const char *field, const char *value,
                            json_object **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    if (!ars_entity_field(e, field))
        return ARS_ERR_INVALID;
    struct ars_buf sql;
    ars_buf_init(&sql, SQL_CAP);
    enum ars_err err = ars_buf_adds(&sql, "SELECT ");
    if (!err)
        err = sql_select_list(&sql, e);
    if (!err)
        err = ars_buf_printf(&sql, " FROM %s WHERE %s = $1", e->table, field);
    PGresult *res = NULL;
    const char *params[] = { value };
    if (!err)
        err = ars_pg_exec(c, sql.data, 1, params, timeout_of(cfg), &res, errbuf, errlen);
    if (!err) {
        if (PQntuples(res) == 0)
            err = ARS_ERR_NOTFOUND;
        else if (!(*out = row_to_record(e, res, 0)))
            err = ARS_ERR_NOMEM;
    }
    PQclear(res);
    ars_buf_deinit(&sql);
    return err;
}

enum ars_err ars_rec_pg_list(struct ars_pg_conn *c, const struct ars_config *cfg,
                             const struct ars_entity *e, const char *where, int nparams,
                             const char *const *params, long long limit, long long offset,
                             json_object **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    struct ars_buf sql;
    ars_buf_init(&sql, SQL_CAP);
    enum ars_err err = ars_buf_adds(&sql, "SELECT ");
    if (!err)
        err = sql_select_list(&sql, e);
    if (!err)
        err = ars_buf_printf(&sql, ", count(*) OVER () FROM %s", e->table);
    if (!err && where)
        err = ars_buf_printf(&sql, " WHERE %s", where);
    if (!err)
        err = ars_buf_printf(&sql, " ORDER BY %s DESC, %s LIMIT %lld OFFSET %lld",
                             e->order_field ? e->order_field : e->id_field, e->id_field, limit, offset);
    PGresult *res = NULL;
    if (!err)
        err = ars_pg_exec(c, sql.data, nparams, params, timeout_of(cfg), &res, errbuf, errlen);
    if (!err) {
        json_object *items = json_object_new_array();
        long long total = 0;
        for (int i = 0; i < PQntuples(res); i++) {
            json_object_array_add(items, row_to_record(e, res, i));
            total = strtoll(PQgetvalue(res, i, (int)e->nfields + 1), NULL, 10);
        }
        if (PQntuples(res) == 0 && offset > 0) {
            /* Past the end: count(*) OVER () had no row to ride on. */
            PGresult *cres = NULL;
            char csql[512];
            snprintf(csql, sizeof(csql), "SELECT count(*) FROM %s%s%s", e->table, where ? " WHERE " : "",
                     where ? where : "");
            if (ars_pg_exec(c, csql, nparams, params, timeout_of(cfg), &cres, errbuf, errlen) == ARS_OK)
                total = strtoll(PQgetvalue(cres, 0, 0), NULL, 10);
            PQclear(cres);
        }
        *out = json_object_new_object();
        json_object_object_add(*out, "items", items);
        json_object_object_add(*out, "total", json_object_new_int64(total));
    }
    PQclear(res);
    ars_buf_deinit(&sql);
    return err;
}

enum ars_err ars_rec_pg_count(struct ars_pg_conn *c, const struct ars_config *cfg,
                              const struct ars_entity *e, long long *count,
                              char *errbuf, size_t errlen)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", e->table);
    PGresult *res = NULL;
    enum ars_err err = ars_pg_exec(c, sql, 0, NULL, timeout_of(cfg), &res, errbuf, errlen);
    if (!err)
        *count = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return err;
}

/* ---- the double-write rule ---- */

static void log_mirror(enum ars_log_level level, const struct ars_entity *e, const char *id,
                       const char *msg, const char *detail)
{
    struct ars_logline l;
    ars_log_begin(&l, level, NULL, "pg_mirror");
    ars_log_str(&l, "entity", e->name);
    ars_log_str(&l, "id", id);
    ars_log_str(&l, "msg", msg);
    if (detail)
        ars_log_str(&l, "detail", detail);
    ars_log_end(&l);
}

/* Direct write when nothing is queued ahead of it; a queued write must
 * keep its place, so with a non-empty outbox everything queues. */
static void mirror(struct ars_redis *r, const struct ars_config *cfg, const struct ars_entity *e,
                   const char *op, const char *id, long long version, json_object *rec)
{
    if (!ars_pg_enabled(cfg))
        return;
    long long queued = 1;
    char err_text[512] = "";
    if (ars_outbox_length(r, cfg, &queued) == ARS_OK && queued == 0) {
        struct ars_pg_conn *c;
        enum ars_err err = ars_pg_acquire(cfg, (long)cfg->pg_connect_timeout_ms, &c, err_text, sizeof(err_text));
        if (!err) {
            int applied;
            if (strcmp(op, "delete") == 0)
                err = ars_rec_pg_delete(c, cfg, e, id, err_text, sizeof(err_text));
            else
                err = ars_rec_pg_upsert(c, cfg, e, rec, &applied, err_text, sizeof(err_text));
            ars_pg_release(c, err == ARS_ERR_UNAVAILABLE || err == ARS_ERR_TIMEOUT);
        }
        if (!err)
            return;
        if (err == ARS_ERR_INVALID) {
            /* PostgreSQL rejected the data itself: retrying cannot help. */
            log_mirror(ARS_LOG_ERROR, e, id, "PostgreSQL rejected the record; kept in the outbox dead list",
                       err_text);
            if (ars_outbox_push(r, cfg, e->name, op, id, version, rec, 1) != ARS_OK)
                log_mirror(ARS_LOG_ERROR, e, id, "the record could not be kept in the outbox dead list either: "
                           "PostgreSQL lacks this write until the record is written again", err_text);
            return;
        }
    }
    if (ars_outbox_push(r, cfg, e->name, op, id, version, rec, 0) == ARS_OK)
        log_mirror(ARS_LOG_WARN, e, id, "PostgreSQL write deferred to the outbox", err_text[0] ? err_text : NULL);
    else
        log_mirror(ARS_LOG_ERROR, e, id, "PostgreSQL write failed and the outbox is unreachable", err_text);
}

void ars_rec_mirror_upsert(struct ars_redis *r, const struct ars_config *cfg,
                           const struct ars_entity *e, json_object *rec)
{
    json_object *idv = NULL, *verv = NULL;
    json_object_object_get_ex(rec, e->id_field, &idv);
    json_object_object_get_ex(rec, "version", &verv);
    mirror(r, cfg, e, "upsert", idv ? json_object_get_string(idv) : "", verv ? json_object_get_int64(verv) : 0, rec);
}

void ars_rec_mirror_delete(struct ars_redis *r, const struct ars_config *cfg,
                           const struct ars_entity *e, const char *id, long long version)
{
    mirror(r, cfg, e, "delete", id, version, NULL);
}
