/* System settings (OEM name/logo, products/plans, webhooks): one JSON
 * value per key. PostgreSQL is the record when configured: reads ask it
 * first and write the answer back to Redis; Redis serves when PostgreSQL
 * is absent or down. Writes go to both (the outbox covers PG outages). */
#ifndef ARS_STORE_SETTINGS_H
#define ARS_STORE_SETTINGS_H

#include <json.h>

#include "err.h"

struct ars_redis;
struct ars_config;

#define ARS_SETTING_KEY_MAX 100
#define ARS_SETTING_VALUE_MAX (1024 * 1024)

/* *value is the stored JSON value (put it); ARS_ERR_NOTFOUND when unset. */
ARS_MUST_USE enum ars_err ars_settings_get(struct ars_redis *r, const struct ars_config *cfg, const char *key,
                              json_object **value, char *errbuf, size_t errlen);
ARS_MUST_USE enum ars_err ars_settings_set(struct ars_redis *r, const struct ars_config *cfg, const char *key,
                              json_object *value, char *errbuf, size_t errlen);

#endif
