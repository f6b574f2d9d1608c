/* SSE parser and usage extraction: a real Messages stream however it is
 * cut, line-end variants, comments, multi-line data, the event cap, exact
 * flush boundaries, and usage from streams and non-stream bodies. */
#include <check.h>
#include "plan.h"
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

/* ---- a real-looking Messages stream -------------------------------------- */

static const char *const NAMES[] = {
    "message_start",
    "content_block_start",
    "ping",
    "content_block_delta",
    "content_block_delta",
    "content_block_delta",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
};

static const char *const DATAS[] = {
    "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\","
    "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\","
    "\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,"
    "\"cache_creation_input_tokens\":3000,\"cache_read_input_tokens\":12000,"
    "\"cache_creation\":{\"ephemeral_5m_input_tokens\":1000,\"ephemeral_1h_input_tokens\":2000},"
    "\"output_tokens\":2,\"service_tier\":\"standard\"}}}",
    "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}",
    "{\"type\": \"ping\"}",
    "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}",
    "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\" world.\\n\\nevent: not an event\\ndata: nor data\"}}",
    "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\" Caf\\u00e9 \xe2\x98\x95 and a colon: here\"}}",
    "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"!\"}}",
    "{\"type\":\"content_block_stop\",\"index\":0}",
    "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},"
    "\"usage\":{\"output_tokens\":15}}",
    "{\"type\":\"message_stop\"}",
};

#define N_STREAM_EVENTS (sizeof(NAMES) / sizeof(NAMES[0]))
#define MAX_EVENTS 64
#define MAX_DATA 1024
#define MAX_STREAM 8192

/* The stream with `eol` as every line end; ends[i] receives the offset just
 * past event i's blank line. Returns its length. */
static size_t build_stream(char *out, size_t cap, const char *eol, size_t *ends)
{
    size_t len = 0;
    for (size_t i = 0; i < N_STREAM_EVENTS; i++) {
        int n = snprintf(out + len, cap - len, "event: %s%sdata: %s%s%s",
                         NAMES[i], eol, DATAS[i], eol, eol);
        ck_assert(n > 0 && (size_t)n < cap - len);
        len += (size_t)n;
        if (ends)
            ends[i] = len;
    }
    return len;
}

/* ---- feeding and collecting ---------------------------------------------- */

struct run {
    struct ars_sse_parser p;
    size_t n;
    char name[MAX_EVENTS][64];
    char data[MAX_EVENTS][MAX_DATA];
    size_t len[MAX_EVENTS];
    struct ars_sse_usage usage;
    enum ars_err err;          /* first error a feed returned */
    size_t boundary;           /* as reported by the last feed */
};

static void run_start(struct run *r, size_t max_event_bytes)
{
    memset(r, 0, sizeof(*r));
    ars_sse_init(&r->p, max_event_bytes);
    ars_sse_usage_init(&r->usage);
}

/* Feeds one piece and pulls everything it completed. */
static enum ars_err run_feed(struct run *r, const char *s, size_t n)
{
    enum ars_err err = ars_sse_feed(&r->p, s, n, &r->boundary);
    if (err && !r->err)
        r->err = err;
    struct ars_sse_event ev;
    while (ars_sse_next(&r->p, &ev)) {
        ck_assert_uint_lt(r->n, MAX_EVENTS);
        ck_assert_uint_lt(strlen(ev.event), sizeof(r->name[0]));
        ck_assert_uint_lt(ev.data_len, MAX_DATA);
        ck_assert_msg(ev.data[ev.data_len] == '\0', "data is not NUL-terminated");
        memcpy(r->name[r->n], ev.event, strlen(ev.event) + 1);
        memcpy(r->data[r->n], ev.data, ev.data_len + 1);
        r->len[r->n] = ev.data_len;
        r->n++;
        ars_sse_usage_update(&r->usage, &ev);
    }
    return err;
}

static void run_end(struct run *r)
{
    ars_sse_deinit(&r->p);
}

static void run_split(struct run *r, const char *s, size_t n, size_t split)
{
    run_start(r, 0);
    run_feed(r, s, split);
    run_feed(r, s + split, n - split);
    run_end(r);
}

static void run_bytes(struct run *r, const char *s, size_t n)
{
    run_start(r, 0);
    for (size_t i = 0; i < n; i++)
        run_feed(r, s + i, 1);
    run_end(r);
}

static void run_text(struct run *r, const char *s)
{
    run_split(r, s, strlen(s), strlen(s));
}

static void assert_event(const struct run *r, size_t i, const char *name, const char *data)
{
    ck_assert_uint_lt(i, r->n);
    ck_assert_str_eq(r->name[i], name);
    ck_assert_uint_eq(r->len[i], strlen(data));
    ck_assert_str_eq(r->data[i], data);
}

