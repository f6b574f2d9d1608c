#include "accounts.h"
#include "clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis.h>

#include "config.h"
#include "crypto.h"
#include "entities.h"
#include "log.h"
#include "pg.h"
#include "records.h"
#include "redis.h"

/* Restoring accounts and groups from PostgreSQL after Redis lost them:
 * rows read per query, the most restored per entity (far above any real
 * pool), and how long the restore lock is held, which is also the
 * shortest time between two restore attempts of a cluster while Redis
 * has no accounts (so a pool that really has none costs PostgreSQL one
 * query a minute, not one per account-list load). */
#define RESTORE_PAGE        500
#define RESTORE_MAX_ROWS    100000
#define RESTORE_LOCK_MS     60000

static const struct ars_field account_fields[] = {
    { "id", ARS_FIELD_TEXT },
    { "type", ARS_FIELD_TEXT },
    { "name", ARS_FIELD_TEXT },
    { "description", ARS_FIELD_TEXT },
    { "status", ARS_FIELD_TEXT },
    { "priority", ARS_FIELD_INT },
    { "schedulable", ARS_FIELD_BOOL },
    { "concurrency_limit", ARS_FIELD_INT },
    { "groups", ARS_FIELD_JSON },
    { "base_url", ARS_FIELD_TEXT },
    { "model_mapping", ARS_FIELD_JSON },
    { "proxy", ARS_FIELD_TEXT },
    { "credentials", ARS_FIELD_TEXT },
    { "expires_at", ARS_FIELD_TS },
    { "created_at", ARS_FIELD_TS },
    { "updated_at", ARS_FIELD_TS },
    { "deleted", ARS_FIELD_BOOL },
};

const struct ars_entity ars_account_entity = {
    "account", "account", "accounts", "id", "created_at", account_fields,
    sizeof(account_fields) / sizeof(account_fields[0]), NULL
};

static const struct ars_field group_fields[] = {
    { "id", ARS_FIELD_TEXT },
    { "name", ARS_FIELD_TEXT },
    { "description", ARS_FIELD_TEXT },
    { "members", ARS_FIELD_JSON },
    { "created_at", ARS_FIELD_TS },
    { "updated_at", ARS_FIELD_TS },
};

const struct ars_entity ars_group_entity = {
    "account_group", "group", "account_groups", "id", "created_at", group_fields,
    sizeof(group_fields) / sizeof(group_fields[0]), NULL
};


static json_object *member(json_object *o, const char *name)
{
    json_object *v = NULL;
    json_object_object_get_ex(o, name, &v);
    return v;
}

static int is_type(json_object *v, json_type t)
{
    return v && json_object_is_type(v, t);
}

