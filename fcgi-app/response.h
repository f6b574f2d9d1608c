/* Writing responses: head (status + headers), JSON bodies, errors in the
 * route's API shape, and Server-Sent Events flushed per event. Every write
 * notes a gone client in req->client_gone; the streaming calls also return
 * ARS_ERR_CLIENT_GONE, so a handler can stop producing output but still
 * finish its accounting. */
#ifndef ARS_RESPONSE_H
#define ARS_RESPONSE_H

#include <stddef.h>

#include "err.h"
#include "request.h"

struct json_object;

const char *ars_status_reason(int status);

/* Adds a response header before the head is sent. Values containing CR or
 * LF are refused (they would split the response); a NULL name or value (a
 * failed arena allocation) is ARS_ERR_NOMEM and adds nothing. */
ARS_MUST_USE enum ars_err ars_resp_header(struct ars_request *req, const char *name, const char *value);
/* A header the response can go without (retry-after, request-id, CORS):
 * when it cannot be added, the answer leaves without it and a warn line
 * names it. */
void ars_resp_header_optional(struct ars_request *req, const char *name, const char *value);
/* Sends "Status:", Content-Type, the added headers and the blank line. */
ARS_MUST_USE enum ars_err ars_resp_head(struct ars_request *req, int status, const char *content_type);
/* Body bytes; the head must have been sent. */
ARS_MUST_USE enum ars_err ars_resp_write(struct ars_request *req, const char *data, size_t n);
ARS_MUST_USE enum ars_err ars_resp_flush(struct ars_request *req);

/* Complete responses. They return nothing: whatever fails is recorded in
 * the request (req->client_gone for a client that left; req->head_sent
 * still 0 when nothing could be sent, and the worker then answers 500 with
 * its static body), and the caller has nothing left to undo. */
void ars_resp_send(struct ars_request *req, int status, const char *content_type, const char *body, size_t n);
void ars_resp_json(struct ars_request *req, int status, struct json_object *obj);
/* An error in the shape of the route's API (Anthropic, OpenAI or plain
 * {"error":{"type","message"}}). type NULL: derived from the status. */
void ars_resp_error(struct ars_request *req, int status, const char *type, const char *message);

/* The error body alone, for tests and for SSE error events. */
ARS_MUST_USE enum ars_err ars_error_body(struct ars_buf *out, enum ars_error_shape shape, int status,
                            const char *type, const char *message);

/* SSE: head with text/event-stream, no-cache, X-Accel-Buffering: no. */
ARS_MUST_USE enum ars_err ars_sse_start(struct ars_request *req, int status);
/* One event ("event: NAME\ndata: DATA\n\n"; no event line when name is
 * NULL), flushed. Multi-line data is split into several data: lines. */
ARS_MUST_USE enum ars_err ars_sse_event(struct ars_request *req, const char *name, const char *data, size_t n);
/* Raw, already-framed SSE bytes (pass-through from an upstream), flushed. */
ARS_MUST_USE enum ars_err ars_sse_raw(struct ars_request *req, const char *data, size_t n);

#endif
