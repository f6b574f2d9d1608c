/* ai-relayctl: database, admin-user, key, account and settings commands
 * for operators. Shares store/ with the relay, reads the same config. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "config.h"
#include "ctl.h"
#include "err.h"
#include "log.h"
#include "pg.h"
#include "redis.h"

extern char **environ;

int ctl_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ai-relayctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

int ctl_code_for(int ars_err)
{
    switch (ars_err) {
    case ARS_OK: return CTL_OK;
    case ARS_ERR_UNAVAILABLE:
    case ARS_ERR_TIMEOUT: return CTL_UNAVAILABLE;
    default: return CTL_FAILED;
    }
}

void ctl_print_json(json_object *o)
{
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                               JSON_C_TO_STRING_NOSLASHESCAPE));
}

json_object *ctl_parse_object(const char *text, const char *what)
{
    json_object *o = json_tokener_parse(text);
    if (!o || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        ctl_fail(CTL_USAGE, "%s: expected a JSON object", what);
        return NULL;
    }
    return o;
}

static void remove_args(int *argc, char **argv, int at, int n)
{
    for (int i = at; i + n <= *argc; i++)
        argv[i] = argv[i + n];
    *argc -= n;
}

const char *ctl_take_option(int *argc, char **argv, const char *name)
{
    size_t n = strlen(name);
    for (int i = 1; i < *argc; i++) {
        if (strncmp(argv[i], name, n) != 0)
            continue;
        if (argv[i][n] == '=') {
            const char *v = argv[i] + n + 1;
            remove_args(argc, argv, i, 1);
            return v;
        }
        if (argv[i][n] == '\0' && i + 1 < *argc) {
            const char *v = argv[i + 1];
            remove_args(argc, argv, i, 2);
            return v;
        }
    }
    return NULL;
}

int ctl_take_flag(int *argc, char **argv, const char *name)
{
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            remove_args(argc, argv, i, 1);
            return 1;
        }
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: ai-relayctl [--config FILE] [--json] COMMAND ...\n"
        "Operations tool for ai-relay; reads the relay's configuration (default .env).\n\n"
        "  db init                          apply the schema migrations to PostgreSQL\n"
        "  db status                        migrations, row counts Redis vs PostgreSQL, outbox\n"
        "  db verify                        compare every record in Redis with PostgreSQL\n"
        "  db migrate keys|accounts|settings  copy Redis records into PostgreSQL\n"
        "  db outbox drain                  replay queued PostgreSQL writes now\n"
        "  admin create USER [--role admin|operator|viewer] [--generate]\n"
        "  admin reset-password USER [--generate]\n"
        "  keys create --name NAME [--set JSON]   create an API key (printed once)\n"
        "  keys list [--search S] [--tag T] [--status active|disabled|deleted|all] [--page N]\n"
        "  keys get ID | keys update ID --set JSON\n"
        "  keys enable ID | disable ID | delete ID | restore ID | purge ID\n"
        "  accounts add --type claude-oauth|claude-console --name NAME [--set JSON]\n"
        "  accounts list | accounts get ID | accounts update ID --set JSON\n"
        "  groups add --name NAME\n"
        "  settings get KEY | settings set KEY JSON\n\n"
        "Each command has --help. Exit codes: 0 done, 1 failed, 2 usage, 3 store unreachable.\n");
}

int main(int argc, char **argv)
{
    const char *config_file = ctl_take_option(&argc, argv, "--config");
    int json_output = ctl_take_flag(&argc, argv, "--json");
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CTL_USAGE : CTL_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("ai-relayctl %s\n", PACKAGE_VERSION);
        return CTL_OK;
    }
    char err[512];
    struct ars_config *cfg;
    if (ars_config_load(config_file ? config_file : ".env", config_file != NULL, environ, &cfg, err, sizeof(err)))
        return ctl_fail(CTL_USAGE, "%s", err);
    ars_config_install(cfg);
    /* Store modules log deferred writes and the like: keep it quiet unless asked. */
    ars_log_setup(cfg->log_level > ARS_LOG_WARN ? (enum ars_log_level)cfg->log_level : ARS_LOG_WARN,
                  (enum ars_log_format)cfg->log_format);

    struct ctl c = { cfg, ars_redis_new(), json_output };
    int rc;
    const char *cmd = argv[1];
    argc--;
    argv++;
    if (!strcmp(cmd, "db"))
        rc = ctl_db(&c, argc, argv);
    else if (!strcmp(cmd, "admin"))
        rc = ctl_admin(&c, argc, argv);
    else if (!strcmp(cmd, "keys"))
        rc = ctl_keys(&c, argc, argv);
    else if (!strcmp(cmd, "accounts") || !strcmp(cmd, "groups"))
        rc = ctl_accounts(&c, argc, argv);   /* argv[0] tells accounts from groups */
    else if (!strcmp(cmd, "settings"))
        rc = ctl_settings(&c, argc, argv);
    else
        rc = ctl_fail(CTL_USAGE, "unknown command '%s' (see ai-relayctl --help)", cmd);
    ars_redis_free(c.redis);
    ars_pg_pool_shutdown();
    ars_config_release_all();
    return rc;
}