/* The events and usage of the stream above, whatever the line ends. */
static void assert_stream_result(const struct run *r)
{
    ck_assert_int_eq(r->err, ARS_OK);
    ck_assert_uint_eq(r->n, N_STREAM_EVENTS);
    for (size_t i = 0; i < N_STREAM_EVENTS; i++)
        assert_event(r, i, NAMES[i], DATAS[i]);
    const struct ars_sse_usage *u = &r->usage;
    ck_assert_int_eq(u->usage.input, 472);
    ck_assert_int_eq(u->usage.cache_read, 12000);
    ck_assert_int_eq(u->usage.cache_write_5m, 1000);
    ck_assert_int_eq(u->usage.cache_write_1h, 2000);
    ck_assert_int_eq(u->usage.output, 15);
    ck_assert_int_eq(u->usage.fast, 0);
    ck_assert_int_eq(u->have_start, 1);
    ck_assert_int_eq(u->have_delta, 1);
    ck_assert_int_eq(u->saw_stop, 1);
    ck_assert_int_eq(u->saw_error, 0);
    ck_assert_str_eq(u->model, "claude-sonnet-4-5-20250929");
    ck_assert_str_eq(u->message_id, "msg_01XFDUDYJgAACzvnptvVoYEL");
    ck_assert_str_eq(u->stop_reason, "end_turn");
    ck_assert_str_eq(u->error_type, "");
}

/* Whole, byte by byte and in every two-piece split. */
static void assert_stream_any_cut(const char *eol)
{
    static char s[MAX_STREAM];
    static struct run r;
    size_t n = build_stream(s, sizeof(s), eol, NULL);

    run_split(&r, s, n, n);
    assert_stream_result(&r);
    ck_assert_uint_eq(r.boundary, n);
    run_bytes(&r, s, n);
    assert_stream_result(&r);
    ck_assert_uint_eq(r.boundary, n);
    for (size_t split = 0; split <= n; split++) {
        run_split(&r, s, n, split);
        assert_stream_result(&r);
        ck_assert_msg(r.boundary == n, "split at %zu: boundary %zu of %zu", split, r.boundary, n);
    }
}

/* ---- tests: the stream ----------------------------------------------------- */

START_TEST(real_stream_gives_the_same_events_and_usage_whole_byte_by_byte_and_split_anywhere)
{
    assert_stream_any_cut("\n");
}
END_TEST

START_TEST(crlf_line_ends_give_the_same_events_and_usage_however_cut)
{
    assert_stream_any_cut("\r\n");
}
END_TEST

START_TEST(cr_line_ends_give_the_same_events_and_usage_however_cut)
{
    assert_stream_any_cut("\r");
}
END_TEST

START_TEST(boundary_is_reported_exactly_at_each_event_end_when_fed_byte_by_byte)
{
    static char s[MAX_STREAM];
    size_t ends[N_STREAM_EVENTS];
    size_t n = build_stream(s, sizeof(s), "\n", ends);
    struct ars_sse_parser p;
    struct ars_sse_event ev;

    ars_sse_init(&p, 0);
    size_t next_end = 0, pulled = 0;
    for (size_t k = 1; k <= n; k++) {
        size_t b = 12345;
        ck_assert_int_eq(ars_sse_feed(&p, s + k - 1, 1, &b), ARS_OK);
        size_t want = 0;
        while (next_end < N_STREAM_EVENTS && ends[next_end] <= k)
            next_end++;
        if (next_end)
            want = ends[next_end - 1];
        ck_assert_msg(b == want, "after %zu bytes: boundary %zu, want %zu", k, b, want);
        /* an event can be pulled exactly when its boundary is reported */
        while (ars_sse_next(&p, &ev))
            pulled++;
        ck_assert_uint_eq(pulled, next_end);
    }
    ars_sse_deinit(&p);
}
END_TEST

START_TEST(boundary_in_a_multi_event_chunk_is_the_end_of_the_last_complete_event)
{
    const char *s = "event: a\ndata: 1\n\nevent: b\ndata: 2\n\nevent: c\ndata: 3";
    struct ars_sse_parser p;
    struct ars_sse_event ev;
    size_t b = 0;

    ars_sse_init(&p, 0);
    ck_assert_int_eq(ars_sse_feed(&p, s, strlen(s), &b), ARS_OK);
    ck_assert_uint_eq(b, strlen("event: a\ndata: 1\n\nevent: b\ndata: 2\n\n"));
    ck_assert_int_eq(ars_sse_next(&p, &ev), 1);
    ck_assert_str_eq(ev.event, "a");
    ck_assert_int_eq(ars_sse_next(&p, &ev), 1);
    ck_assert_str_eq(ev.event, "b");
    ck_assert_int_eq(ars_sse_next(&p, &ev), 0);
    /* the boundary counts every byte fed, across feeds */
    ck_assert_int_eq(ars_sse_feed(&p, "\n\n", 2, &b), ARS_OK);
    ck_assert_uint_eq(b, strlen(s) + 2);
    ck_assert_int_eq(ars_sse_next(&p, &ev), 1);
    ck_assert_str_eq(ev.event, "c");
    ck_assert_str_eq(ev.data, "3");
    /* NULL for the boundary is allowed */
    ck_assert_int_eq(ars_sse_feed(&p, "data: x\n\n", 9, NULL), ARS_OK);
    ck_assert_int_eq(ars_sse_next(&p, &ev), 1);
    ck_assert_str_eq(ev.data, "x");
    ars_sse_deinit(&p);
}
END_TEST

