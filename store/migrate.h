/* Schema migrations: numbered SQL files from sql/, embedded in the
 * binaries at build time (scripts/embed-sql), applied in order, each in
 * its own transaction, recorded in schema_migrations. Applying twice
 * changes nothing. An advisory lock serialises concurrent runs. */
#ifndef ARS_STORE_MIGRATE_H
#define ARS_STORE_MIGRATE_H

#include <stddef.h>

#include "err.h"

struct ars_migration {
    const char *name;   /* "001_init": number, underscore, name */
    const char *sql;
};

extern const struct ars_migration ars_migrations[];
extern const size_t ars_migrations_count;

/* The version number of a migration name ("001_init" -> 1); -1 when the
 * name is not NNN_something. */
long ars_migration_version(const char *name);

/* Orders the given migrations by version and checks them: names well
 * formed, versions unique. Fills order[] with indexes into list.
 * ARS_ERR_INVALID with a message otherwise. Pure: no I/O. */
ARS_MUST_USE enum ars_err ars_migrations_plan(const struct ars_migration *list, size_t n, size_t *order,
                                 char *errbuf, size_t errlen);

/* Whether version v is in the sorted applied[] array. */
int ars_migration_applied(const long *applied, size_t napplied, long v);

struct ars_config;

struct ars_migrate_report {
    size_t applied_now;      /* migrations this run applied */
    size_t already;          /* migrations found applied */
    char last[64];           /* newest migration name in the database */
};

/* Applies every pending embedded migration to the configured database. */
ARS_MUST_USE enum ars_err ars_migrate_apply(const struct ars_config *cfg, struct ars_migrate_report *rep,
                               void (*progress)(const char *name, void *arg), void *arg,
                               char *errbuf, size_t errlen);

/* Lists applied migrations (name and applied_at text) through cb. */
ARS_MUST_USE enum ars_err ars_migrate_status(const struct ars_config *cfg,
                                void (*cb)(const char *name, const char *applied_at, void *arg),
                                void *arg, char *errbuf, size_t errlen);

#endif
