#include "settings.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "entities.h"
#include "pg.h"
#include "records.h"
#include "redis.h"

static const struct ars_field setting_fields[] = {
    { "key", ARS_FIELD_TEXT },
    { "value", ARS_FIELD_JSON },
    { "updated_at", ARS_FIELD_TS },
};

const struct ars_entity ars_setting_entity = {
    "setting", "setting", "settings", "key", "updated_at", setting_fields,
    sizeof(setting_fields) / sizeof(setting_fields[0]), NULL
};

static int key_ok(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > ARS_SETTING_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static json_object *take_value(json_object *rec)
{
    json_object *v = NULL;
    json_object_object_get_ex(rec, "value", &v);
    return json_object_get(v);
}

enum ars_err ars_settings_get(struct ars_redis *r, const struct ars_config *cfg, const char *key,
                              json_object **value, char *errbuf, size_t errlen)
{
    *value = NULL;
    if (!key_ok(key)) {
        snprintf(errbuf, errlen, "setting key must be 1-%d characters of a-z 0-9 _ . -", ARS_SETTING_KEY_MAX);
        return ARS_ERR_INVALID;
    }
    json_object *rec = NULL;
    enum ars_err err = ARS_ERR_UNAVAILABLE;
    if (ars_pg_enabled(cfg)) {
        struct ars_pg_conn *c;
        err = ars_pg_acquire(cfg, (long)cfg->pg_connect_timeout_ms, &c, errbuf, errlen);
        if (!err) {
            err = ars_rec_pg_get(c, cfg, &ars_setting_entity, "key", key, &rec, errbuf, errlen);
            ars_pg_release(c, err == ARS_ERR_UNAVAILABLE || err == ARS_ERR_TIMEOUT);
        }
        if (!err)
            ars_ignore(ars_rec_redis_restore(r, cfg, &ars_setting_entity, rec));   /* write-back; the next read tries again */
    }
    /* Not in PG, or PG down: Redis (a write made while PG was down may
     * still wait in the outbox). */
    if (err)
        err = ars_rec_redis_get(r, cfg, &ars_setting_entity, key, &rec);
    if (err == ARS_ERR_NOTFOUND)
        snprintf(errbuf, errlen, "setting %s is not set", key);
    else if (err)
        snprintf(errbuf, errlen, "neither PostgreSQL nor Redis answered");
    if (!err)
        *value = take_value(rec);
    json_object_put(rec);
    return err;
}

enum ars_err ars_settings_set(struct ars_redis *r, const struct ars_config *cfg, const char *key,
                              json_object *value, char *errbuf, size_t errlen)
{
    if (!key_ok(key)) {
        snprintf(errbuf, errlen, "setting key must be 1-%d characters of a-z 0-9 _ . -", ARS_SETTING_KEY_MAX);
        return ARS_ERR_INVALID;
    }
    size_t n;
    json_object_to_json_string_length(value, JSON_C_TO_STRING_PLAIN, &n);
    if (n > ARS_SETTING_VALUE_MAX) {
        snprintf(errbuf, errlen, "setting %s: value larger than %d bytes", key, ARS_SETTING_VALUE_MAX);
        return ARS_ERR_TOOBIG;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_object *changes = json_object_new_object();
    json_object_object_add(changes, "key", json_object_new_string(key));
    json_object_object_add(changes, "value", json_object_get(value));
    json_object_object_add(changes, "updated_at",
                           json_object_new_int64((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000));
    json_object *rec = NULL;
    enum ars_err err = ars_rec_redis_write(r, cfg, &ars_setting_entity, key, changes, 2, &rec);
    json_object_put(changes);
    if (err) {
        snprintf(errbuf, errlen, "Redis: %s", ars_redis_error(r));
        return err;
    }
    ars_rec_mirror_upsert(r, cfg, &ars_setting_entity, rec);
    json_object_put(rec);
    return ARS_OK;
}