START_TEST(crlf_split_between_cr_and_lf_reports_the_boundary_at_the_cr_then_past_the_lf)
{
    const char *a = "event: a\r\ndata: 1\r\n\r";
    struct ars_sse_parser p;
    struct ars_sse_event ev;
    size_t b = 0;

    ars_sse_init(&p, 0);
    ck_assert_int_eq(ars_sse_feed(&p, a, strlen(a), &b), ARS_OK);
    ck_assert_uint_eq(b, strlen(a));                  /* the event is over at the \r */
    ck_assert_int_eq(ars_sse_next(&p, &ev), 1);
    ck_assert_str_eq(ev.data, "1");
    ck_assert_int_eq(ars_sse_feed(&p, "\n", 1, &b), ARS_OK);
    ck_assert_uint_eq(b, strlen(a) + 1);              /* its \n belongs to it */
    ck_assert_int_eq(ars_sse_next(&p, &ev), 0);       /* and is no event of its own */
    ck_assert_int_eq(ars_sse_feed(&p, "data: 2\r\n\r\n", 11, &b), ARS_OK);
    ck_assert_uint_eq(b, strlen(a) + 12);
    ck_assert_int_eq(ars_sse_next(&p, &ev), 1);
    ck_assert_str_eq(ev.data, "2");
    ck_assert_int_eq(ars_sse_next(&p, &ev), 0);
    ars_sse_deinit(&p);
}
END_TEST

/* ---- tests: syntax ----------------------------------------------------------- */

START_TEST(comment_lines_are_skipped_and_a_keepalive_block_is_a_boundary_but_no_event)
{
    static struct run r;
    const char *s = ": keepalive\n\nevent: a\n: inside\ndata: 1\n:\n\n";
    run_text(&r, s);
    ck_assert_int_eq(r.err, ARS_OK);
    ck_assert_uint_eq(r.n, 1);
    assert_event(&r, 0, "a", "1");

    struct ars_sse_parser p;
    size_t b = 0;
    ars_sse_init(&p, 0);
    ck_assert_int_eq(ars_sse_feed(&p, ": keepalive\n\n", 13, &b), ARS_OK);
    ck_assert_uint_eq(b, 13);
    struct ars_sse_event ev;
    ck_assert_int_eq(ars_sse_next(&p, &ev), 0);
    ars_sse_deinit(&p);
}
END_TEST

START_TEST(multiple_data_lines_are_joined_with_newlines)
{
    static struct run r;
    run_text(&r, "data: line1\ndata:line2\ndata\ndata:  two spaces\n\n");
    ck_assert_uint_eq(r.n, 1);
    assert_event(&r, 0, "message", "line1\nline2\n\n two spaces");

    run_bytes(&r, "event: x\r\ndata: a\r\ndata: b\r\n\r\n", 30);
    ck_assert_uint_eq(r.n, 1);
    assert_event(&r, 0, "x", "a\nb");
}
END_TEST

START_TEST(field_without_space_after_colon_and_unnamed_event_default_to_message)
{
    static struct run r;
    run_text(&r, "event:ping\ndata:{}\n\ndata: plain\n\nevent:\ndata: empty name\n\n");
    ck_assert_uint_eq(r.n, 3);
    assert_event(&r, 0, "ping", "{}");
    assert_event(&r, 1, "message", "plain");
    assert_event(&r, 2, "message", "empty name");
}
END_TEST

START_TEST(id_retry_and_unknown_fields_are_ignored)
{
    static struct run r;
    run_text(&r, "id: 42\nretry: 1000\nevent: x\nfoo: bar\nnocolon\ndata: y\nid\n\n");
    ck_assert_int_eq(r.err, ARS_OK);
    ck_assert_uint_eq(r.n, 1);
    assert_event(&r, 0, "x", "y");
}
END_TEST

START_TEST(block_without_data_is_not_dispatched_but_empty_data_is)
{
    static struct run r;
    run_text(&r, "event: lonely\n\ndata:\n\ndata\n\n\n\n");
    ck_assert_uint_eq(r.n, 2);
    assert_event(&r, 0, "message", "");
    assert_event(&r, 1, "message", "");
    ck_assert_uint_eq(r.boundary, strlen("event: lonely\n\ndata:\n\ndata\n\n\n\n"));
}
END_TEST

START_TEST(unfinished_event_at_the_end_is_not_dispatched)
{
    static struct run r;
    run_text(&r, "data: 1\n\ndata: 2\n");
    ck_assert_uint_eq(r.n, 1);
    assert_event(&r, 0, "message", "1");
    ck_assert_uint_eq(r.boundary, 9);
}
END_TEST

START_TEST(bom_at_the_start_is_skipped_even_split_across_feeds_and_counted_in_the_boundary)
{
    static struct run r;
    const char *s = "\xEF\xBB\xBF" "event: a\ndata: 1\n\n";
    size_t n = strlen(s);
    for (size_t split = 0; split <= n; split++) {
        run_split(&r, s, n, split);
        ck_assert_int_eq(r.err, ARS_OK);
        ck_assert_uint_eq(r.n, 1);
        assert_event(&r, 0, "a", "1");
        ck_assert_uint_eq(r.boundary, n);
    }
    run_bytes(&r, s, n);
    ck_assert_uint_eq(r.n, 1);
    assert_event(&r, 0, "a", "1");

    /* only at the start: a later BOM is part of the field name */
    run_text(&r, "data: 1\n\n\xEF\xBB\xBF" "data: 2\n\n");
    ck_assert_uint_eq(r.n, 1);
    assert_event(&r, 0, "message", "1");
}
END_TEST

