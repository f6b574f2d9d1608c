/* Incremental parser for the Server-Sent Events that the Messages API
 * streams (`event: NAME\ndata: JSON\n\n`), plus usage extraction over the
 * parsed events (DESIGN §4 "Streaming").
 *
 * Pure, hiredis-style: no I/O inside. The relay feeds each chunk it got from
 * the upstream, writes the same bytes to the client unchanged and flushes at
 * the offset the feed reports as the last event boundary; it pulls the
 * complete events and hands them to ars_sse_usage_update() on the side. The
 * OpenAI converter pulls the same events to rewrite them.
 *
 *     struct ars_sse_parser p;
 *     struct ars_sse_event ev;
 *     ars_sse_init(&p, 0);
 *     for each chunk:
 *         err = ars_sse_feed(&p, chunk, n, &boundary);   // sticky on error
 *         while (ars_sse_next(&p, &ev))
 *             ars_sse_usage_update(&usage, &ev);
 *         write the chunk; flush if boundary moved
 *     ars_sse_deinit(&p);
 *
 * Syntax is the WHATWG "event stream" grammar: lines end in \n, \r\n or \r
 * (a \r\n split across two feeds is still one line end); a leading BOM is
 * skipped; `:` lines are comments; `field:value` drops one space after the
 * colon; several `data:` lines are joined with \n; `event:` names the event
 * (default "message"); `id:`, `retry:` and unknown fields are ignored; a
 * blank line ends the event, which is dispatched only if it had a `data:`
 * line. An event still open at the end of the stream is never dispatched.
 *
 * Memory: the unfinished event (at most max_event_bytes) plus the complete
 * events fed but not yet pulled. Pull every pending event before feeding
 * again if memory matters; the relay does.
 *
 * One parser per stream, one thread at a time. */
#ifndef ARS_SSE_H
#define ARS_SSE_H

#include <stddef.h>

#include "buf.h"
#include "err.h"
#include "pricing.h"

struct json_object;

/* Caps on what the upstream controls. */
#define ARS_CAP_SSE_EVENT_BYTES   (16 * 1024 * 1024)   /* one event, raw bytes */
#define ARS_SSE_MAX_EVENT_BYTES   ARS_CAP_SSE_EVENT_BYTES   /* the name messages.c uses */
#define ARS_CAP_SSE_JSON_DEPTH    64                   /* nesting of a parsed usage event */
#define ARS_SSE_MAX_COUNT         1000000000LL         /* token counts are clamped to [0, this] */

/* Sizes of the strings kept from usage events (copied with truncation at a
 * UTF-8 character boundary; they are informational, not billing input
 * except `model`, whose real ids are far shorter). */
#define ARS_SSE_MODEL_BYTES          128
#define ARS_SSE_MESSAGE_ID_BYTES     128
#define ARS_SSE_STOP_REASON_BYTES    32
#define ARS_SSE_ERROR_TYPE_BYTES     64
#define ARS_SSE_ERROR_MESSAGE_BYTES  256

/* Parser state. Embeddable; fields are private except `err`. */
struct ars_sse_parser {
    enum ars_err err;          /* sticky: once set, every feed returns it */
    size_t max_event_bytes;
    struct ars_buf raw;        /* bytes from the oldest unpulled event on */
    struct ars_buf joined;     /* data of a multi-line event */
    size_t base;               /* stream offset of raw.data[0] */
    size_t pos;                /* raw offset: next event to pull */
    size_t done;               /* raw offset: end of the last complete event */
    size_t scan;               /* raw offset: where the boundary scan resumes */
    int at_line_start;         /* the line being scanned has no bytes yet */
    int prev_cr;               /* the last byte scanned was a \r line end */
    int bom_done;              /* the start of the stream was checked for a BOM */
};

/* One complete event. Pointers are into the parser and valid until the
 * next ars_sse_feed() or ars_sse_next() on it (or its deinit). */
struct ars_sse_event {
    const char *event;         /* NUL-terminated; "message" when unnamed */
    const char *data;          /* data lines joined with \n, NUL-terminated */
    size_t data_len;           /* bytes of data (it may itself hold NULs) */
};

/* max_event_bytes: cap on the raw bytes of one event, from the end of the
 * previous event through the blank line that ends this one (comment lines
 * and line ends included); 0 means ARS_CAP_SSE_EVENT_BYTES. */
void ars_sse_init(struct ars_sse_parser *p, size_t max_event_bytes);
/* Frees what the parser holds; the struct may be init'ed again. */
void ars_sse_deinit(struct ars_sse_parser *p);

