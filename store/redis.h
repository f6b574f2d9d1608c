/* Redis access: one connection per worker thread (hiredis contexts are not
 * thread-safe), connected lazily with timeouts, AUTH and SELECT. After any
 * connection-level error the context is freed and the next call
 * reconnects: a failed context is never reused. Commands only in argv
 * form, never built as strings. */
#ifndef ARS_STORE_REDIS_H
#define ARS_STORE_REDIS_H

#include <stddef.h>

#include "err.h"

struct ars_config;
struct redisReply;

struct ars_redis;

struct ars_redis *ars_redis_new(void);
void ars_redis_free(struct ars_redis *r);

/* Runs one command. ARS_OK with *reply set (free with freeReplyObject;
 * a REDIS_REPLY_ERROR reply is a command error, not a connection error);
 * ARS_ERR_UNAVAILABLE when Redis cannot be reached or the connection
 * broke, with the reason in ars_redis_error(). */
ARS_MUST_USE enum ars_err ars_redis_cmd(struct ars_redis *r, const struct ars_config *cfg,
                           struct redisReply **reply, int argc, const char **argv,
                           const size_t *lens);

/* Sends ncmds commands in one write and reads their ncmds replies: one
 * round trip however many commands (hiredis appends, then the first read
 * flushes the output buffer). Command i is argvs[i][0 .. argcs[i]-1] with
 * lengths lens[i] (lens NULL or lens[i] NULL: strlen). replies (NULL: the
 * replies are discarded) receives ncmds replies, each freed by the caller
 * with freeReplyObject; a command that failed has an error reply, which is
 * not a failure of the call. ARS_ERR_UNAVAILABLE when the connection broke
 * anywhere on the way: some of the commands may then have run (Redis
 * applies a pipeline command by command), every slot of replies is NULL
 * and the context is dropped. */
ARS_MUST_USE enum ars_err ars_redis_pipeline(struct ars_redis *r, const struct ars_config *cfg, int ncmds,
                                const int *argcs, const char *const *const *argvs,
                                const size_t *const *lens, struct redisReply **replies);

/* A Lua script run by SHA: EVALSHA first, EVAL when the server does not
 * know it yet (NOSCRIPT after a restart or on a new server), which also
 * loads it. Declare them static with ARS_REDIS_SCRIPT(src). */
struct ars_redis_script {
    const char *src;
    char sha[41];           /* filled on first use */
    _Atomic int ready;      /* sha is valid */
};
#define ARS_REDIS_SCRIPT(source) { (source), "", 0 }

/* keys and args as strings with lengths (lens NULL: strlen). */
ARS_MUST_USE enum ars_err ars_redis_eval(struct ars_redis *r, const struct ars_config *cfg,
                            struct ars_redis_script *script, struct redisReply **reply,
                            int nkeys, int nargs, const char **keys_and_args, const size_t *lens);

/* PING with its own deadline (connect + command). */
ARS_MUST_USE enum ars_err ars_redis_ping(struct ars_redis *r, const struct ars_config *cfg,
                            long timeout_ms, double *latency_ms);

/* Why the last call failed; never contains the password. */
const char *ars_redis_error(const struct ars_redis *r);

#endif