START_TEST(data_may_hold_nul_bytes)
{
    static struct run r;
    run_split(&r, "data: a\0b\n\n", 11, 11);
    ck_assert_uint_eq(r.n, 1);
    ck_assert_uint_eq(r.len[0], 3);
    ck_assert_mem_eq(r.data[0], "a\0b", 3);
}
END_TEST

/* ---- tests: the cap ------------------------------------------------------------ */

START_TEST(event_over_the_cap_is_toobig_and_the_parser_stays_failed)
{
    struct ars_sse_parser p;
    struct ars_sse_event ev;
    char big[200];
    size_t b = 0;

    memset(big, 'x', sizeof(big));
    ars_sse_init(&p, 64);
    ck_assert_int_eq(ars_sse_feed(&p, "data: ok\n\ndata: ", 16, &b), ARS_OK);
    ck_assert_int_eq(ars_sse_feed(&p, big, sizeof(big), &b), ARS_ERR_TOOBIG);
    ck_assert_uint_eq(b, 10);                          /* still the last good boundary */
    ck_assert_int_eq(ars_sse_feed(&p, "\n\ndata: y\n\n", 11, &b), ARS_ERR_TOOBIG);
    ck_assert_int_eq(p.err, ARS_ERR_TOOBIG);
    ck_assert_uint_eq(b, 10);
    /* the event completed before the failure can still be pulled */
    ck_assert_int_eq(ars_sse_next(&p, &ev), 1);
    ck_assert_str_eq(ev.data, "ok");
    ck_assert_int_eq(ars_sse_next(&p, &ev), 0);
    ars_sse_deinit(&p);
}
END_TEST

START_TEST(event_of_exactly_the_cap_passes_and_one_byte_more_is_toobig)
{
    char s[65];
    struct ars_sse_parser p;
    struct ars_sse_event ev;

    /* 64 bytes: "data: " + 56 x + "\n\n" */
    memcpy(s, "data: ", 6);
    memset(s + 6, 'x', 57);
    s[62] = '\n';
    s[63] = '\n';
    ars_sse_init(&p, 64);
    ck_assert_int_eq(ars_sse_feed(&p, s, 64, NULL), ARS_OK);
    ck_assert_int_eq(ars_sse_next(&p, &ev), 1);
    ck_assert_uint_eq(ev.data_len, 56);
    ars_sse_deinit(&p);

    /* 65 bytes: "data: " + 57 x + "\n\n", complete within one feed */
    s[62] = 'x';
    s[63] = '\n';
    s[64] = '\n';
    ars_sse_init(&p, 64);
    ck_assert_int_eq(ars_sse_feed(&p, "data: 1\n\n", 9, NULL), ARS_OK);
    ck_assert_int_eq(ars_sse_feed(&p, s, 65, NULL), ARS_ERR_TOOBIG);
    ck_assert_int_eq(ars_sse_next(&p, &ev), 1);          /* the one before it */
    ck_assert_str_eq(ev.data, "1");
    ck_assert_int_eq(ars_sse_next(&p, &ev), 0);
    ars_sse_deinit(&p);

    /* the same 65 bytes fed one at a time: refused at the 65th */
    ars_sse_init(&p, 64);
    for (size_t i = 0; i < 64; i++)
        ck_assert_int_eq(ars_sse_feed(&p, s + i, 1, NULL), ARS_OK);
    ck_assert_int_eq(ars_sse_feed(&p, s + 64, 1, NULL), ARS_ERR_TOOBIG);
    ars_sse_deinit(&p);
}
END_TEST

START_TEST(default_cap_is_16_mib)
{
    struct ars_sse_parser p;
    static char chunk[64 * 1024];
    enum ars_err err = ARS_OK;
    size_t fed = 0;

    memset(chunk, 'x', sizeof(chunk));
    ars_sse_init(&p, 0);
    ck_assert_uint_eq(p.max_event_bytes, 16u * 1024 * 1024);
    ck_assert_int_eq(ars_sse_feed(&p, "data: ", 6, NULL), ARS_OK);
    fed = 6;
    while (!err && fed <= 17u * 1024 * 1024) {
        err = ars_sse_feed(&p, chunk, sizeof(chunk), NULL);
        fed += sizeof(chunk);
    }
    ck_assert_int_eq(err, ARS_ERR_TOOBIG);
    ck_assert_uint_gt(fed, 16u * 1024 * 1024);
    ck_assert_uint_le(fed, 16u * 1024 * 1024 + sizeof(chunk));
    ars_sse_deinit(&p);
}
END_TEST

START_TEST(null_data_with_a_length_is_invalid_and_not_sticky)
{
    struct ars_sse_parser p;
    struct ars_sse_event ev;
    ars_sse_init(&p, 0);
    ck_assert_int_eq(ars_sse_feed(&p, NULL, 3, NULL), ARS_ERR_INVALID);
    ck_assert_int_eq(ars_sse_feed(&p, NULL, 0, NULL), ARS_OK);
    ck_assert_int_eq(ars_sse_feed(&p, "data: 1\n\n", 9, NULL), ARS_OK);
    ck_assert_int_eq(ars_sse_next(&p, &ev), 1);
    ars_sse_deinit(&p);
    ars_sse_deinit(&p);                                /* twice is harmless */
}
END_TEST