/* Checks the editable members; errbuf names the first bad one. */
static enum ars_err validate(json_object *p, int create, char *errbuf, size_t errlen)
{
    static const char *const known[] = { "type", "name", "description", "status", "priority", "schedulable",
                                         "concurrency_limit", "groups", "base_url", "model_mapping", "proxy",
                                         "credentials", "expires_at", NULL };
    if (!is_type(p, json_type_object)) {
        snprintf(errbuf, errlen, "expected a JSON object");
        return ARS_ERR_INVALID;
    }
    json_object_object_foreach(p, name, unused) {
        int ok = 0;
        for (int i = 0; known[i]; i++)
            ok |= strcmp(known[i], name) == 0;
        if (!ok) {
            snprintf(errbuf, errlen, "%s: unknown or read-only field", name);
            return ARS_ERR_INVALID;
        }
        (void)unused;
    }
    json_object *v = member(p, "type");
    if (create && !v) {
        snprintf(errbuf, errlen, "type: required (claude-oauth or claude-console)");
        return ARS_ERR_INVALID;
    }
    if (v && (!create || !is_type(v, json_type_string) ||
              (strcmp(json_object_get_string(v), "claude-oauth") && strcmp(json_object_get_string(v), "claude-console")))) {
        snprintf(errbuf, errlen, create ? "type: expected claude-oauth or claude-console" : "type: cannot be changed");
        return ARS_ERR_INVALID;
    }
    v = member(p, "name");
    if ((create && !v) || (v && (!is_type(v, json_type_string) || json_object_get_string_len(v) < 1 ||
                                 json_object_get_string_len(v) > 100))) {
        snprintf(errbuf, errlen, "name: required, 1-100 characters");
        return ARS_ERR_INVALID;
    }
    static const char *const texts[] = { "description", "status", "base_url", "proxy", NULL };
    for (int i = 0; texts[i]; i++) {
        v = member(p, texts[i]);
        if (v && (!is_type(v, json_type_string) || json_object_get_string_len(v) > 2000)) {
            snprintf(errbuf, errlen, "%s: expected a string of at most 2000 characters", texts[i]);
            return ARS_ERR_INVALID;
        }
    }
    v = member(p, "base_url");
    if (v && json_object_get_string_len(v) && strncmp(json_object_get_string(v), "http://", 7) &&
        strncmp(json_object_get_string(v), "https://", 8)) {
        snprintf(errbuf, errlen, "base_url: expected an http:// or https:// URL");
        return ARS_ERR_INVALID;
    }
    v = member(p, "proxy");
    if (v && json_object_get_string_len(v) && strncmp(json_object_get_string(v), "http://", 7) &&
        strncmp(json_object_get_string(v), "https://", 8) && strncmp(json_object_get_string(v), "socks5://", 9) &&
        strncmp(json_object_get_string(v), "socks5h://", 10)) {
        snprintf(errbuf, errlen, "proxy: expected an http://, https://, socks5:// or socks5h:// URL");
        return ARS_ERR_INVALID;
    }
    v = member(p, "priority");
    if (v && (!is_type(v, json_type_int) || json_object_get_int64(v) < 1 || json_object_get_int64(v) > 100)) {
        snprintf(errbuf, errlen, "priority: expected an integer from 1 (preferred) to 100");
        return ARS_ERR_INVALID;
    }
    v = member(p, "concurrency_limit");
    if (v && (!is_type(v, json_type_int) || json_object_get_int64(v) < 0 || json_object_get_int64(v) > 100000)) {
        snprintf(errbuf, errlen, "concurrency_limit: expected an integer from 0 (no limit) to 100000");
        return ARS_ERR_INVALID;
    }
    v = member(p, "schedulable");
    if (v && !is_type(v, json_type_boolean)) {
        snprintf(errbuf, errlen, "schedulable: expected true or false");
        return ARS_ERR_INVALID;
    }
    v = member(p, "groups");
    if (v && !is_type(v, json_type_array)) {
        snprintf(errbuf, errlen, "groups: expected an array of group ids");
        return ARS_ERR_INVALID;
    }
    v = member(p, "model_mapping");
    if (v && !is_type(v, json_type_object)) {
        snprintf(errbuf, errlen, "model_mapping: expected an object {requested: upstream}");
        return ARS_ERR_INVALID;
    }
    v = member(p, "credentials");
    if (v && !is_type(v, json_type_object)) {
        snprintf(errbuf, errlen, "credentials: expected an object");
        return ARS_ERR_INVALID;
    }
    v = member(p, "expires_at");
    if (v && !is_type(v, json_type_int) && !is_type(v, json_type_null)) {
        snprintf(errbuf, errlen, "expires_at: expected epoch milliseconds or null");
        return ARS_ERR_INVALID;
    }
    return ARS_OK;
}

/* Replaces plaintext secrets in fields with their encrypted form. The
 * account id is the AAD: a blob copied to another account won't decrypt. */
static enum ars_err seal_secrets(const struct ars_config *cfg, const char *id, json_object *fields,
                                 char *errbuf, size_t errlen)
{
    json_object *creds = member(fields, "credentials");
    if (creds) {
        const char *plain = json_object_to_json_string_ext(creds, JSON_C_TO_STRING_PLAIN);
        char *blob;
        if (ars_crypto_encrypt(&cfg->keys, id, plain, strlen(plain), &blob)) {
            snprintf(errbuf, errlen, "credentials: encryption failed");
            return ARS_ERR_INVALID;
        }
        json_object_object_add(fields, "credentials", json_object_new_string(blob));
        free(blob);
    }
    json_object *proxy = member(fields, "proxy");
    if (proxy && json_object_get_string_len(proxy)) {
        char *blob;
        if (ars_crypto_encrypt(&cfg->keys, id, json_object_get_string(proxy),
                               (size_t)json_object_get_string_len(proxy), &blob)) {
            snprintf(errbuf, errlen, "proxy: encryption failed");
            return ARS_ERR_INVALID;
        }
        json_object_object_add(fields, "proxy", json_object_new_string(blob));
        free(blob);
    }
    return ARS_OK;
}

