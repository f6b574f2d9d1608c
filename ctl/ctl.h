/* ai-relayctl: the ops CLI. Each command family is a module; they share
 * the loaded config, one Redis connection and the output helpers here.
 * Exit codes: 0 done, 1 the operation failed, 2 usage error, 3 a store
 * could not be reached. */
#ifndef ARS_CTL_H
#define ARS_CTL_H

#include <json.h>

struct ars_config;
struct ars_redis;

enum { CTL_OK = 0, CTL_FAILED = 1, CTL_USAGE = 2, CTL_UNAVAILABLE = 3 };

struct ctl {
    const struct ars_config *cfg;
    struct ars_redis *redis;
    int json_output;          /* --json: machine-readable output */
};

int ctl_db(struct ctl *c, int argc, char **argv);
int ctl_admin(struct ctl *c, int argc, char **argv);
int ctl_keys(struct ctl *c, int argc, char **argv);
int ctl_accounts(struct ctl *c, int argc, char **argv);
int ctl_settings(struct ctl *c, int argc, char **argv);

/* Prints "ai-relayctl: <msg>" on stderr and returns code. */
int ctl_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Exit code for a store error. */
int ctl_code_for(int ars_err);
void ctl_print_json(json_object *o);
/* Parses a JSON object argument; NULL after printing why. */
json_object *ctl_parse_object(const char *text, const char *what);
/* --name value / --name=value; returns the value or NULL, and removes
 * both from argv (updating *argc). */
const char *ctl_take_option(int *argc, char **argv, const char *name);
int ctl_take_flag(int *argc, char **argv, const char *name);

#endif