/* ---- tests: usage from a stream -------------------------------------------------- */

/* Usage after feeding `s` whole. */
static struct ars_sse_usage usage_of(const char *s)
{
    static struct run r;
    run_text(&r, s);
    ck_assert_int_eq(r.err, ARS_OK);
    return r.usage;
}

START_TEST(cache_creation_without_the_split_is_billed_as_5_minute_writes)
{
    struct ars_sse_usage u = usage_of(
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-haiku-4-5\","
        "\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":500,"
        "\"cache_read_input_tokens\":7,\"output_tokens\":1}}}\n\n"
        "event: message_delta\n"
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},"
        "\"usage\":{\"output_tokens\":40}}\n\n");
    ck_assert_int_eq(u.usage.input, 10);
    ck_assert_int_eq(u.usage.cache_write_5m, 500);
    ck_assert_int_eq(u.usage.cache_write_1h, 0);
    ck_assert_int_eq(u.usage.cache_read, 7);
    ck_assert_int_eq(u.usage.output, 40);
    ck_assert_str_eq(u.stop_reason, "max_tokens");
    ck_assert_int_eq(u.saw_stop, 0);
}
END_TEST

START_TEST(message_delta_usage_is_merged_as_the_maximum_never_the_sum)
{
    struct ars_sse_usage u = usage_of(
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":100,"
        "\"cache_creation_input_tokens\":30,\"cache_read_input_tokens\":50,"
        "\"cache_creation\":{\"ephemeral_5m_input_tokens\":30,\"ephemeral_1h_input_tokens\":0},"
        "\"output_tokens\":1}}}\n\n"
        "event: message_delta\n"
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},"
        "\"usage\":{\"input_tokens\":100,\"cache_creation_input_tokens\":30,"
        "\"cache_read_input_tokens\":50,\"output_tokens\":77}}\n\n");
    ck_assert_int_eq(u.usage.input, 100);
    ck_assert_int_eq(u.usage.cache_read, 50);
    ck_assert_int_eq(u.usage.cache_write_5m, 30);
    ck_assert_int_eq(u.usage.cache_write_1h, 0);
    ck_assert_int_eq(u.usage.output, 77);

    /* a higher delta value wins, a lower or missing one does not lower it */
    u = usage_of(
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":100,"
        "\"cache_read_input_tokens\":50,\"output_tokens\":1}}}\n\n"
        "event: message_delta\n"
        "data: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":120,"
        "\"cache_read_input_tokens\":20,\"output_tokens\":10}}\n\n"
        "event: message_delta\n"
        "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":25}}\n\n");
    ck_assert_int_eq(u.usage.input, 120);
    ck_assert_int_eq(u.usage.cache_read, 50);
    ck_assert_int_eq(u.usage.output, 25);
}
END_TEST

START_TEST(cache_split_arriving_only_in_message_delta_is_not_counted_twice)
{
    struct ars_sse_usage u = usage_of(
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,"
        "\"cache_creation_input_tokens\":300,\"output_tokens\":1}}}\n\n"
        "event: message_delta\n"
        "data: {\"type\":\"message_delta\",\"usage\":{\"cache_creation_input_tokens\":300,"
        "\"cache_creation\":{\"ephemeral_5m_input_tokens\":100,\"ephemeral_1h_input_tokens\":200},"
        "\"output_tokens\":9}}\n\n");
    ck_assert_int_eq(u.usage.cache_write_5m, 100);
    ck_assert_int_eq(u.usage.cache_write_1h, 200);

    /* and a split in message_start is not undone by a bare total later */
    u = usage_of(
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"cache_creation_input_tokens\":300,"
        "\"cache_creation\":{\"ephemeral_5m_input_tokens\":100,\"ephemeral_1h_input_tokens\":200}}}}\n\n"
        "event: message_delta\n"
        "data: {\"type\":\"message_delta\",\"usage\":{\"cache_creation_input_tokens\":300,"
        "\"output_tokens\":9}}\n\n");
    ck_assert_int_eq(u.usage.cache_write_5m, 100);
    ck_assert_int_eq(u.usage.cache_write_1h, 200);
}
END_TEST

START_TEST(cache_creation_the_split_does_not_explain_is_billed_as_5_minute_writes)
{
    struct ars_sse_usage u = usage_of(
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"cache_creation_input_tokens\":500,"
        "\"cache_creation\":{\"ephemeral_1h_input_tokens\":200}}}}\n\n");
    ck_assert_int_eq(u.usage.cache_write_5m, 300);
    ck_assert_int_eq(u.usage.cache_write_1h, 200);
}
END_TEST

