/* OAuth access tokens of claude-oauth accounts: the cached token while it
 * is good for more than OAUTH_REFRESH_AHEAD_SECONDS, else a refresh at
 * OAUTH_TOKEN_URL (grant_type=refresh_token), done once per account
 * across every process and host:
 *
 *   - the refresher holds `P lock:oauth:AID` (SET NX PX, a random token,
 *     released by compare-and-delete);
 *   - holding it, it re-reads the account record first: another process
 *     may have refreshed already, and the refresh token may have rotated;
 *   - the new tokens are stored re-encrypted with ars_accounts_update and
 *     this process's account cache is invalidated;
 *   - a process that finds the lock taken polls every 100 ms for up to
 *     5 s, then re-reads the record and uses the winner's token.
 *
 * A refresh token the endpoint rejects (invalid_grant) sets the account's
 * status to "unauthorized", which takes it out of the pool everywhere.
 * Tokens never reach the log. */
#ifndef ARS_RELAY_OAUTH_H
#define ARS_RELAY_OAUTH_H

#include <stddef.h>

#include "err.h"

struct ars_redis;
struct ars_config;
struct ars_account;

#define ARS_OAUTH_LOCK_MS             30000        /* refresh lock lifetime */
#define ARS_OAUTH_WAIT_MS             5000         /* a lock loser waits this long */
#define ARS_OAUTH_POLL_MS             100
#define ARS_OAUTH_HTTP_TIMEOUT_MS     30000        /* whole refresh request (kept inside the lock) */
#define ARS_OAUTH_CONNECT_TIMEOUT_MS  10000
#define ARS_OAUTH_MAX_RESPONSE        (64 * 1024)  /* token endpoint answer */
#define ARS_OAUTH_DEFAULT_EXPIRES_S   3600         /* when the answer has no expires_in */

/* The account's access token in *token (malloc'd; free it), refreshed
 * first when it expires within OAUTH_REFRESH_AHEAD_SECONDS or when
 * force_refresh (the upstream answered 401 to it).
 *   ARS_OK            *token set;
 *   ARS_ERR_INVALID   not an OAuth account, no refresh token, the refresh
 *                     token was rejected (the account is now
 *                     "unauthorized"), or the endpoint refused the request;
 *   ARS_ERR_UNAVAILABLE  the endpoint or Redis could not be reached, or
 *                     another process's refresh did not finish in time.
 * err gets one sentence for the log or the client's error. */
ARS_MUST_USE enum ars_err ars_oauth_access_token(struct ars_redis *r, const struct ars_config *cfg,
                                    const struct ars_account *a, int force_refresh, char **token,
                                    char *err, size_t errlen);

#endif
