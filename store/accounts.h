/* Upstream accounts and account groups. Runtime state lives in Redis;
 * every change is archived to PostgreSQL (double-write with outbox).
 * Secrets (OAuth tokens, API keys, proxy URLs with passwords) are stored
 * encrypted (AES-256-GCM, bound to the account id). */
#ifndef ARS_STORE_ACCOUNTS_H
#define ARS_STORE_ACCOUNTS_H

#include <json.h>

#include "err.h"

struct ars_redis;
struct ars_config;

/* params: type ("claude-oauth" | "claude-console"), name, and optional
 * description, priority, schedulable, concurrency_limit, groups,
 * base_url, model_mapping, proxy, credentials (object: access_token,
 * refresh_token, expires_at, scopes for OAuth; api_key for console).
 * *rec is the stored record with secrets still encrypted. */
ARS_MUST_USE enum ars_err ars_accounts_create(struct ars_redis *r, const struct ars_config *cfg, json_object *params,
                                 json_object **rec, char *errbuf, size_t errlen);
ARS_MUST_USE enum ars_err ars_accounts_update(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                                 json_object *changes, json_object **rec, char *errbuf, size_t errlen);
ARS_MUST_USE enum ars_err ars_accounts_get(struct ars_redis *r, const struct ars_config *cfg, const char *id,
                              json_object **rec, char *errbuf, size_t errlen);
/* All accounts (Redis), deleted ones excluded unless include_deleted. */
ARS_MUST_USE enum ars_err ars_accounts_list(struct ars_redis *r, const struct ars_config *cfg, int include_deleted,
                               json_object **items, char *errbuf, size_t errlen);
/* Decrypted credentials object of a record (put it). */
ARS_MUST_USE enum ars_err ars_accounts_credentials(const struct ars_config *cfg, json_object *rec, json_object **creds,
                                      char *errbuf, size_t errlen);
/* Decrypted proxy URL ("" when none; free it). */
ARS_MUST_USE enum ars_err ars_accounts_proxy(const struct ars_config *cfg, json_object *rec, char **proxy,
                                char *errbuf, size_t errlen);

ARS_MUST_USE enum ars_err ars_groups_create(struct ars_redis *r, const struct ars_config *cfg, const char *name,
                               const char *description, json_object **rec, char *errbuf, size_t errlen);

#endif