START_TEST(error_event_mid_stream_is_recorded_and_start_usage_kept)
{
    struct ars_sse_usage u = usage_of(
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"model\":\"claude-opus-4-5\","
        "\"usage\":{\"input_tokens\":900,\"output_tokens\":1}}}\n\n"
        "event: content_block_start\n"
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
        "event: content_block_delta\n"
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
        "event: error\n"
        "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
    ck_assert_int_eq(u.saw_error, 1);
    ck_assert_str_eq(u.error_type, "overloaded_error");
    ck_assert_str_eq(u.error_message, "Overloaded");
    ck_assert_int_eq(u.saw_stop, 0);
    ck_assert_int_eq(u.have_delta, 0);
    ck_assert_int_eq(u.have_start, 1);
    ck_assert_int_eq(u.usage.input, 900);
    ck_assert_int_eq(u.usage.output, 1);
    ck_assert_str_eq(u.model, "claude-opus-4-5");

    u = usage_of("event: error\ndata: upstream said no\n\n");
    ck_assert_int_eq(u.saw_error, 1);
    ck_assert_str_eq(u.error_type, "");
}
END_TEST

START_TEST(garbage_json_in_message_start_leaves_usage_at_zero)
{
    static const char *const bad[] = {
        "not json",
        "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5",
        "[1,2,3]",
        "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5}}} trailing",
        "{\"type\":\"message_start\",\"message\":\"a string\"}",
        "{\"type\":\"message_start\",\"message\":{\"usage\":[5]}}",
        ("{\"type\":\"message_start\",\"message\":{\"model\":42,\"id\":null,\"usage\":"
         "{\"input_tokens\":\"100\",\"output_tokens\":true,\"cache_creation\":7}}}"),
        "",
        "\"\\ud800\"",
    };
    static char deep[4096 + 64];
    size_t len = 0;
    len += (size_t)snprintf(deep, sizeof(deep), "{\"message\":");
    for (int i = 0; i < 2000; i++)
        deep[len++] = '[';
    deep[len] = '\0';

    for (size_t i = 0; i <= sizeof(bad) / sizeof(bad[0]); i++) {
        struct ars_sse_usage u;
        struct ars_sse_event ev = { "message_start", i < sizeof(bad) / sizeof(bad[0]) ? bad[i] : deep, 0 };
        ev.data_len = strlen(ev.data);
        ars_sse_usage_init(&u);
        ars_sse_usage_update(&u, &ev);
        ck_assert_int_eq(u.usage.input, 0);
        ck_assert_int_eq(u.usage.output, 0);
        ck_assert_int_eq(u.usage.cache_write_5m, 0);
        ck_assert_int_eq(u.usage.cache_write_1h, 0);
        ck_assert_int_eq(u.usage.cache_read, 0);
        ck_assert_str_eq(u.model, "");
        ck_assert_str_eq(u.message_id, "");
        ck_assert_msg(i == 6 || u.have_start == 0, "case %zu counted as a start", i);
    }
}
END_TEST

START_TEST(counts_are_clamped_to_zero_and_one_billion)
{
    struct ars_sse_usage u = usage_of(
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{"
        "\"input_tokens\":99999999999999999999999,\"cache_read_input_tokens\":-5,"
        "\"cache_creation_input_tokens\":1.5e12,\"output_tokens\":12.7}}}\n\n");
    ck_assert_int_eq(u.usage.input, 1000000000);
    ck_assert_int_eq(u.usage.cache_read, 0);
    ck_assert_int_eq(u.usage.cache_write_5m, 1000000000);
    ck_assert_int_eq(u.usage.output, 12);

    u = usage_of(
        "event: message_delta\n"
        "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":-1e300,"
        "\"cache_creation_input_tokens\":1000000001,\"cache_creation\":{"
        "\"ephemeral_5m_input_tokens\":1000000000,\"ephemeral_1h_input_tokens\":1000000000}}}\n\n");
    ck_assert_int_eq(u.usage.output, 0);
    ck_assert_int_eq(u.usage.cache_write_5m, 1000000000);
    ck_assert_int_eq(u.usage.cache_write_1h, 1000000000);
}
END_TEST

START_TEST(long_strings_are_cut_to_their_field_at_a_character_boundary)
{
    static char s[4096];
    char model[300];
    memset(model, 'm', sizeof(model) - 1);
    model[sizeof(model) - 1] = '\0';
    /* 126 ASCII bytes then a 2-byte character: it does not fit in 127 */
    char id[200];
    memset(id, 'i', 126);
    memcpy(id + 126, "\xc3\xa9tail", 7);
    snprintf(s, sizeof(s),
             "event: message_start\n"
             "data: {\"type\":\"message_start\",\"message\":{\"model\":\"%s\",\"id\":\"%s\","
             "\"usage\":{\"input_tokens\":1}}}\n\n", model, id);
    struct ars_sse_usage u = usage_of(s);
    ck_assert_uint_eq(strlen(u.model), sizeof(u.model) - 1);
    ck_assert_uint_eq(strlen(u.message_id), 126);
    ck_assert_int_eq(u.usage.input, 1);
}
END_TEST

START_TEST(content_block_delta_never_changes_usage)
{
    struct ars_sse_usage u = usage_of(
        "event: content_block_delta\n"
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5}},"
        "\"usage\":{\"output_tokens\":9}}\n\n"
        "event: ping\ndata: {\"type\":\"message_stop\"}\n\n");
    ck_assert_int_eq(u.usage.input, 0);
    ck_assert_int_eq(u.usage.output, 0);
    ck_assert_int_eq(u.have_start, 0);
    ck_assert_int_eq(u.saw_stop, 0);
}
END_TEST

