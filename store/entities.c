#include "entities.h"

#include <string.h>

static const struct ars_entity *const all[] = {
    &ars_key_entity, &ars_account_entity, &ars_group_entity, &ars_setting_entity, &ars_user_entity,
};

const struct ars_entity *ars_entity_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (strcmp(all[i]->name, name) == 0)
            return all[i];
    return NULL;
}
