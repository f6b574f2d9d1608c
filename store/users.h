/* Admin users of the console and admin API (username, scrypt password
 * hash, role). Kept like settings: PostgreSQL first when configured,
 * Redis otherwise (so the first admin can live in Redis alone). */
#ifndef ARS_STORE_USERS_H
#define ARS_STORE_USERS_H

#include <json.h>

#include "err.h"

struct ars_redis;
struct ars_config;

#define ARS_USERNAME_MAX 64

/* "admin", "operator", "viewer". */
int ars_user_role_ok(const char *role);
int ars_username_ok(const char *username);

ARS_MUST_USE enum ars_err ars_users_create(struct ars_redis *r, const struct ars_config *cfg, const char *username,
                              const char *password, const char *role, char *errbuf, size_t errlen);
ARS_MUST_USE enum ars_err ars_users_set_password(struct ars_redis *r, const struct ars_config *cfg, const char *username,
                                    const char *password, char *errbuf, size_t errlen);
/* The record (password_hash included: never send it to a client). */
ARS_MUST_USE enum ars_err ars_users_get(struct ars_redis *r, const struct ars_config *cfg, const char *username,
                           json_object **rec, char *errbuf, size_t errlen);

#endif