START_TEST(fast_speed_is_recorded)
{
    struct ars_sse_usage u = usage_of(
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,"
        "\"speed\":\"fast\"}}}\n\n");
    ck_assert_int_eq(u.usage.fast, 1);
}
END_TEST

/* ---- tests: non-stream bodies ----------------------------------------------------- */

static struct ars_sse_usage usage_of_body(const char *text)
{
    struct ars_sse_usage u;
    struct json_object *o = json_tokener_parse(text);
    ars_sse_usage_init(&u);
    ars_sse_usage_from_message(&u, o);
    json_object_put(o);
    return u;
}

START_TEST(non_stream_message_body_gives_final_usage_model_id_and_stop_reason)
{
    struct ars_sse_usage u = usage_of_body(
        "{\"id\":\"msg_013Zva2CMHLNnXjNJJKqJ2EF\",\"type\":\"message\",\"role\":\"assistant\","
        "\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[{\"type\":\"text\",\"text\":\"Hi!\"}],"
        "\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":2095,"
        "\"cache_creation_input_tokens\":2051,\"cache_read_input_tokens\":40,"
        "\"cache_creation\":{\"ephemeral_5m_input_tokens\":51,\"ephemeral_1h_input_tokens\":2000},"
        "\"output_tokens\":503}}");
    ck_assert_int_eq(u.usage.input, 2095);
    ck_assert_int_eq(u.usage.cache_write_5m, 51);
    ck_assert_int_eq(u.usage.cache_write_1h, 2000);
    ck_assert_int_eq(u.usage.cache_read, 40);
    ck_assert_int_eq(u.usage.output, 503);
    ck_assert_str_eq(u.model, "claude-sonnet-4-5-20250929");
    ck_assert_str_eq(u.message_id, "msg_013Zva2CMHLNnXjNJJKqJ2EF");
    ck_assert_str_eq(u.stop_reason, "end_turn");
    ck_assert_int_eq(u.have_start, 1);
    ck_assert_int_eq(u.have_delta, 1);
    ck_assert_int_eq(u.saw_stop, 1);
    ck_assert_int_eq(u.saw_error, 0);

    u = usage_of_body("{\"type\":\"message\",\"usage\":{\"input_tokens\":4,"
                      "\"cache_creation_input_tokens\":60}}");
    ck_assert_int_eq(u.usage.cache_write_5m, 60);
    ck_assert_int_eq(u.usage.cache_write_1h, 0);
}
END_TEST

START_TEST(non_stream_error_body_is_recorded_as_an_error_without_usage)
{
    struct ars_sse_usage u = usage_of_body(
        "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
        "\"message\":\"Number of request tokens has exceeded your per-minute rate limit\"},"
        "\"request_id\":\"req_011CSHoEeqs5C35K2UUqR7Fy\"}");
    ck_assert_int_eq(u.saw_error, 1);
    ck_assert_str_eq(u.error_type, "rate_limit_error");
    ck_assert_str_eq(u.error_message, "Number of request tokens has exceeded your per-minute rate limit");
    ck_assert_int_eq(u.have_start, 0);
    ck_assert_int_eq(u.saw_stop, 0);
}
END_TEST

START_TEST(non_stream_body_that_is_not_an_object_is_ignored)
{
    struct ars_sse_usage u = usage_of_body("[1]");
    ck_assert_int_eq(u.have_start, 0);
    ck_assert_int_eq(u.saw_error, 0);
    ars_sse_usage_from_message(&u, NULL);
    ck_assert_int_eq(u.usage.input, 0);
}
END_TEST

/* ---- tests: a whole held answer, read as what the upstream sent ---------------------- */

START_TEST(held_event_stream_is_read_as_a_stream_whatever_the_request_asked)
{
    static char stream[MAX_STREAM];
    size_t ends[N_STREAM_EVENTS];
    size_t n = build_stream(stream, sizeof(stream), "\n", ends);
    struct ars_sse_usage u;
    ars_sse_usage_init(&u);
    ck_assert_int_eq(ars_sse_usage_from_body(&u, "text/event-stream; charset=utf-8", stream, n), ARS_OK);
    ck_assert_int_eq(u.usage.input, 472);
    ck_assert_int_eq(u.usage.output, 15);
    ck_assert_int_eq(u.usage.cache_write_5m, 1000);
    ck_assert_int_eq(u.usage.cache_write_1h, 2000);
    ck_assert_int_eq(u.usage.cache_read, 12000);
    ck_assert_str_eq(u.model, "claude-sonnet-4-5-20250929");
    ck_assert_int_eq(u.saw_stop, 1);
    /* the same bytes read as JSON (what the request's stream flag would have chosen) give nothing */
    ars_sse_usage_init(&u);
    ck_assert_int_eq(ars_sse_usage_from_body(&u, "application/json", stream, n), ARS_ERR_INVALID);
    ck_assert_int_eq(u.usage.input, 0);
}
END_TEST

