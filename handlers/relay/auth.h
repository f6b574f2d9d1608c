/* Client-key authentication for the API routes (DESIGN.md §4 steps 1-2):
 * key present (x-api-key or Authorization: Bearer), well formed, known,
 * not deleted, enabled, not expired (fixed date or N days/hours from
 * first use), allowed on this route family. Each failure answers with its
 * own message in the route's error shape; nothing is charged. */
#ifndef ARS_RELAY_AUTH_H
#define ARS_RELAY_AUTH_H

#include "err.h"
#include "keys.h"
#include "request.h"

/* On success *key holds a reference released when the request ends. On
 * failure the error response has been sent. */
ARS_MUST_USE enum ars_err ars_auth_key(struct ars_request *req, unsigned family, struct ars_key **key);

/* The presented key (x-api-key, else Authorization: Bearer), or NULL. */
const char *ars_auth_presented_key(const struct ars_request *req);

#endif
