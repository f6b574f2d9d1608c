/* Response writers: head, error shapes, SSE framing, client-gone. */
#include <check.h>
#include "plan.h"
#include <json.h>
#include <stdlib.h>
#include <string.h>

#include "memio.h"
#include "response.h"

static struct ars_arena arena;
static struct ars_request req;
static struct memio mio;

static void setup(void)
{
    ars_arena_init(&arena, 4096);
    memset(&req, 0, sizeof(req));
    req.arena = &arena;
    memcpy(req.id, "rid1", 5);
    memio_init(&mio, "", 0);
    req.io = memio_io(&mio);
}

static void teardown(void)
{
    ars_arena_deinit(&arena);
    ars_buf_deinit(&mio.out);
}

START_TEST(head_has_status_type_request_id_and_added_headers)
{
    ck_assert_int_eq(ars_resp_header(&req, "request-id", "req_up_1"), ARS_OK);
    ars_resp_send(&req, 201, "application/json", "{}", 2);
    ck_assert_str_eq(mio.out.data,
                     "Status: 201 Created\r\nContent-Type: application/json\r\nX-Request-Id: rid1\r\n"
                     "request-id: req_up_1\r\nContent-Length: 2\r\n\r\n{}");
    ck_assert_int_eq(req.status, 201);
    ck_assert_uint_eq(req.bytes_out, 2);
}
END_TEST

START_TEST(header_values_with_newlines_are_refused)
{
    ck_assert_int_eq(ars_resp_header(&req, "x-evil", "a\r\nSet-Cookie: x"), ARS_ERR_INVALID);
    ck_assert_int_eq(ars_resp_header(&req, "x:evil", "a"), ARS_ERR_INVALID);
}
END_TEST

static json_object *error_json(enum ars_error_shape shape, int status, const char *type, const char *msg)
{
    struct ars_buf b;
    ars_buf_init(&b, 4096);
    ck_assert_int_eq(ars_error_body(&b, shape, status, type, msg), ARS_OK);
    json_object *o = json_tokener_parse(b.data);
    ck_assert_msg(o != NULL, "not JSON: %s", b.data);
    ars_buf_deinit(&b);
    return o;
}

START_TEST(anthropic_errors_carry_type_by_status)
{
    static const struct { int status; const char *type; } cases[] = {
        { 400, "invalid_request_error" }, { 401, "authentication_error" }, { 402, "billing_error" },
        { 403, "permission_error" }, { 404, "not_found_error" }, { 413, "request_too_large" },
        { 429, "rate_limit_error" }, { 500, "api_error" }, { 502, "api_error" },
        { 504, "timeout_error" }, { 529, "overloaded_error" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object *o = error_json(ARS_SHAPE_ANTHROPIC, cases[i].status, NULL, "msg \"quoted\"\n");
        ck_assert_str_eq(json_member_str(o, "type", NULL), "error");
        ck_assert_str_eq(json_member_str(o, "error", "type"), cases[i].type);
        ck_assert_str_eq(json_member_str(o, "error", "message"), "msg \"quoted\"\n");
        json_object_put(o);
    }
}
END_TEST

START_TEST(openai_errors_have_message_type_and_code)
{
    json_object *o = error_json(ARS_SHAPE_OPENAI, 401, NULL, "Invalid API key");
    ck_assert_str_eq(json_member_str(o, "error", "message"), "Invalid API key");
    ck_assert_str_eq(json_member_str(o, "error", "type"), "authentication_error");
    ck_assert_str_eq(json_member_str(o, "error", "code"), "invalid_api_key");
    json_object_put(o);
    o = error_json(ARS_SHAPE_OPENAI, 429, NULL, "slow down");
    ck_assert_str_eq(json_member_str(o, "error", "code"), "rate_limit_exceeded");
    json_object_put(o);
}
END_TEST

START_TEST(explicit_error_type_overrides_the_default)
{
    json_object *o = error_json(ARS_SHAPE_ANTHROPIC, 503, "overloaded_error", "no account");
    ck_assert_str_eq(json_member_str(o, "error", "type"), "overloaded_error");
    json_object_put(o);
}
END_TEST

START_TEST(sse_start_sends_streaming_headers_and_flushes)
{
    ck_assert_int_eq(ars_sse_start(&req, 200), ARS_OK);
    ck_assert_ptr_nonnull(strstr(mio.out.data, "Content-Type: text/event-stream\r\n"));
    ck_assert_ptr_nonnull(strstr(mio.out.data, "Cache-Control: no-cache\r\n"));
    ck_assert_ptr_nonnull(strstr(mio.out.data, "X-Accel-Buffering: no\r\n"));
    ck_assert_int_eq(mio.flushes, 1);
}
END_TEST

START_TEST(sse_event_splits_multiline_data_and_flushes_each_event)
{
    ck_assert_int_eq(ars_sse_start(&req, 200), ARS_OK);
    size_t head = mio.out.len;
    ck_assert_int_eq(ars_sse_event(&req, "ping", "{\"type\":\"ping\"}", 15), ARS_OK);
    ck_assert_int_eq(ars_sse_event(&req, NULL, "a\nb", 3), ARS_OK);
    ck_assert_str_eq(mio.out.data + head, "event: ping\ndata: {\"type\":\"ping\"}\n\ndata: a\ndata: b\n\n");
    ck_assert_int_eq(mio.flushes, 3);
}
END_TEST

START_TEST(failed_write_marks_client_gone_and_stops_output)
{
    ck_assert_int_eq(ars_sse_start(&req, 200), ARS_OK);
    mio.fail_writes = mio.writes;   /* the client leaves now */
    ck_assert_int_eq(ars_sse_event(&req, NULL, "1", 1), ARS_ERR_CLIENT_GONE);
    ck_assert_int_eq(req.client_gone, 1);
    ck_assert_int_eq(ars_sse_event(&req, NULL, "2", 1), ARS_ERR_CLIENT_GONE);
}
END_TEST

START_TEST(second_head_is_refused)
{
    ck_assert_int_eq(ars_resp_head(&req, 200, "text/plain"), ARS_OK);
    ck_assert_int_eq(ars_resp_head(&req, 500, "text/plain"), ARS_ERR_INVALID);
    ck_assert_int_eq(ars_resp_header(&req, "x", "y"), ARS_ERR_INVALID);
}
END_TEST

/* Test cases a full run makes (check/unit/plan.h). */
#define UNIT_TEST_PLAN 9

int main(void)
{
    Suite *s = suite_create("response");
    TCase *tc = tcase_create("writers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, head_has_status_type_request_id_and_added_headers);
    tcase_add_test(tc, header_values_with_newlines_are_refused);
    tcase_add_test(tc, anthropic_errors_carry_type_by_status);
    tcase_add_test(tc, openai_errors_have_message_type_and_code);
    tcase_add_test(tc, explicit_error_type_overrides_the_default);
    tcase_add_test(tc, sse_start_sends_streaming_headers_and_flushes);
    tcase_add_test(tc, sse_event_splits_multiline_data_and_flushes_each_event);
    tcase_add_test(tc, failed_write_marks_client_gone_and_stops_output);
    tcase_add_test(tc, second_head_is_refused);
    suite_add_tcase(s, tc);
    return ars_check_run(s, UNIT_TEST_PLAN);
}