static enum ars_err write_account(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                                  json_object *fields, int create, json_object **rec, char *errbuf, size_t errlen)
{
    enum ars_err err = seal_secrets(cfg, id, fields, errbuf, errlen);
    if (err)
        return err;
    json_object_object_add(fields, "updated_at", json_object_new_int64(ars_wall_ms()));
    err = ars_rec_redis_write(r, cfg, &ars_account_entity, id, fields, create, rec);
    if (err == ARS_ERR_NOTFOUND)
        snprintf(errbuf, errlen, "account %s not found", id);
    else if (err)
        snprintf(errbuf, errlen, "Redis: %s", ars_redis_error(r));
    if (!err)
        ars_rec_mirror_upsert(r, cfg, &ars_account_entity, *rec);
    return err;
}

enum ars_err ars_accounts_create(struct ars_redis *r, const struct ars_config *cfg, json_object *params,
                                 json_object **rec, char *errbuf, size_t errlen)
{
    *rec = NULL;
    enum ars_err err = validate(params, 1, errbuf, errlen);
    if (err)
        return err;
    char id[ARS_UUID_LEN + 1];
    if (ars_crypto_uuid_v4(id))
        return ARS_ERR_UNAVAILABLE;
    json_object *fields = NULL;
    json_object_deep_copy(params, &fields, NULL);
    if (!fields)
        return ARS_ERR_NOMEM;
    json_object_object_add(fields, "id", json_object_new_string(id));
    json_object_object_add(fields, "created_at", json_object_new_int64(ars_wall_ms()));
    json_object_object_add(fields, "deleted", json_object_new_boolean(0));
    static const struct { const char *name; json_type t; } defaults[] = {
        { "description", json_type_string }, { "status", json_type_string }, { "priority", json_type_int },
        { "schedulable", json_type_boolean }, { "concurrency_limit", json_type_int }, { "groups", json_type_array },
        { "base_url", json_type_string }, { "model_mapping", json_type_object }, { "proxy", json_type_string },
        { "credentials", json_type_object },
    };
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        if (member(fields, defaults[i].name))
            continue;
        json_object *v = NULL;
        switch (defaults[i].t) {
        case json_type_string:
            v = json_object_new_string(strcmp(defaults[i].name, "status") == 0 ? "active" : "");
            break;
        case json_type_int:
            v = json_object_new_int64(strcmp(defaults[i].name, "priority") == 0 ? 50 : 0);
            break;
        case json_type_boolean: v = json_object_new_boolean(1); break;
        case json_type_array: v = json_object_new_array(); break;
        default: v = json_object_new_object(); break;
        }
        json_object_object_add(fields, defaults[i].name, v);
    }
    err = write_account(r, cfg, id, fields, 1, rec, errbuf, errlen);
    json_object_put(fields);
    return err;
}

enum ars_err ars_accounts_update(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                                 json_object *changes, json_object **rec, char *errbuf, size_t errlen)
{
    *rec = NULL;
    enum ars_err err = validate(changes, 0, errbuf, errlen);
    if (err)
        return err;
    json_object *fields = NULL;
    json_object_deep_copy(changes, &fields, NULL);
    if (!fields)
        return ARS_ERR_NOMEM;
    err = write_account(r, cfg, id, fields, 0, rec, errbuf, errlen);
    json_object_put(fields);
    return err;
}

enum ars_err ars_accounts_get(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                              json_object **rec, char *errbuf, size_t errlen)
{
    enum ars_err err = ars_rec_redis_get(r, cfg, &ars_account_entity, id, rec);
    if (err == ARS_ERR_NOTFOUND)
        snprintf(errbuf, errlen, "account %s not found", id);
    else if (err)
        snprintf(errbuf, errlen, "Redis: %s", ars_redis_error(r));
    return err;
}

/* Copies every row of entity e from PostgreSQL into Redis (versioned:
 * a newer record already in Redis stays). *restored counts the rows. */
