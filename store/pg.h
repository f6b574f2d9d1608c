/* PostgreSQL access: a small process-wide pool (at most PG_POOL_MAX
 * connections; idle ones closed after PG_IDLE_TIMEOUT), connects and
 * queries with deadlines (libpq's own connect_timeout has whole-second
 * granularity, so the pool polls the socket itself), parameterised SQL
 * only. With no PG_HOST the relay runs on Redis alone. */
#ifndef ARS_STORE_PG_H
#define ARS_STORE_PG_H

#include <libpq-fe.h>

#include "err.h"

struct ars_config;

struct ars_pg_conn;

int ars_pg_enabled(const struct ars_config *cfg);

/* Takes a connection from the pool or opens one, within timeout_ms.
 * ARS_ERR_UNAVAILABLE with the reason in errbuf when PG can't be reached,
 * ARS_ERR_TIMEOUT when the pool stayed full. */
ARS_MUST_USE enum ars_err ars_pg_acquire(const struct ars_config *cfg, long timeout_ms,
                            struct ars_pg_conn **out, char *errbuf, size_t errlen);
/* Returns it; a broken one (after an I/O error or timeout) is closed. */
void ars_pg_release(struct ars_pg_conn *c, int broken);

/* One parameterised statement with a deadline. On ARS_OK *res holds a
 * result with status TUPLES_OK or COMMAND_OK (PQclear it); SQL errors are
 * ARS_ERR_INVALID with the server's message in errbuf; connection
 * failures ARS_ERR_UNAVAILABLE; deadline ARS_ERR_TIMEOUT (query cancelled). */
ARS_MUST_USE enum ars_err ars_pg_exec(struct ars_pg_conn *c, const char *sql, int nparams,
                         const char *const *params, long timeout_ms, PGresult **res,
                         char *errbuf, size_t errlen);

/* Several statements of trusted, embedded SQL (migrations) through the
 * simple query protocol. Never for anything built from input. */
ARS_MUST_USE enum ars_err ars_pg_exec_script(struct ars_pg_conn *c, const char *sql, long timeout_ms,
                                char *errbuf, size_t errlen);

/* SELECT 1 on a pooled connection, with one deadline for all of it. */
ARS_MUST_USE enum ars_err ars_pg_ping(const struct ars_config *cfg, long timeout_ms, double *latency_ms,
                         char *errbuf, size_t errlen);

/* Closes every idle connection (at exit). */
void ars_pg_pool_shutdown(void);

#endif
