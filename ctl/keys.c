/* ai-relayctl keys: client API keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "ctl.h"
#include "keys.h"

static void strip_secret_fields(json_object *rec)
{
    json_object_object_del(rec, "key_hash");
}

static int print_record(struct ctl *c, json_object *rec)
{
    strip_secret_fields(rec);
    ctl_print_json(rec);
    (void)c;
    return CTL_OK;
}

static int keys_create(struct ctl *c, int argc, char **argv)
{
    const char *name = ctl_take_option(&argc, argv, "--name");
    const char *set = ctl_take_option(&argc, argv, "--set");
    if (!name)
        return ctl_fail(CTL_USAGE, "keys create: --name NAME is required");
    json_object *params = set ? ctl_parse_object(set, "--set") : json_object_new_object();
    if (!params)
        return CTL_USAGE;
    json_object_object_add(params, "name", json_object_new_string(name));
    json_object *rec;
    char key[ARS_API_KEY_LEN + 1], err[512];
    enum ars_err e = ars_keys_create(c->redis, c->cfg, params, &rec, key, err, sizeof(err));
    json_object_put(params);
    if (e)
        return ctl_fail(ctl_code_for(e), "keys create: %s", err);
    json_object *id;
    json_object_object_get_ex(rec, "id", &id);
    if (c->json_output) {
        strip_secret_fields(rec);
        json_object_object_add(rec, "api_key", json_object_new_string(key));
        ctl_print_json(rec);
    } else {
        printf("id: %s\nkey: %s\n(the key is shown only now; store it safely)\n", json_object_get_string(id), key);
    }
    json_object_put(rec);
    return CTL_OK;
}

static int keys_list(struct ctl *c, int argc, char **argv)
{
    struct ars_key_filter f = { 0 };
    f.search = ctl_take_option(&argc, argv, "--search");
    f.tag = ctl_take_option(&argc, argv, "--tag");
    f.status = ctl_take_option(&argc, argv, "--status");
    const char *page = ctl_take_option(&argc, argv, "--page");
    const char *size = ctl_take_option(&argc, argv, "--page-size");
    f.page = page ? strtoll(page, NULL, 10) : 1;
    f.page_size = size ? strtoll(size, NULL, 10) : 20;
    json_object *out;
    char err[512] = "";
    enum ars_err e = ars_keys_list(c->redis, c->cfg, &f, &out, err, sizeof(err));
    if (e)
        return ctl_fail(ctl_code_for(e), "keys list: %s", err);
    json_object *items;
    json_object_object_get_ex(out, "items", &items);
    for (size_t i = 0; i < json_object_array_length(items); i++)
        strip_secret_fields(json_object_array_get_idx(items, i));
    if (c->json_output) {
        ctl_print_json(out);
    } else {
        json_object *total, *source;
        json_object_object_get_ex(out, "total", &total);
        json_object_object_get_ex(out, "source", &source);
        printf("%-36s  %-24s  %-8s  %s\n", "id", "name", "status", "key");
        for (size_t i = 0; i < json_object_array_length(items); i++) {
            json_object *k = json_object_array_get_idx(items, i), *v;
            const char *id = "", *name = "", *pre = "", *last = "";
            int enabled = 0, deleted = 0;
            if (json_object_object_get_ex(k, "id", &v)) id = json_object_get_string(v);
            if (json_object_object_get_ex(k, "name", &v)) name = json_object_get_string(v);
            if (json_object_object_get_ex(k, "key_prefix", &v)) pre = json_object_get_string(v);
            if (json_object_object_get_ex(k, "key_last4", &v)) last = json_object_get_string(v);
            if (json_object_object_get_ex(k, "enabled", &v)) enabled = json_object_get_boolean(v);
            if (json_object_object_get_ex(k, "deleted", &v)) deleted = json_object_get_boolean(v);
            printf("%-36s  %-24.24s  %-8s  %s...%s\n", id, name, deleted ? "deleted" : enabled ? "active" : "disabled",
                   pre, last);
        }
        printf("%lld key(s) match (read from %s)\n", (long long)json_object_get_int64(total),
               json_object_get_string(source));
    }
    json_object_put(out);
    return CTL_OK;
}

int ctl_keys(struct ctl *c, int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        printf("usage: ai-relayctl keys create --name NAME [--set JSON]\n"
               "       ai-relayctl keys list [--search S] [--tag T] [--status active|disabled|deleted|all]\n"
               "                             [--page N] [--page-size N]\n"
               "       ai-relayctl keys get ID | update ID --set JSON\n"
               "       ai-relayctl keys enable ID | disable ID | delete ID | restore ID | purge ID\n"
               "JSON fields: description, enabled, expiration_mode (fixed|activation), expires_at (epoch ms),\n"
               "activation_amount, activation_unit (days|hours), permissions ([\"claude\",\"openai\"]),\n"
               "restricted_models, allowed_clients ([\"claude_code\"]), concurrency_limit,\n"
               "rate_limit_window_min, rate_limit_requests, rate_limit_tokens, rate_limit_cost_micros,\n"
               "daily_cost_limit_micros, weekly_cost_limit_micros, weekly_reset_day (1-7),\n"
               "weekly_reset_hour, total_cost_limit_micros, account_binding, tags, owner.\n");
        return argc < 2 ? CTL_USAGE : CTL_OK;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "create"))
        return keys_create(c, argc - 1, argv + 1);
    if (!strcmp(sub, "list"))
        return keys_list(c, argc - 1, argv + 1);
    const char *set = ctl_take_option(&argc, argv, "--set");
    if (argc < 3)
        return ctl_fail(CTL_USAGE, "keys %s: expected a key id", sub);
    const char *id = argv[2];
    char err[512] = "";
    enum ars_err e;
    json_object *rec = NULL;
    if (!strcmp(sub, "get")) {
        e = ars_keys_get(c->redis, c->cfg, id, &rec, err, sizeof(err));
    } else if (!strcmp(sub, "update") || !strcmp(sub, "enable") || !strcmp(sub, "disable")) {
        json_object *changes;
        if (!strcmp(sub, "update")) {
            if (!set)
                return ctl_fail(CTL_USAGE, "keys update: --set JSON is required");
            if (!(changes = ctl_parse_object(set, "--set")))
                return CTL_USAGE;
        } else {
            changes = json_object_new_object();
            json_object_object_add(changes, "enabled", json_object_new_boolean(!strcmp(sub, "enable")));
        }
        e = ars_keys_update(c->redis, c->cfg, id, changes, &rec, err, sizeof(err));
        json_object_put(changes);
    } else if (!strcmp(sub, "delete")) {
        e = ars_keys_delete(c->redis, c->cfg, id, "ai-relayctl", err, sizeof(err));
    } else if (!strcmp(sub, "restore")) {
        e = ars_keys_restore(c->redis, c->cfg, id, err, sizeof(err));
    } else if (!strcmp(sub, "purge")) {
        e = ars_keys_purge(c->redis, c->cfg, id, err, sizeof(err));
    } else {
        return ctl_fail(CTL_USAGE, "keys: unknown subcommand '%s'", sub);
    }
    if (e)
        return ctl_fail(ctl_code_for(e), "keys %s: %s", sub, err);
    if (rec) {
        print_record(c, rec);
        json_object_put(rec);
    } else {
        printf("key %s: %sd\n", id, sub);
    }
    return CTL_OK;
}
