#include "users.h"
#include "clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "crypto.h"
#include "entities.h"
#include "pg.h"
#include "records.h"
#include "redis.h"

static const struct ars_field user_fields[] = {
    { "username", ARS_FIELD_TEXT },
    { "password_hash", ARS_FIELD_TEXT },
    { "role", ARS_FIELD_TEXT },
    { "disabled", ARS_FIELD_BOOL },
    { "created_at", ARS_FIELD_TS },
    { "updated_at", ARS_FIELD_TS },
    { "last_login_at", ARS_FIELD_TS },
};

const struct ars_entity ars_user_entity = {
    "admin_user", "user", "admin_users", "username", "created_at", user_fields,
    sizeof(user_fields) / sizeof(user_fields[0]), NULL
};

int ars_user_role_ok(const char *role)
{
    return role && (!strcmp(role, "admin") || !strcmp(role, "operator") || !strcmp(role, "viewer"));
}

int ars_username_ok(const char *u)
{
    size_t n = u ? strlen(u) : 0;
    if (n == 0 || n > ARS_USERNAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = u[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '.' || c == '-' || c == '@'))
            return 0;
    }
    return 1;
}


static enum ars_err hash_password(const char *password, char **hash, char *errbuf, size_t errlen)
{
    if (!password || strlen(password) < 8) {
        snprintf(errbuf, errlen, "password: at least 8 characters");
        return ARS_ERR_INVALID;
    }
    enum ars_err err = ars_crypto_password_hash(password, hash);
    if (err == ARS_ERR_TOOBIG)
        snprintf(errbuf, errlen, "password: at most %d bytes", ARS_CRYPTO_MAX_PASSWORD);
    else if (err)
        snprintf(errbuf, errlen, "password hashing failed");
    return err;
}

static enum ars_err write_user(struct ars_redis *r, const struct ars_config *cfg, const char *username,
                               json_object *changes, int create, char *errbuf, size_t errlen)
{
    json_object *rec = NULL;
    enum ars_err err = ars_rec_redis_write(r, cfg, &ars_user_entity, username, changes, create, &rec);
    if (err == ARS_ERR_INVALID)
        snprintf(errbuf, errlen, "admin user %s already exists", username);
    else if (err == ARS_ERR_NOTFOUND)
        snprintf(errbuf, errlen, "admin user %s not found", username);
    else if (err)
        snprintf(errbuf, errlen, "Redis: %s", ars_redis_error(r));
    if (!err)
        ars_rec_mirror_upsert(r, cfg, &ars_user_entity, rec);
    json_object_put(rec);
    return err;
}

/* Redis holds users written by this relay; with PostgreSQL configured a
 * user that exists only there (created by another installation's tools)
 * must be copied into Redis first so "create" and "update" see it. */
static void sync_from_pg(struct ars_redis *r, const struct ars_config *cfg, const char *username)
{
    json_object *rec = NULL;
    char ignore[256];
    if (ars_pg_enabled(cfg) && ars_users_get(r, cfg, username, &rec, ignore, sizeof(ignore)) == ARS_OK)
        json_object_put(rec);
}

enum ars_err ars_users_create(struct ars_redis *r, const struct ars_config *cfg, const char *username,
                              const char *password, const char *role, char *errbuf, size_t errlen)
{
    if (!ars_username_ok(username)) {
        snprintf(errbuf, errlen, "username: 1-%d characters of letters, digits and _ . - @", ARS_USERNAME_MAX);
        return ARS_ERR_INVALID;
    }
    if (!ars_user_role_ok(role)) {
        snprintf(errbuf, errlen, "role: expected admin, operator or viewer");
        return ARS_ERR_INVALID;
    }
    char *hash;
    enum ars_err err = hash_password(password, &hash, errbuf, errlen);
    if (err)
        return err;
    sync_from_pg(r, cfg, username);
    long long now = ars_wall_ms();
    json_object *changes = json_object_new_object();
    json_object_object_add(changes, "username", json_object_new_string(username));
    json_object_object_add(changes, "password_hash", json_object_new_string(hash));
    json_object_object_add(changes, "role", json_object_new_string(role));
    json_object_object_add(changes, "disabled", json_object_new_boolean(0));
    json_object_object_add(changes, "created_at", json_object_new_int64(now));
    json_object_object_add(changes, "updated_at", json_object_new_int64(now));
    free(hash);
    err = write_user(r, cfg, username, changes, 1, errbuf, errlen);
    json_object_put(changes);
    return err;
}

enum ars_err ars_users_set_password(struct ars_redis *r, const struct ars_config *cfg, const char *username,
                                    const char *password, char *errbuf, size_t errlen)
{
    char *hash;
    enum ars_err err = hash_password(password, &hash, errbuf, errlen);
    if (err)
        return err;
    sync_from_pg(r, cfg, username);
    json_object *changes = json_object_new_object();
    json_object_object_add(changes, "password_hash", json_object_new_string(hash));
    json_object_object_add(changes, "updated_at", json_object_new_int64(ars_wall_ms()));
    free(hash);
    err = write_user(r, cfg, username, changes, 0, errbuf, errlen);
    json_object_put(changes);
    return err;
}

enum ars_err ars_users_get(struct ars_redis *r, const struct ars_config *cfg, const char *username,
                           json_object **rec, char *errbuf, size_t errlen)
{
    *rec = NULL;
    enum ars_err err = ARS_ERR_UNAVAILABLE;
    if (ars_pg_enabled(cfg)) {
        struct ars_pg_conn *c;
        err = ars_pg_acquire(cfg, (long)cfg->pg_connect_timeout_ms, &c, errbuf, errlen);
        if (!err) {
            err = ars_rec_pg_get(c, cfg, &ars_user_entity, "username", username, rec, errbuf, errlen);
            ars_pg_release(c, err == ARS_ERR_UNAVAILABLE || err == ARS_ERR_TIMEOUT);
        }
        if (!err)
            ars_ignore(ars_rec_redis_restore(r, cfg, &ars_user_entity, *rec));   /* write-back; the next read tries again */
    }
    /* Not in PG, or PG down: Redis (a write made while PG was down may
     * still wait in the outbox). */
    if (err)
        err = ars_rec_redis_get(r, cfg, &ars_user_entity, username, rec);
    if (err == ARS_ERR_NOTFOUND)
        snprintf(errbuf, errlen, "admin user %s not found", username);
    else if (err)
        snprintf(errbuf, errlen, "neither PostgreSQL nor Redis answered");
    return err;
}
