#include "redis.h"
#include "clock.h"

#include <errno.h>
#include <hiredis.h>
#include <openssl/sha.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "config.h"

struct ars_redis {
    redisContext *ctx;
    const struct ars_config *cfg;   /* the config the context was made with */
    char error[256];
};

struct ars_redis *ars_redis_new(void)
{
    return calloc(1, sizeof(struct ars_redis));
}

static void drop(struct ars_redis *r)
{
    if (r->ctx)
        redisFree(r->ctx);
    r->ctx = NULL;
    r->cfg = NULL;
}

void ars_redis_free(struct ars_redis *r)
{
    if (!r)
        return;
    drop(r);
    free(r);
}

const char *ars_redis_error(const struct ars_redis *r)
{
    return r->error;
}

static struct timeval ms_to_tv(long long ms)
{
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000) };
    return tv;
}

/* Runs a setup command on a fresh context; 0 on success. */
static int setup_cmd(struct ars_redis *r, int argc, const char **argv, const char *what)
{
    redisReply *rep = redisCommandArgv(r->ctx, argc, argv, NULL);
    if (!rep) {
        snprintf(r->error, sizeof(r->error), "redis %s: %s", what, r->ctx->errstr);
        return -1;
    }
    int bad = rep->type == REDIS_REPLY_ERROR;
    if (bad)
        snprintf(r->error, sizeof(r->error), "redis %s refused: %.*s", what,
                 (int)(rep->len > 200 ? 200 : rep->len), rep->str);
    freeReplyObject(rep);
    return bad ? -1 : 0;
}

static enum ars_err connect_redis(struct ars_redis *r, const struct ars_config *cfg, long long connect_ms)
{
    struct timeval tv = ms_to_tv(connect_ms);
    if (cfg->redis_host[0] == '/')
        r->ctx = redisConnectUnixWithTimeout(cfg->redis_host, tv);
    else
        r->ctx = redisConnectWithTimeout(cfg->redis_host, (int)cfg->redis_port, tv);
    if (!r->ctx || r->ctx->err) {
        snprintf(r->error, sizeof(r->error), "redis connect %s:%lld: %s", cfg->redis_host,
                 cfg->redis_port, r->ctx ? r->ctx->errstr : "out of memory");
        drop(r);
        return ARS_ERR_UNAVAILABLE;
    }
    struct timeval cmd_tv = ms_to_tv(cfg->redis_command_timeout_ms);
    redisSetTimeout(r->ctx, cmd_tv);
    if (cfg->redis_password[0]) {
        const char *argv[] = { "AUTH", cfg->redis_password };
        if (setup_cmd(r, 2, argv, "AUTH")) {
            drop(r);
            return ARS_ERR_UNAVAILABLE;
        }
    }
    if (cfg->redis_db) {
        char db[24];
        snprintf(db, sizeof(db), "%lld", cfg->redis_db);
        const char *argv[] = { "SELECT", db };
        if (setup_cmd(r, 2, argv, "SELECT")) {
            drop(r);
            return ARS_ERR_UNAVAILABLE;
        }
    }
    r->cfg = cfg;
    return ARS_OK;
}

/* Between requests nothing arrives on a healthy connection (no pub/sub),
 * so a readable socket means the server closed it or it broke: find that
 * out before sending, so a Redis restart costs a reconnect, not a failed
 * request. One poll() with no wait. */
