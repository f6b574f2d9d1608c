/* Keeps a test Redis busy in a Lua loop for a while, from a connection of
 * its own, so that a client whose command timeout is shorter gives up
 * while its command still runs afterwards: the "reply lost, command
 * applied later" case the compensating releases and the usage attempt
 * register exist for. Shared by the Redis test programs. */
#ifndef ARS_CHECK_REDIS_BUSY_H
#define ARS_CHECK_REDIS_BUSY_H

#include <hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Starts the loop (ms long) on 127.0.0.1:port; read its end with
 * busy_finish. */
static inline redisContext *busy_start(const char *port, long long ms)
{
    struct timeval tv = { 5, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", (int)strtol(port, NULL, 10), tv);
    if (!c || c->err)
        return c;
    char arg[24];
    snprintf(arg, sizeof(arg), "%lld", ms * 1000);
    redisAppendCommand(c, "EVAL %s 0 %s",
                       "local s = redis.call('TIME') local t0 = s[1] * 1000000 + s[2] "
                       "while true do local t = redis.call('TIME') "
                       "if t[1] * 1000000 + t[2] - t0 > tonumber(ARGV[1]) then return 1 end end",
                       arg);
    int done = 0;
    while (!done && redisBufferWrite(c, &done) == REDIS_OK)
        ;
    usleep(200000);   /* let Redis start the loop (a loaded machine may be slow to) */
    return c;
}

static inline void busy_finish(redisContext *c)
{
    void *rep = NULL;
    if (c && !c->err && redisGetReply(c, &rep) == REDIS_OK)
        freeReplyObject(rep);
    if (c)
        redisFree(c);
}

#endif
