/* Usage recording after each request (DESIGN §4 "Usage and cost", §8
 * round trip 3): every counter, the request-log entry and both lease
 * releases in ONE pipelined Redis round trip, off the latency path (call
 * it after FCGX_Finish_r).
 *
 * What one record writes (P = REDIS_KEY_PREFIX; layout in
 * docs/internals/relay-modules.md):
 *   first attempt: P usage:writer:WID  SET SEQ EX 2 days: the writing
 *       thread's attempt register (one key per thread, not per request)
 *   a retry (queue or spool): P usage:done:RID  SET NX EX 2 days: the
 *       record's applied-marker (only records that met an outage get one)
 *   P usage:{key,account,model}:{ID}:{h:YYYYMMDDHH,d:YYYYMMDD,m:YYYYMM,total} (ID as a hash tag;
 *       a model's ID is bounded, see ARS_USAGE_MODEL_KEY_MAX)
 *       HINCRBY requests 1, input, output, cache_5m, cache_1h, cache_read,
 *       cost (micros); hour buckets expire after 3 days, day buckets
 *       after 400; a token field that is 0 is not sent (missing = 0)
 *   per key, one small script under the key's hash tag {KID}:
 *       P key:{KID} last_used_at (epoch ms; only if the key record exists
 *       and only forwards; no version bump, it is runtime data),
 *       P lim:{KID}:win tokens and cost (only while a window exists),
 *       P lim:{KID}:cost:d:YYYYMMDD / cost:w:WEEKSTART / cost:total,
 *       ZREM P lim:{KID}:conc RID when release_key_lease
 *   XADD P reqlog MAXLEN ~ REQUEST_LOG_MAX (ts, request_id, key_id,
 *       account_id, model, family, input, output, cache_5m, cache_1h,
 *       cache_read, cost_micros, status, duration_ms, ttfb_ms, stream, client)
 *   ZREM P pool:{pool}:conc:AID RID when release_account_lease
 * Time buckets come from at_ms (UTC), so a record replayed late lands in
 * the hour / day / week it belongs to.
 *
 * Never losing a record: when Redis cannot take it, the record goes to an
 * in-memory queue (ARS_USAGE_QUEUE_MAX records; beyond that it is appended
 * to USAGE_SPOOL_FILE) that a background thread retries every second.
 * ars_usage_stop writes what it cannot deliver to the spool file; the
 * next start (of any process sharing the path) replays it, after checking
 * that the file and its directory belong to the relay's user (a file
 * anyone else could have written is refused, never billed). The attempt
 * register and the applied-marker make retries and replays idempotent;
 * see usage.c for the exact guarantee. */
#ifndef ARS_USAGE_H
#define ARS_USAGE_H

#include <stddef.h>

#include "err.h"
#include "pricing.h"

struct ars_redis;
struct ars_config;

/* Records held in memory while Redis is unavailable; more go to the spool file. */
#define ARS_USAGE_QUEUE_MAX           100000
/* Lifetime of a retried record's applied-marker and of a thread's attempt
 * register: a retry or replay later than this after the attempt it
 * repeats is no longer deduplicated. Memory: markers exist only for
 * records that were retried (~130 bytes each on Redis 7, so 100000
 * records queued through an outage cost ~13 MB for two days); registers
 * are one per worker thread and per failed first attempt, whatever the
 * request rate (a marker per request was 2.2 GB at 100 requests/s). */
#define ARS_USAGE_DONE_TTL_SECONDS    172800
/* One spool line (a record as JSON is well under 2 KiB). */
#define ARS_USAGE_SPOOL_LINE_MAX      8192
/* Records replayed from the spool per pass; the file stays locked for a
 * pass, so this bounds how long other processes wait to append. */
#define ARS_USAGE_REPLAY_BATCH        10000
/* A spool file larger than this is not read (a wrong path, not ours). */
#define ARS_USAGE_SPOOL_MAX_BYTES     (512LL * 1024 * 1024)
/* Model counters (P usage:model:{NAME}:...) are named by clients, and
 * month and total buckets never expire: only names the price table knows
 * get buckets of their own (an exact id or alias as sent; a dated id only
 * when the upstream answered 2xx, i.e. the model exists; else the priced
 * id it matched), at most this many bytes of printable ASCII without
 * braces; everything else is counted under ARS_USAGE_MODEL_OTHER. The
 * request log keeps the real name (capped by the record's field). The
 * longest current id is 26 bytes ("claude-sonnet-4-5-20250929"). */
#define ARS_USAGE_MODEL_KEY_MAX       64
#define ARS_USAGE_MODEL_OTHER         "other"
/* Usage buckets' lifetimes. */
#define ARS_USAGE_HOUR_TTL_SECONDS    (3LL * 86400)
#define ARS_USAGE_DAY_TTL_SECONDS     (400LL * 86400)