static int connection_dead(const redisContext *ctx)
{
    struct pollfd p = { .fd = ctx->fd, .events = POLLIN };
    if (poll(&p, 1, 0) <= 0)
        return 0;
    char c;
    ssize_t n = recv(ctx->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* A reload installs a new config object: reconnect so new Redis settings
 * apply (reloads are rare; the cost is one reconnect per thread). */
static enum ars_err ensure(struct ars_redis *r, const struct ars_config *cfg, long long connect_ms)
{
    if (r->ctx && (r->cfg != cfg || connection_dead(r->ctx)))
        drop(r);
    if (r->ctx)
        return ARS_OK;
    return connect_redis(r, cfg, connect_ms);
}

enum ars_err ars_redis_cmd(struct ars_redis *r, const struct ars_config *cfg,
                           struct redisReply **reply, int argc, const char **argv,
                           const size_t *lens)
{
    *reply = NULL;
    enum ars_err err = ensure(r, cfg, cfg->redis_connect_timeout_ms);
    if (err)
        return err;
    redisReply *rep = redisCommandArgv(r->ctx, argc, argv, lens);
    if (!rep) {
        snprintf(r->error, sizeof(r->error), "redis: %s", r->ctx->errstr[0] ? r->ctx->errstr : "connection lost");
        drop(r);
        return ARS_ERR_UNAVAILABLE;
    }
    *reply = rep;
    return ARS_OK;
}

enum ars_err ars_redis_pipeline(struct ars_redis *r, const struct ars_config *cfg, int ncmds,
                                const int *argcs, const char *const *const *argvs,
                                const size_t *const *lens, redisReply **replies)
{
    if (replies)
        memset(replies, 0, (size_t)ncmds * sizeof(*replies));
    enum ars_err err = ensure(r, cfg, cfg->redis_connect_timeout_ms);
    if (err)
        return err;
    for (int i = 0; i < ncmds; i++) {
        /* hiredis' prototype is not const-correct; it only reads argv. */
        if (redisAppendCommandArgv(r->ctx, argcs[i], (const char **)argvs[i], lens ? lens[i] : NULL) != REDIS_OK) {
            snprintf(r->error, sizeof(r->error), "redis pipeline: %s",
                     r->ctx->errstr[0] ? r->ctx->errstr : "out of memory");
            drop(r);
            return ARS_ERR_UNAVAILABLE;
        }
    }
    for (int i = 0; i < ncmds; i++) {
        void *rep = NULL;
        if (redisGetReply(r->ctx, &rep) != REDIS_OK || !rep) {
            snprintf(r->error, sizeof(r->error), "redis pipeline: %s",
                     r->ctx->errstr[0] ? r->ctx->errstr : "connection lost");
            drop(r);
            if (replies) {
                for (int j = 0; j < i; j++) {
                    freeReplyObject(replies[j]);
                    replies[j] = NULL;
                }
            }
            return ARS_ERR_UNAVAILABLE;
        }
        if (replies)
            replies[i] = rep;
        else
            freeReplyObject(rep);
    }
    return ARS_OK;
}

/* SHA1 of the script text, computed once; the mutex only matters on the
 * first use of each script. */
static void script_sha(struct ars_redis_script *s)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    if (atomic_load_explicit(&s->ready, memory_order_acquire))
        return;
    pthread_mutex_lock(&lock);
    if (!atomic_load_explicit(&s->ready, memory_order_relaxed)) {
        unsigned char md[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)s->src, strlen(s->src), md);
        for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
            snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
        atomic_store_explicit(&s->ready, 1, memory_order_release);
    }
    pthread_mutex_unlock(&lock);
}

enum ars_err ars_redis_eval(struct ars_redis *r, const struct ars_config *cfg,
                            struct ars_redis_script *script, redisReply **reply,
                            int nkeys, int nargs, const char **keys_and_args, const size_t *lens)
{
    *reply = NULL;
    script_sha(script);
    int argc = 3 + nkeys + nargs;
    const char **argv = malloc((size_t)argc * sizeof(*argv));
    size_t *argl = malloc((size_t)argc * sizeof(*argl));
    if (!argv || !argl) {
        free(argv);
        free(argl);
        return ARS_ERR_NOMEM;
    }
    char numkeys[16];
    snprintf(numkeys, sizeof(numkeys), "%d", nkeys);
    argv[0] = "EVALSHA";
    argl[0] = 7;
    argv[1] = script->sha;
    argl[1] = 40;
    argv[2] = numkeys;
    argl[2] = strlen(numkeys);
    for (int i = 0; i < nkeys + nargs; i++) {
        argv[3 + i] = keys_and_args[i];
        argl[3 + i] = lens ? lens[i] : strlen(keys_and_args[i]);
    }
    enum ars_err err = ars_redis_cmd(r, cfg, reply, argc, argv, argl);
    if (!err && (*reply)->type == REDIS_REPLY_ERROR && strncmp((*reply)->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(*reply);
        *reply = NULL;
        argv[0] = "EVAL";
        argl[0] = 4;
        argv[1] = script->src;
        argl[1] = strlen(script->src);
        err = ars_redis_cmd(r, cfg, reply, argc, argv, argl);
    }
    free(argv);
    free(argl);
    return err;
}


enum ars_err ars_redis_ping(struct ars_redis *r, const struct ars_config *cfg,
                            long timeout_ms, double *latency_ms)
{
    double t0 = ((double)ars_mono_us() / 1000.0);
    long long connect_ms = cfg->redis_connect_timeout_ms < timeout_ms ? cfg->redis_connect_timeout_ms : timeout_ms;
    enum ars_err err = ensure(r, cfg, connect_ms);
    if (err)
        return err;
    long left = timeout_ms - (long)(((double)ars_mono_us() / 1000.0) - t0);
    redisSetTimeout(r->ctx, ms_to_tv(left > 10 ? left : 10));
    redisReply *rep = redisCommand(r->ctx, "PING");
    if (!rep) {
        snprintf(r->error, sizeof(r->error), "redis PING: %s", r->ctx->errstr[0] ? r->ctx->errstr : "no reply");
        drop(r);
        return ARS_ERR_UNAVAILABLE;
    }
    int ok = rep->type == REDIS_REPLY_STATUS;
    if (!ok)
        snprintf(r->error, sizeof(r->error), "redis PING: unexpected reply");
    freeReplyObject(rep);
    redisSetTimeout(r->ctx, ms_to_tv(cfg->redis_command_timeout_ms));
    *latency_ms = ((double)ars_mono_us() / 1000.0) - t0;
    return ok ? ARS_OK : ARS_ERR_UNAVAILABLE;
}