START_TEST(held_json_message_is_read_as_a_message)
{
    const char *body = "{\"type\":\"message\",\"model\":\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":7,"
                       "\"output_tokens\":9}}";
    struct ars_sse_usage u;
    ars_sse_usage_init(&u);
    ck_assert_int_eq(ars_sse_usage_from_body(&u, "application/json", body, strlen(body)), ARS_OK);
    ck_assert_int_eq(u.usage.input, 7);
    ck_assert_int_eq(u.usage.output, 9);
    ars_sse_usage_init(&u);
    ck_assert_int_eq(ars_sse_usage_from_body(&u, NULL, body, strlen(body)), ARS_OK);   /* no type: JSON */
    ck_assert_int_eq(u.usage.output, 9);
    ars_sse_usage_init(&u);
    ck_assert_int_eq(ars_sse_usage_from_body(&u, "TEXT/EVENT-STREAM", body, strlen(body)), ARS_ERR_INVALID);
}
END_TEST

START_TEST(held_answer_without_usage_is_unreadable_not_zero)
{
    static const char *const bodies[] = {
        "{\"type\":\"message\",\"model\":\"m\",\"usage\":null}",
        "{\"type\":\"message\",\"model\":\"m\"}",
        "{\"type\":\"message\",\"usage\":{\"input_tokens\":3}",          /* cut off */
        "<html>502 Bad Gateway</html>",
        "",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct ars_sse_usage u;
        ars_sse_usage_init(&u);
        ck_assert_msg(ars_sse_usage_from_body(&u, "application/json", bodies[i], strlen(bodies[i])) ==
                          ARS_ERR_INVALID, "%s read as usage", bodies[i]);
    }
    const char *stream = "event: ping\ndata: {}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    struct ars_sse_usage u;
    ars_sse_usage_init(&u);
    ck_assert_int_eq(ars_sse_usage_from_body(&u, "text/event-stream", stream, strlen(stream)), ARS_ERR_INVALID);
    ck_assert_int_eq(ars_sse_usage_from_body(&u, "text/event-stream", NULL, 0), ARS_ERR_INVALID);
}
END_TEST
/* Test cases a full run makes (check/unit/plan.h). */
#define UNIT_TEST_PLAN 34

int main(void)
{
    Suite *s = suite_create("sse");
    TCase *tc = tcase_create("sse");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, real_stream_gives_the_same_events_and_usage_whole_byte_by_byte_and_split_anywhere);
    tcase_add_test(tc, crlf_line_ends_give_the_same_events_and_usage_however_cut);
    tcase_add_test(tc, cr_line_ends_give_the_same_events_and_usage_however_cut);
    tcase_add_test(tc, boundary_is_reported_exactly_at_each_event_end_when_fed_byte_by_byte);
    tcase_add_test(tc, boundary_in_a_multi_event_chunk_is_the_end_of_the_last_complete_event);
    tcase_add_test(tc, crlf_split_between_cr_and_lf_reports_the_boundary_at_the_cr_then_past_the_lf);
    tcase_add_test(tc, comment_lines_are_skipped_and_a_keepalive_block_is_a_boundary_but_no_event);
    tcase_add_test(tc, multiple_data_lines_are_joined_with_newlines);
    tcase_add_test(tc, field_without_space_after_colon_and_unnamed_event_default_to_message);
    tcase_add_test(tc, id_retry_and_unknown_fields_are_ignored);
    tcase_add_test(tc, block_without_data_is_not_dispatched_but_empty_data_is);
    tcase_add_test(tc, unfinished_event_at_the_end_is_not_dispatched);
    tcase_add_test(tc, bom_at_the_start_is_skipped_even_split_across_feeds_and_counted_in_the_boundary);
    tcase_add_test(tc, data_may_hold_nul_bytes);
    tcase_add_test(tc, event_over_the_cap_is_toobig_and_the_parser_stays_failed);
    tcase_add_test(tc, event_of_exactly_the_cap_passes_and_one_byte_more_is_toobig);
    tcase_add_test(tc, default_cap_is_16_mib);
    tcase_add_test(tc, null_data_with_a_length_is_invalid_and_not_sticky);
    tcase_add_test(tc, cache_creation_without_the_split_is_billed_as_5_minute_writes);
    tcase_add_test(tc, message_delta_usage_is_merged_as_the_maximum_never_the_sum);
    tcase_add_test(tc, cache_split_arriving_only_in_message_delta_is_not_counted_twice);
    tcase_add_test(tc, cache_creation_the_split_does_not_explain_is_billed_as_5_minute_writes);
    tcase_add_test(tc, error_event_mid_stream_is_recorded_and_start_usage_kept);
    tcase_add_test(tc, garbage_json_in_message_start_leaves_usage_at_zero);
    tcase_add_test(tc, counts_are_clamped_to_zero_and_one_billion);
    tcase_add_test(tc, long_strings_are_cut_to_their_field_at_a_character_boundary);
    tcase_add_test(tc, content_block_delta_never_changes_usage);
    tcase_add_test(tc, fast_speed_is_recorded);
    tcase_add_test(tc, non_stream_message_body_gives_final_usage_model_id_and_stop_reason);
    tcase_add_test(tc, non_stream_error_body_is_recorded_as_an_error_without_usage);
    tcase_add_test(tc, non_stream_body_that_is_not_an_object_is_ignored);
    tcase_add_test(tc, held_event_stream_is_read_as_a_stream_whatever_the_request_asked);
    tcase_add_test(tc, held_json_message_is_read_as_a_message);
    tcase_add_test(tc, held_answer_without_usage_is_unreadable_not_zero);
    suite_add_tcase(s, tc);
    return ars_check_run(s, UNIT_TEST_PLAN);
}