struct ars_usage_record {
    char request_id[24];         /* required: the applied-marker's name */
    char key_id[40];             /* required */
    char account_id[40];         /* "" when no account was picked */
    char model[128];             /* the model billed ("" : no model bucket) */
    char route_family[16];       /* "claude" | "openai" */
    struct ars_usage usage;      /* as the upstream reported it */
    long long cost_micros;
    int status;                  /* HTTP status sent to the client */
    long long duration_ms;
    long long ttfb_ms;
    int stream;
    char client[64];             /* e.g. "claude_code", "" */
    long long at_ms;             /* when the request happened (epoch ms, UTC): picks every bucket */
    int window_active;           /* ars_limits_window_active(key): charge lim:{KID}:win */
    long long week_start_ms;     /* ars_week_start_ms(at_ms, key's reset day/hour); 0: no weekly counter */
    int release_key_lease;       /* ZREM the key's concurrency lease */
    int release_account_lease;   /* ZREM the account's lease */
    /* A compensating release (ars_usage_cancel_later), not a request's
     * usage: nothing is counted and no applied-marker is written; the
     * key's lease is cancelled (ars_limits_cancel) when release_key_lease,
     * the request's lease on any account of the pool (ars_sched_cancel)
     * when release_account_lease. Idempotent, so retries need no marker. */
    int cancel;
    /* Set by this module on the copy it keeps for a retry, ignored on
     * input to ars_usage_record: the attempt register that the failed
     * first attempt wrote ("" when it was never sent) and its sequence
     * number. */
    char attempt_writer[24];
    long long attempt_seq;
};

/* Records one request. ARS_OK when the record was applied or kept for a
 * retry (queued or spooled: ars_usage_queued() tells which); while Redis
 * is known to be down (a failure less than a second ago) records are
 * queued without trying, so workers do not each wait for a connect
 * timeout. ARS_ERR_INVALID for a record without request or key id;
 * ARS_ERR_IO when it could be neither applied nor kept (logged as
 * usage_lost). */
ARS_MUST_USE enum ars_err ars_usage_record(struct ars_redis *r, const struct ars_config *cfg,
                              const struct ars_usage_record *rec);

/* Queues a compensating release for a request whose admission or
 * account pick timed out in Redis (the script may still run later and
 * leave a lease): the background thread applies it within about a
 * second, and again until Redis takes it (queue, then spool, as usage
 * records). key_lease: the key's lease; pool_lease: whatever account
 * lease the pick may have taken. */
ARS_MUST_USE enum ars_err ars_usage_cancel_later(const struct ars_config *cfg, const char *request_id, const char *key_id,
                                    int key_lease, int pool_lease);

struct ars_usage_flush_result {
    size_t applied;     /* records written */
    size_t skipped;     /* already applied earlier (marker found): not written again */
    size_t bad;         /* spool lines that were not records (dropped, logged) */
    size_t left;        /* still waiting */
    char error[256];    /* why the last attempt failed ("" when none did) */
};

/* Retries the queued records, oldest first, until the queue is empty or
 * Redis fails again (ARS_ERR_UNAVAILABLE). Each retry checks the
 * applied-marker and the first attempt's register first (one extra round
 * trip, on this rare path only). */
ARS_MUST_USE enum ars_err ars_usage_flush(struct ars_redis *r, const struct ars_config *cfg,
                             struct ars_usage_flush_result *res);
/* Replays cfg->usage_spool_file (at most ARS_USAGE_REPLAY_BATCH records),
 * under an exclusive flock shared with every process using the path:
 * applied and already-applied records are removed from the file, the
 * rest stays for the next pass. busy (may be NULL) is set when another
 * process holds the lock. A missing or empty file is ARS_OK. A file that
 * is a symlink, not owned by the relay's user, not mode 0600, or in a
 * directory that is a symlink, someone else's or writable by group or
 * others, is not read: ARS_ERR_INVALID, logged as usage_spool_refused. */
ARS_MUST_USE enum ars_err ars_usage_replay_spool(struct ars_redis *r, const struct ars_config *cfg,
                                    struct ars_usage_flush_result *res, int *busy);
/* Records waiting in this process's memory queue. */
size_t ars_usage_queued(void);

/* The background thread: replays the spool at start (and again every
 * ARS_USAGE_REPLAY_SECONDS while the file is not empty), retries the
 * queue every second. Uses ars_config_current(). 0 on success. */
#define ARS_USAGE_REPLAY_SECONDS      30
int ars_usage_start(void);
/* Stops the thread, flushes what Redis takes, and appends the rest to the
 * spool file (JSON lines, fsync'd, mode 0600; its directory is created
 * 0700 when missing). Safe without a start. */
void ars_usage_stop(void);

#endif
