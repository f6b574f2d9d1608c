/* libFuzzer target for the SSE parser and usage extraction
 * (handlers/relay/sse.c). Build and run: check/fuzz/README.md.
 *
 * Input: byte 0 picks the event cap, bytes 1-4 seed the chunking, the rest
 * is the stream. The stream is fed twice, whole and in pseudo-random pieces
 * (empty ones included), and both runs must agree on every event, on the
 * usage, on the error and on the final boundary; the boundary must never
 * move backwards nor past the bytes fed. Every event's data also goes
 * through the JSON paths as message_start, message_delta and error, and the
 * whole stream through ars_sse_usage_from_message. Crashes, sanitizer
 * reports and broken invariants abort. */
#include <json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every event of one run, concatenated: name NUL data-length data. */
struct trace {
    struct ars_buf events;
    struct ars_sse_usage usage;
    enum ars_err err;
    size_t boundary;
    size_t fed;
};

static void trace_init(struct trace *t)
{
    memset(t, 0, sizeof(*t));
    ars_buf_init(&t->events, SIZE_MAX / 4);
    ars_sse_usage_init(&t->usage);
}

static void exercise_json(const struct ars_sse_event *ev)
{
    static const char *const names[] = { "message_start", "message_delta", "error", "message_stop" };
    struct ars_sse_usage u;
    ars_sse_usage_init(&u);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct ars_sse_event e = { names[i], ev->data, ev->data_len };
        ars_sse_usage_update(&u, &e);
    }
    CHECK(u.usage.input >= 0 && u.usage.input <= ARS_SSE_MAX_COUNT);
    CHECK(u.usage.output >= 0 && u.usage.output <= ARS_SSE_MAX_COUNT);
    CHECK(u.usage.cache_read >= 0 && u.usage.cache_read <= ARS_SSE_MAX_COUNT);
    CHECK(u.usage.cache_write_5m >= 0 && u.usage.cache_write_5m <= ARS_SSE_MAX_COUNT);
    CHECK(u.usage.cache_write_1h >= 0 && u.usage.cache_write_1h <= ARS_SSE_MAX_COUNT);
    CHECK(memchr(u.model, '\0', sizeof(u.model)) && memchr(u.error_message, '\0', sizeof(u.error_message)));
}

static void feed(struct ars_sse_parser *p, struct trace *t, const char *s, size_t n, int deep)
{
    size_t b = (size_t)-1;
    enum ars_err err = ars_sse_feed(p, s, n, &b);
    t->fed += n;
    CHECK(err == ARS_OK || err == ARS_ERR_TOOBIG);
    CHECK(b != (size_t)-1 && b >= t->boundary && b <= t->fed);
    t->boundary = b;
    if (err && !t->err)
        t->err = err;
    CHECK(!t->err || err == t->err);                  /* sticky */

    struct ars_sse_event ev;
    while (ars_sse_next(p, &ev)) {
        CHECK(ev.event && ev.data && ev.data[ev.data_len] == '\0');
        CHECK(ev.data_len <= p->max_event_bytes);
        size_t name_len = strlen(ev.event);
        CHECK(ars_buf_add(&t->events, ev.event, name_len + 1) == ARS_OK);
        CHECK(ars_buf_add(&t->events, &ev.data_len, sizeof(ev.data_len)) == ARS_OK);
        CHECK(ars_buf_add(&t->events, ev.data, ev.data_len) == ARS_OK);
        ars_sse_usage_update(&t->usage, &ev);
        if (deep)
            exercise_json(&ev);
    }
}

static uint32_t next_rand(uint32_t *state)
{
    uint32_t x = *state;                              /* xorshift32 */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

static int same_usage(const struct ars_sse_usage *a, const struct ars_sse_usage *b)
{
    return a->usage.input == b->usage.input && a->usage.output == b->usage.output
        && a->usage.cache_read == b->usage.cache_read
        && a->usage.cache_write_5m == b->usage.cache_write_5m
        && a->usage.cache_write_1h == b->usage.cache_write_1h
        && a->usage.fast == b->usage.fast
        && a->have_start == b->have_start && a->have_delta == b->have_delta
        && a->saw_stop == b->saw_stop && a->saw_error == b->saw_error
        && strcmp(a->model, b->model) == 0 && strcmp(a->message_id, b->message_id) == 0
        && strcmp(a->stop_reason, b->stop_reason) == 0
        && strcmp(a->error_type, b->error_type) == 0
        && strcmp(a->error_message, b->error_message) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t caps[] = { 1, 8, 32, 64, 100, 256, 1024, 4096, 0 };
    struct ars_sse_parser whole, pieces;
    struct trace tw, tp;

    if (size < 5)
        return 0;
    size_t cap = caps[data[0] % (sizeof(caps) / sizeof(caps[0]))];
    uint32_t seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16
                    | (uint32_t)data[4] << 24;
    const char *s = (const char *)data + 5;
    size_t n = size - 5;

    trace_init(&tw);
    trace_init(&tp);
    ars_sse_init(&whole, cap);
    ars_sse_init(&pieces, cap);

    feed(&whole, &tw, s, n, 1);

    /* pieces of 0..2*avg bytes, avg from 1 to 64 */
    uint32_t rng = seed ? seed : 1;
    size_t avg = 1 + (seed >> 26);
    for (size_t off = 0; off < n;) {
        size_t k = next_rand(&rng) % (2 * avg + 1);
        if (k > n - off)
            k = n - off;
        feed(&pieces, &tp, s + off, k, 0);
        off += k;
    }
    feed(&pieces, &tp, NULL, 0, 0);

    CHECK(tw.err == tp.err);
    CHECK(tw.boundary == tp.boundary);
    CHECK(tw.events.len == tp.events.len);
    CHECK(tw.events.len == 0 || memcmp(tw.events.data, tp.events.data, tw.events.len) == 0);
    CHECK(same_usage(&tw.usage, &tp.usage));

    /* the stream as a non-stream body */
    if (n <= INT32_MAX) {
        struct json_tokener *tok = json_tokener_new();
        if (tok) {
            struct json_object *o = json_tokener_parse_ex(tok, s, (int)n);
            struct ars_sse_usage u;
            ars_sse_usage_init(&u);
            ars_sse_usage_from_message(&u, o);
            json_object_put(o);
            json_tokener_free(tok);
        }
    }

    ars_sse_deinit(&whole);
    ars_sse_deinit(&pieces);
    ars_buf_deinit(&tw.events);
    ars_buf_deinit(&tp.events);
    return 0;
}