static enum ars_err restore_entity(struct ars_redis *r, const struct ars_config *cfg, struct ars_pg_conn *c,
                                   const struct ars_entity *e, long long *restored, char *errbuf, size_t errlen)
{
    *restored = 0;
    for (long long offset = 0; offset < RESTORE_MAX_ROWS; offset += RESTORE_PAGE) {
        json_object *page = NULL;
        enum ars_err err = ars_rec_pg_list(c, cfg, e, NULL, 0, NULL, RESTORE_PAGE, offset, &page, errbuf, errlen);
        if (err)
            return err;
        json_object *items = member(page, "items");
        size_t n = items ? json_object_array_length(items) : 0;
        for (size_t i = 0; i < n && !err; i++) {
            err = ars_rec_redis_restore(r, cfg, e, json_object_array_get_idx(items, i));
            if (!err)
                (*restored)++;
        }
        json_object_put(page);
        if (err) {
            snprintf(errbuf, errlen, "Redis: %s", ars_redis_error(r));
            return err;
        }
        if (n < RESTORE_PAGE)
            break;
    }
    return ARS_OK;
}

/* Redis holds no account at all, which is what a Redis restart without
 * persistence leaves behind: API keys come back from PostgreSQL one
 * lookup at a time, accounts must come back as a whole list. One process
 * of the cluster restores them (and the groups) under a Redis lock;
 * the others see them at their next account-list load. Idempotent, so a
 * lock that expires mid-restore costs a second copy, never damage.
 * *restored: accounts restored (0 when PG has none, the lock is taken or
 * PG is off). */
static enum ars_err restore_from_pg(struct ars_redis *r, const struct ars_config *cfg, long long *restored)
{
    *restored = 0;
    if (!ars_pg_enabled(cfg))
        return ARS_OK;
    char lock[512], px[24];
    snprintf(lock, sizeof(lock), "%slock:restore:accounts", cfg->redis_key_prefix);
    snprintf(px, sizeof(px), "%d", RESTORE_LOCK_MS);
    const char *argv[] = { "SET", lock, "1", "NX", "PX", px };
    redisReply *rep = NULL;
    enum ars_err err = ars_redis_cmd(r, cfg, &rep, 6, argv, NULL);
    if (err)
        return err;
    int mine = rep->type == REDIS_REPLY_STATUS;
    freeReplyObject(rep);
    if (!mine)
        return ARS_OK;
    char errbuf[256] = "";
    struct ars_pg_conn *c = NULL;
    long long groups = 0;
    err = ars_pg_acquire(cfg, (long)cfg->pg_connect_timeout_ms, &c, errbuf, sizeof(errbuf));
    if (!err) {
        err = restore_entity(r, cfg, c, &ars_account_entity, restored, errbuf, sizeof(errbuf));
        if (!err)
            err = restore_entity(r, cfg, c, &ars_group_entity, &groups, errbuf, sizeof(errbuf));
        ars_pg_release(c, err == ARS_ERR_UNAVAILABLE || err == ARS_ERR_TIMEOUT);
    }
    if (!err && *restored == 0 && groups == 0)
        return ARS_OK;   /* PostgreSQL has none either: a new installation, nothing to say */
    struct ars_logline l;
    ars_log_begin(&l, err ? ARS_LOG_ERROR : ARS_LOG_WARN, NULL, "accounts_restored");
    ars_log_str(&l, "msg", "Redis held no accounts: restored from PostgreSQL (was Redis restarted without persistence?)");
    ars_log_int(&l, "accounts", *restored);
    ars_log_int(&l, "groups", groups);
    if (err)
        ars_log_str(&l, "error", errbuf);
    ars_log_end(&l);
    if (err) {
        /* Let the next load (of any process) try again. */
        const char *del[] = { "DEL", lock };
        if (ars_redis_cmd(r, cfg, &rep, 2, del, NULL) == ARS_OK)
            freeReplyObject(rep);
    }
    return err;
}

