/* Every entity kept in both stores, by name (for outbox replay). */
#ifndef ARS_STORE_ENTITIES_H
#define ARS_STORE_ENTITIES_H

#include "records.h"

extern const struct ars_entity ars_key_entity;
extern const struct ars_entity ars_account_entity;
extern const struct ars_entity ars_group_entity;
extern const struct ars_entity ars_setting_entity;
extern const struct ars_entity ars_user_entity;

const struct ars_entity *ars_entity_by_name(const char *name);

#endif