/* Appends n bytes of the stream. Afterwards every event they complete can
 * be pulled with ars_sse_next().
 *
 * *consumed_to_boundary (may be NULL) receives how many bytes of everything
 * fed so far end at the last complete event boundary, i.e. just past the
 * blank line that ended an event (or a keepalive comment block). When a
 * blank line ends in \r, the boundary is reported after the \r at once and
 * moves past a \n that follows, even one that arrives in the next feed; so
 * flushing at each reported offset never holds back a finished event.
 *
 * Returns ARS_OK; ARS_ERR_TOOBIG when an event is over max_event_bytes;
 * ARS_ERR_NOMEM; ARS_ERR_INVALID for data == NULL with n > 0. TOOBIG and
 * NOMEM are sticky (the stream cannot be resynchronised): later feeds
 * return the same error and ignore their bytes. Events complete before the
 * failing one can still be pulled, and *consumed_to_boundary is still
 * filled in. */
ARS_MUST_USE enum ars_err ars_sse_feed(struct ars_sse_parser *p, const char *data, size_t n,
                          size_t *consumed_to_boundary);

/* 1 and fills *ev with the oldest complete event not yet pulled; 0 when
 * there is none. */
int ars_sse_next(struct ars_sse_parser *p, struct ars_sse_event *ev);

/* Usage of one Messages response as the upstream reported it. */
struct ars_sse_usage {
    struct ars_usage usage;    /* counts clamped to [0, ARS_SSE_MAX_COUNT] */
    int have_start;            /* message_start with message.usage was read */
    int have_delta;            /* message_delta with usage was read */
    int saw_stop;              /* message_stop (stream) / a complete message (body) */
    int saw_error;             /* an error event or error body */
    char model[ARS_SSE_MODEL_BYTES];
    char message_id[ARS_SSE_MESSAGE_ID_BYTES];
    char stop_reason[ARS_SSE_STOP_REASON_BYTES];
    char error_type[ARS_SSE_ERROR_TYPE_BYTES];
    char error_message[ARS_SSE_ERROR_MESSAGE_BYTES];
    /* private: the highest raw cache-write figures seen, from which
     * usage.cache_write_5m/1h are derived so nothing is counted twice */
    long long seen_cache_creation;
    long long seen_ephemeral_5m;
    long long seen_ephemeral_1h;
};

/* All zero / empty. */
void ars_sse_usage_init(struct ars_sse_usage *u);

/* Reads usage from one event. Only message_start, message_delta and error
 * are parsed as JSON (one tokener each, a handful per stream);
 * message_stop sets saw_stop; every other event, notably the
 * content_block_delta bulk of the stream, costs one string compare.
 *
 * message_start: message.usage input_tokens, cache_read_input_tokens,
 * cache_creation_input_tokens with its cache_creation split
 * (ephemeral_5m_input_tokens / ephemeral_1h_input_tokens), output_tokens
 * (the initial count); message.model, message.id.
 * message_delta: usage.output_tokens replaces the output count (it is
 * cumulative); input and cache fields, which newer API versions repeat
 * there cumulatively, are merged as the highest value seen per field,
 * never summed; delta.stop_reason.
 * Cache writes: the split is billed as given; the part of
 * cache_creation_input_tokens that the split does not explain (all of it
 * when no split was sent) is billed as 5-minute writes.
 * usage.speed == "fast" sets usage.fast.
 * error: saw_error, error.type, error.message (saw_error even when the data
 * is not JSON). Malformed JSON and fields of the wrong type are ignored. */
void ars_sse_usage_update(struct ars_sse_usage *u, const struct ars_sse_event *ev);

/* Same fields from a non-stream Messages response body: top-level usage
 * (output_tokens is final), model, id, stop_reason; have_start and
 * have_delta when usage is present, saw_stop when it is a message
 * (type "message"). A `type: "error"` body sets saw_error, error_type and
 * error_message. NULL or a non-object does nothing. */
void ars_sse_usage_from_message(struct ars_sse_usage *u, struct json_object *message);

/* Usage of a whole answer held in memory, read as what the upstream
 * sent, whatever the request asked for: content_type text/event-stream
 * (any case, parameters ignored) is parsed as an event stream and every
 * complete event goes through ars_sse_usage_update(); anything else (or
 * NULL) is parsed as one JSON message (ars_sse_usage_from_message, depth
 * capped at ARS_CAP_SSE_JSON_DEPTH). ARS_OK when usage was found
 * (have_start or have_delta); ARS_ERR_INVALID when it was not (nothing to
 * bill from: the caller must say so, never bill 0 silently); ARS_ERR_NOMEM. */
ARS_MUST_USE enum ars_err ars_sse_usage_from_body(struct ars_sse_usage *u, const char *content_type, const char *body,
                                     size_t len);

#endif