enum ars_err ars_accounts_list(struct ars_redis *r, const struct ars_config *cfg, int include_deleted,
                               json_object **items, char *errbuf, size_t errlen)
{
    *items = NULL;
    json_object *ids;
    enum ars_err err = ars_rec_redis_ids(r, cfg, &ars_account_entity, 0, &ids);
    if (err) {
        snprintf(errbuf, errlen, "Redis: %s", ars_redis_error(r));
        return err;
    }
    long long restored = 0;
    if (json_object_array_length(ids) == 0 && restore_from_pg(r, cfg, &restored) == ARS_OK && restored > 0) {
        json_object_put(ids);
        err = ars_rec_redis_ids(r, cfg, &ars_account_entity, 0, &ids);
        if (err) {
            snprintf(errbuf, errlen, "Redis: %s", ars_redis_error(r));
            return err;
        }
    }
    *items = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(ids); i++) {
        json_object *rec;
        err = ars_rec_redis_get(r, cfg, &ars_account_entity,
                                json_object_get_string(json_object_array_get_idx(ids, i)), &rec);
        if (err == ARS_ERR_NOTFOUND) {
            err = ARS_OK;
            continue;
        }
        if (err)
            break;
        json_object *del = member(rec, "deleted");
        if (!include_deleted && del && json_object_get_boolean(del))
            json_object_put(rec);
        else
            json_object_array_add(*items, rec);
    }
    json_object_put(ids);
    if (err) {
        snprintf(errbuf, errlen, "Redis: %s", ars_redis_error(r));
        json_object_put(*items);
        *items = NULL;
    }
    return err;
}

static enum ars_err open_secret(const struct ars_config *cfg, json_object *rec, const char *field, char **plain,
                                char *errbuf, size_t errlen)
{
    *plain = NULL;
    json_object *id = member(rec, "id"), *blob = member(rec, field);
    if (!blob || json_object_get_string_len(blob) == 0) {
        *plain = strdup("");
        return *plain ? ARS_OK : ARS_ERR_NOMEM;
    }
    size_t n;
    if (ars_crypto_decrypt(&cfg->keys, id ? json_object_get_string(id) : "", json_object_get_string(blob), plain,
                           &n)) {
        snprintf(errbuf, errlen, "%s: cannot decrypt (was ENCRYPTION_KEY changed?)", field);
        return ARS_ERR_INVALID;
    }
    return ARS_OK;
}

enum ars_err ars_accounts_credentials(const struct ars_config *cfg, json_object *rec, json_object **creds,
                                      char *errbuf, size_t errlen)
{
    *creds = NULL;
    char *plain;
    enum ars_err err = open_secret(cfg, rec, "credentials", &plain, errbuf, errlen);
    if (err)
        return err;
    *creds = plain[0] ? json_tokener_parse(plain) : json_object_new_object();
    free(plain);
    if (!*creds) {
        snprintf(errbuf, errlen, "credentials: not JSON after decryption");
        return ARS_ERR_INVALID;
    }
    return ARS_OK;
}

enum ars_err ars_accounts_proxy(const struct ars_config *cfg, json_object *rec, char **proxy,
                                char *errbuf, size_t errlen)
{
    return open_secret(cfg, rec, "proxy", proxy, errbuf, errlen);
}

enum ars_err ars_groups_create(struct ars_redis *r, const struct ars_config *cfg, const char *name,
                               const char *description, json_object **rec, char *errbuf, size_t errlen)
{
    *rec = NULL;
    if (!name || !*name || strlen(name) > 100) {
        snprintf(errbuf, errlen, "name: required, 1-100 characters");
        return ARS_ERR_INVALID;
    }
    char id[ARS_UUID_LEN + 1];
    if (ars_crypto_uuid_v4(id))
        return ARS_ERR_UNAVAILABLE;
    long long now = ars_wall_ms();
    json_object *fields = json_object_new_object();
    json_object_object_add(fields, "id", json_object_new_string(id));
    json_object_object_add(fields, "name", json_object_new_string(name));
    json_object_object_add(fields, "description", json_object_new_string(description ? description : ""));
    json_object_object_add(fields, "members", json_object_new_array());
    json_object_object_add(fields, "created_at", json_object_new_int64(now));
    json_object_object_add(fields, "updated_at", json_object_new_int64(now));
    enum ars_err err = ars_rec_redis_write(r, cfg, &ars_group_entity, id, fields, 1, rec);
    json_object_put(fields);
    if (err) {
        snprintf(errbuf, errlen, "Redis: %s", ars_redis_error(r));
        return err;
    }
    ars_rec_mirror_upsert(r, cfg, &ars_group_entity, *rec);
    return ARS_OK;
}
