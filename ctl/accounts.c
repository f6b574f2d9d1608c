/* ai-relayctl accounts / groups / settings. */
#include <stdio.h>
#include <string.h>

#include "accounts.h"
#include "ctl.h"
#include "settings.h"

/* Secrets stay encrypted in the record; never print them. */
static void redact(json_object *rec)
{
    json_object *v;
    if (json_object_object_get_ex(rec, "credentials", &v) && json_object_get_string_len(v))
        json_object_object_add(rec, "credentials", json_object_new_string("(encrypted)"));
    if (json_object_object_get_ex(rec, "proxy", &v) && json_object_get_string_len(v))
        json_object_object_add(rec, "proxy", json_object_new_string("(encrypted)"));
}

static int groups(struct ctl *c, int argc, char **argv)
{
    const char *name = ctl_take_option(&argc, argv, "--name");
    const char *desc = ctl_take_option(&argc, argv, "--description");
    if (argc < 2 || strcmp(argv[1], "add") || !name)
        return ctl_fail(CTL_USAGE, "usage: ai-relayctl groups add --name NAME [--description TEXT]");
    json_object *rec;
    char err[512];
    enum ars_err e = ars_groups_create(c->redis, c->cfg, name, desc, &rec, err, sizeof(err));
    if (e)
        return ctl_fail(ctl_code_for(e), "groups add: %s", err);
    ctl_print_json(rec);
    json_object_put(rec);
    return CTL_OK;
}

int ctl_accounts(struct ctl *c, int argc, char **argv)
{
    if (!strcmp(argv[0], "groups"))
        return groups(c, argc, argv);
    const char *type = ctl_take_option(&argc, argv, "--type");
    const char *name = ctl_take_option(&argc, argv, "--name");
    const char *set = ctl_take_option(&argc, argv, "--set");
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        printf("usage: ai-relayctl accounts add --type claude-oauth|claude-console --name NAME [--set JSON]\n"
               "       ai-relayctl accounts list | get ID | update ID --set JSON\n"
               "JSON fields: description, priority (1-100, lower first), schedulable, concurrency_limit,\n"
               "groups, base_url, model_mapping, proxy (http://, socks5://), expires_at, status,\n"
               "credentials ({\"api_key\":...} or {\"access_token\",\"refresh_token\",\"expires_at\",\"scopes\"}).\n"
               "Secrets are encrypted before they are stored and never printed.\n");
        return argc < 2 ? CTL_USAGE : CTL_OK;
    }
    const char *sub = argv[1];
    json_object *rec = NULL, *params = NULL;
    char err[512] = "";
    enum ars_err e;
    if (!strcmp(sub, "list")) {
        json_object *items;
        e = ars_accounts_list(c->redis, c->cfg, 0, &items, err, sizeof(err));
        if (e)
            return ctl_fail(ctl_code_for(e), "accounts list: %s", err);
        for (size_t i = 0; i < json_object_array_length(items); i++)
            redact(json_object_array_get_idx(items, i));
        ctl_print_json(items);
        json_object_put(items);
        return CTL_OK;
    }
    if (set && !(params = ctl_parse_object(set, "--set")))
        return CTL_USAGE;
    if (!params)
        params = json_object_new_object();
    if (!strcmp(sub, "add")) {
        if (type)
            json_object_object_add(params, "type", json_object_new_string(type));
        if (name)
            json_object_object_add(params, "name", json_object_new_string(name));
        e = ars_accounts_create(c->redis, c->cfg, params, &rec, err, sizeof(err));
    } else if (argc < 3) {
        json_object_put(params);
        return ctl_fail(CTL_USAGE, "accounts %s: expected an account id", sub);
    } else if (!strcmp(sub, "get")) {
        e = ars_accounts_get(c->redis, c->cfg, argv[2], &rec, err, sizeof(err));
    } else if (!strcmp(sub, "update")) {
        if (name)
            json_object_object_add(params, "name", json_object_new_string(name));
        e = ars_accounts_update(c->redis, c->cfg, argv[2], params, &rec, err, sizeof(err));
    } else {
        json_object_put(params);
        return ctl_fail(CTL_USAGE, "accounts: unknown subcommand '%s'", sub);
    }
    json_object_put(params);
    if (e)
        return ctl_fail(ctl_code_for(e), "accounts %s: %s", sub, err);
    redact(rec);
    ctl_print_json(rec);
    json_object_put(rec);
    return CTL_OK;
}

int ctl_settings(struct ctl *c, int argc, char **argv)
{
    if (argc < 3 || !strcmp(argv[1], "--help") || (strcmp(argv[1], "get") && strcmp(argv[1], "set")) ||
        (!strcmp(argv[1], "set") && argc < 4)) {
        printf("usage: ai-relayctl settings get KEY | settings set KEY JSON\n");
        return argc < 2 || strcmp(argv[1], "--help") ? CTL_USAGE : CTL_OK;
    }
    char err[512] = "";
    if (!strcmp(argv[1], "get")) {
        json_object *v;
        enum ars_err e = ars_settings_get(c->redis, c->cfg, argv[2], &v, err, sizeof(err));
        if (e)
            return ctl_fail(ctl_code_for(e), "settings get: %s", err);
        ctl_print_json(v);
        json_object_put(v);
        return CTL_OK;
    }
    json_object *v = json_tokener_parse(argv[3]);
    if (!v && strcmp(argv[3], "null"))
        return ctl_fail(CTL_USAGE, "settings set: the value must be JSON");
    enum ars_err e = ars_settings_set(c->redis, c->cfg, argv[2], v, err, sizeof(err));
    json_object_put(v);
    if (e)
        return ctl_fail(ctl_code_for(e), "settings set: %s", err);
    printf("setting %s saved\n", argv[2]);
    return CTL_OK;
}
