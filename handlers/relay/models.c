/* GET .../v1/models: the models this key may use, in Anthropic's list
 * shape; the list comes from the pricing table (models marked "list"),
 * minus the key's blacklist. */
#include <json.h>
#include <string.h>

#include "auth.h"
#include "handlers.h"
#include "pricing.h"
#include "response.h"

/* Models sold before this date sort with a plausible created_at; the
 * pricing file does not carry release dates, and clients only display it. */
#define LISTED_CREATED_AT "2025-01-01T00:00:00Z"
#define LISTED_CREATED_UNIX 1735689600

/* The listable models the key may use, or NULL after answering an error. */
static json_object *allowed_models(struct ars_request *req, unsigned family)
{
    struct ars_key *key;
    if (ars_auth_key(req, family, &key))
        return NULL;
    json_object *all = NULL;
    const struct ars_pricing *p = ars_pricing_current();
    if (!p || ars_pricing_models_json(p, &all) != ARS_OK) {
        ars_resp_error(req, 500, NULL, "the model list is not loaded (pricing file)");
        return NULL;
    }
    json_object *allowed = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(all); i++) {
        json_object *m = json_object_array_get_idx(all, i), *id;
        json_object_object_get_ex(m, "id", &id);
        if (!ars_key_model_blocked(key, json_object_get_string(id)))
            json_object_array_add(allowed, json_object_get(m));
    }
    json_object_put(all);
    return allowed;
}

void ars_handle_models(struct ars_request *req)
{
    json_object *all = allowed_models(req, ARS_PERM_CLAUDE);
    if (!all)
        return;
    json_object *data = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(all); i++) {
        json_object *m = json_object_array_get_idx(all, i), *id, *name;
        json_object_object_get_ex(m, "id", &id);
        json_object_object_get_ex(m, "display_name", &name);
        json_object *out = json_object_new_object();
        json_object_object_add(out, "type", json_object_new_string("model"));
        json_object_object_add(out, "id", json_object_get(id));
        json_object_object_add(out, "display_name", json_object_get(name));
        json_object_object_add(out, "created_at", json_object_new_string(LISTED_CREATED_AT));
        json_object_array_add(data, out);
    }
    json_object_put(all);
    json_object *root = json_object_new_object();
    size_t n = json_object_array_length(data);
    json_object *first = n ? json_object_object_get(json_object_array_get_idx(data, 0), "id") : NULL;
    json_object *last = n ? json_object_object_get(json_object_array_get_idx(data, n - 1), "id") : NULL;
    json_object_object_add(root, "data", data);
    json_object_object_add(root, "has_more", json_object_new_boolean(0));
    json_object_object_add(root, "first_id", json_object_get(first));
    json_object_object_add(root, "last_id", json_object_get(last));
    ars_resp_json(req, 200, root);
    json_object_put(root);
}

/* GET /openai/.../v1/models: the same list in OpenAI's shape. */
void ars_handle_openai_models(struct ars_request *req)
{
    json_object *all = allowed_models(req, ARS_PERM_OPENAI);
    if (!all)
        return;
    json_object *data = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(all); i++) {
        json_object *id;
        json_object_object_get_ex(json_object_array_get_idx(all, i), "id", &id);
        json_object *out = json_object_new_object();
        json_object_object_add(out, "id", json_object_get(id));
        json_object_object_add(out, "object", json_object_new_string("model"));
        json_object_object_add(out, "created", json_object_new_int64(LISTED_CREATED_UNIX));
        json_object_object_add(out, "owned_by", json_object_new_string("anthropic"));
        json_object_array_add(data, out);
    }
    json_object_put(all);
    json_object *root = json_object_new_object();
    json_object_object_add(root, "object", json_object_new_string("list"));
    json_object_object_add(root, "data", data);
    ars_resp_json(req, 200, root);
    json_object_put(root);
}

/* HEAD/GET / and /api/: Claude Code probes the base URL before it starts. */
void ars_handle_probe(struct ars_request *req)
{
    static const char body[] = "{\"status\":\"ok\",\"service\":\"ai-relay\"}";
    ars_resp_send(req, 200, "application/json", body, sizeof(body) - 1);
}
