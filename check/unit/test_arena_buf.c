/* Arena, capped buffer and log line behaviour. */
#include <check.h>
#include "plan.h"
#include <json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "buf.h"
#include "log.h"
#include "memio.h"
#include "response.h"

static int cleanup_order[4];
static int cleanup_count;

static void record_cleanup(void *arg)
{
    cleanup_order[cleanup_count++] = (int)(intptr_t)arg;
}

START_TEST(arena_returns_aligned_memory_and_survives_big_allocations)
{
    struct ars_arena a;
    ars_arena_init(&a, 1024);
    for (int i = 0; i < 100; i++) {
        char *p = ars_arena_alloc(&a, (size_t)(i * 7 + 1));
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % 16, 0);
        memset(p, 'x', (size_t)(i * 7 + 1));
    }
    char *big = ars_arena_alloc(&a, 1 << 20);
    ck_assert_ptr_nonnull(big);
    memset(big, 'y', 1 << 20);
    char *s = ars_arena_printf(&a, "%s-%d", "req", 42);
    ck_assert_str_eq(s, "req-42");
    ars_arena_deinit(&a);
}
END_TEST

START_TEST(arena_reset_runs_cleanups_last_registered_first)
{
    struct ars_arena a;
    ars_arena_init(&a, 1024);
    cleanup_count = 0;
    ars_arena_on_reset(&a, record_cleanup, (void *)(intptr_t)1);
    ars_arena_on_reset(&a, record_cleanup, (void *)(intptr_t)2);
    ars_arena_on_reset(&a, record_cleanup, (void *)(intptr_t)3);
    ars_arena_reset(&a);
    ck_assert_int_eq(cleanup_count, 3);
    ck_assert_int_eq(cleanup_order[0], 3);
    ck_assert_int_eq(cleanup_order[2], 1);
    /* A second reset runs nothing again. */
    ars_arena_reset(&a);
    ck_assert_int_eq(cleanup_count, 3);
    ars_arena_deinit(&a);
}
END_TEST

START_TEST(buf_refuses_to_grow_past_its_cap)
{
    struct ars_buf b;
    ars_buf_init(&b, 10);
    ck_assert_int_eq(ars_buf_add(&b, "0123456789", 10), ARS_OK);
    ck_assert_int_eq(ars_buf_add(&b, "x", 1), ARS_ERR_TOOBIG);
    ck_assert_uint_eq(b.len, 10);
    ck_assert_str_eq(b.data, "0123456789");
    ars_buf_deinit(&b);
}
END_TEST

START_TEST(buf_json_string_escapes_quotes_controls_and_newlines)
{
    struct ars_buf b;
    ars_buf_init(&b, 1024);
    const char in[] = "a\"b\\c\nd\x01" "e";
    ck_assert_int_eq(ars_buf_add_json_str(&b, in, sizeof(in) - 1), ARS_OK);
    ck_assert_str_eq(b.data, "\"a\\\"b\\\\c\\nd\\u0001e\"");
    json_object *o = json_tokener_parse(b.data);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(json_object_get_string(o), in);
    json_object_put(o);
    ars_buf_deinit(&b);
}
END_TEST

/* An append that does not fit adds nothing: not the part that would fit,
 * and the bytes before it stay as they were (all-or-nothing, as dynbuf). */
START_TEST(buf_append_that_crosses_the_cap_adds_nothing)
{
    struct ars_buf b;
    ars_buf_init(&b, 10);
    ck_assert_int_eq(ars_buf_add(&b, "01234", 5), ARS_OK);
    ck_assert_int_eq(ars_buf_add(&b, "567890", 6), ARS_ERR_TOOBIG);
    ck_assert_uint_eq(b.len, 5);
    ck_assert_str_eq(b.data, "01234");
    ck_assert_int_eq(ars_buf_printf(&b, "%s", "abcdef"), ARS_ERR_TOOBIG);
    ck_assert_uint_eq(b.len, 5);
    ck_assert_str_eq(b.data, "01234");
    /* Exactly up to the cap still fits, and the buffer is still usable. */
    ck_assert_int_eq(ars_buf_printf(&b, "%d", 56789), ARS_OK);
    ck_assert_str_eq(b.data, "0123456789");
    ars_buf_deinit(&b);
}
END_TEST

START_TEST(buf_json_string_that_crosses_the_cap_adds_nothing)
{
    struct ars_buf b;
    ars_buf_init(&b, 12);
    ck_assert_int_eq(ars_buf_adds(&b, "[1,"), ARS_OK);
    /* Quoted and escaped it is 11 bytes; 9 are left. Plain bytes and the
     * opening quote would fit: none of them may be added. */
    ck_assert_int_eq(ars_buf_add_json_str(&b, "abcd\nef", 7), ARS_ERR_TOOBIG);
    ck_assert_uint_eq(b.len, 3);
    ck_assert_str_eq(b.data, "[1,");
    ck_assert_int_eq(ars_buf_add_json_str(&b, "ab\x01", 3), ARS_ERR_TOOBIG);
    ck_assert_str_eq(b.data, "[1,");
    ck_assert_int_eq(ars_buf_add_json_str(&b, "a\tb", 3), ARS_OK);
    ck_assert_str_eq(b.data, "[1,\"a\\tb\"");
    ars_buf_deinit(&b);
}
END_TEST

START_TEST(buf_commit_refuses_more_than_was_reserved)
{
    struct ars_buf b;
    ars_buf_init(&b, 1 << 20);
    char *dst;
    ck_assert_int_eq(ars_buf_reserve(&b, 4, &dst), ARS_OK);
    memcpy(dst, "abcd", 4);
    ck_assert_int_eq(ars_buf_commit(&b, b.alloc), ARS_ERR_INVALID);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(ars_buf_commit(&b, 4), ARS_OK);
    ck_assert_str_eq(b.data, "abcd");
    ars_buf_deinit(&b);
}
END_TEST

START_TEST(buf_null_string_from_a_failed_allocation_is_an_error_not_a_crash)
{
    struct ars_buf b;
    ars_buf_init(&b, 64);
    ck_assert_int_eq(ars_buf_adds(&b, "x"), ARS_OK);
    ck_assert_int_eq(ars_buf_adds(&b, NULL), ARS_ERR_NOMEM);
    ck_assert_int_eq(ars_buf_add_json_str(&b, NULL, 3), ARS_ERR_NOMEM);
    ck_assert_int_eq(ars_buf_add(&b, NULL, 3), ARS_ERR_INVALID);
    ck_assert_str_eq(b.data, "x");
    ars_buf_deinit(&b);
}
END_TEST

START_TEST(buf_with_an_unlimited_cap_still_keeps_room_for_the_nul)
{
    struct ars_buf b;
    ars_buf_init(&b, SIZE_MAX);
    ck_assert_int_eq(ars_buf_add(&b, "abc", 3), ARS_OK);
    ck_assert_uint_gt(b.alloc, b.len);
    ck_assert_str_eq(b.data, "abc");
    ars_buf_deinit(&b);
}
END_TEST

START_TEST(arena_refuses_sizes_whose_rounding_would_wrap)
{
    struct ars_arena a;
    ars_arena_init(&a, 1024);
    ck_assert_ptr_nonnull(ars_arena_alloc(&a, 8));
    ck_assert_ptr_null(ars_arena_alloc(&a, SIZE_MAX));
    ck_assert_ptr_null(ars_arena_alloc(&a, SIZE_MAX - 7));
    ck_assert_ptr_null(ars_arena_alloc(&a, SIZE_MAX - 40));
    ck_assert_ptr_null(ars_arena_strndup(&a, "x", SIZE_MAX - 1));
    ck_assert_ptr_nonnull(ars_arena_alloc(&a, 8));
    ars_arena_deinit(&a);
}
END_TEST

START_TEST(arena_limit_makes_allocations_fail_until_reset)
{
    struct ars_arena a;
    ars_arena_init(&a, 1024);
    ars_arena_set_limit(&a, 64);
    /* A failed allocation passed on stays a failure instead of a crash. */
    ck_assert_ptr_null(ars_arena_strdup(&a, NULL));
    ck_assert_ptr_null(ars_arena_strndup(&a, NULL, 3));
    ck_assert_ptr_nonnull(ars_arena_alloc(&a, 48));
    ck_assert_ptr_null(ars_arena_alloc(&a, 32));
    ck_assert_ptr_null(ars_arena_printf(&a, "%s", "a string longer than what is left"));
    ck_assert_ptr_nonnull(ars_arena_alloc(&a, 16));
    ck_assert_ptr_null(ars_arena_strdup(&a, "x"));
    ars_arena_reset(&a);
    ck_assert_ptr_nonnull(ars_arena_alloc(&a, 64));
    ars_arena_deinit(&a);
}
END_TEST

/* The response header path with the arena exhausted: the caller's
 * ars_arena_printf/strdup returns NULL and that NULL reaches
 * ars_resp_header, which must refuse it before strpbrk. */
START_TEST(response_header_refuses_null_from_a_failed_arena_allocation)
{
    struct ars_arena a;
    ars_arena_init(&a, 4096);
    struct ars_request r;
    memset(&r, 0, sizeof(r));
    r.arena = &a;
    memcpy(r.id, "rid1", 5);
    struct memio m;
    memio_init(&m, "", 0);
    r.io = memio_io(&m);
    ars_arena_set_limit(&a, 16);
    ck_assert_ptr_nonnull(ars_arena_alloc(&a, 16));

    char *ra = ars_arena_printf(&a, "%d", 30);
    ck_assert_ptr_null(ra);
    ck_assert_int_eq(ars_resp_header(&r, "retry-after", ra), ARS_ERR_NOMEM);
    ck_assert_int_eq(ars_resp_header(&r, NULL, "x"), ARS_ERR_NOMEM);
    ck_assert_uint_eq(r.nresp_headers, 0);
    /* ars_resp_send needs the arena for Content-Length: a clean error, and
     * nothing half-written to the client. */
    ars_resp_send(&r, 200, "application/json", "{}", 2);
    ck_assert_uint_eq(m.out.len, 0);
    ck_assert_int_eq(r.head_sent, 0);

    /* With room again the same request answers normally. */
    ars_arena_set_limit(&a, 0);
    ars_resp_send(&r, 200, "application/json", "{}", 2);
    ck_assert_int_eq(r.head_sent, 1);
    ck_assert_ptr_nonnull(strstr(m.out.data, "Content-Length: 2\r\n"));
    ars_buf_deinit(&m.out);
    ars_arena_deinit(&a);
}
END_TEST

START_TEST(error_body_with_a_null_message_falls_back_to_the_status_reason)
{
    struct ars_buf b;
    ars_buf_init(&b, 4096);
    ck_assert_int_eq(ars_error_body(&b, ARS_SHAPE_ANTHROPIC, 404, NULL, NULL), ARS_OK);
    ck_assert_str_eq(b.data, "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\",\"message\":\"Not Found\"}}");
    ars_buf_deinit(&b);
}
END_TEST

static char *capture_log(enum ars_log_format format, void (*emit)(void))
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    ars_log_set_fd(fds[1]);
    ars_log_setup(ARS_LOG_INFO, format);
    emit();
    close(fds[1]);
    ars_log_set_fd(2);
    static char out[8192];
    ssize_t n = read(fds[0], out, sizeof(out) - 1);
    close(fds[0]);
    out[n > 0 ? n : 0] = '\0';
    return out;
}

static void emit_request_line(void)
{
    struct ars_logline l;
    ars_log_begin(&l, ARS_LOG_INFO, "abc123", "request");
    ars_log_str(&l, "route", "/v1/messages");
    ars_log_int(&l, "status", 200);
    ars_log_secret(&l, "key", "cr_0123456789abcdef0123456789abcdef");
    ars_log_str(&l, "note", "has \"quotes\" and spaces");
    ars_log_end(&l);
    ars_log_msg(ARS_LOG_DEBUG, NULL, "filtered", "debug lines are below the level");
}

START_TEST(log_json_line_is_valid_json_with_request_id_and_masked_secret)
{
    char *out = capture_log(ARS_LOG_JSON, emit_request_line);
    ck_assert_ptr_null(strstr(out, "0123456789abcdef0123"));
    ck_assert_ptr_null(strstr(out, "filtered"));
    json_object *o = json_tokener_parse(out);
    ck_assert_ptr_nonnull(o);
    json_object *v;
    ck_assert(json_object_object_get_ex(o, "req_id", &v));
    ck_assert_str_eq(json_object_get_string(v), "abc123");
    ck_assert(json_object_object_get_ex(o, "status", &v));
    ck_assert_int_eq(json_object_get_int(v), 200);
    ck_assert(json_object_object_get_ex(o, "level", &v));
    ck_assert_str_eq(json_object_get_string(v), "info");
    json_object_put(o);
}
END_TEST

START_TEST(log_logfmt_line_quotes_values_with_spaces)
{
    char *out = capture_log(ARS_LOG_LOGFMT, emit_request_line);
    ck_assert_ptr_nonnull(strstr(out, " req_id=abc123 event=request route=/v1/messages status=200 "));
    ck_assert_ptr_nonnull(strstr(out, "note=\"has \\\"quotes\\\" and spaces\""));
    ck_assert_ptr_null(strstr(out, "0123456789abcdef0123"));
    ck_assert_int_eq(out[strlen(out) - 1], '\n');
}
END_TEST

static void emit_huge_line(void)
{
    static char big[ARS_CAP_LOG_LINE * 2];
    memset(big, 'z', sizeof(big) - 1);
    struct ars_logline l;
    ars_log_begin(&l, ARS_LOG_WARN, "r1", "huge");
    ars_log_str(&l, "a", "first");
    ars_log_str(&l, "blob", big);
    ars_log_end(&l);
}

START_TEST(log_overlong_line_is_cut_marked_and_still_valid_json)
{
    char *out = capture_log(ARS_LOG_JSON, emit_huge_line);
    ck_assert_uint_le(strlen(out), ARS_CAP_LOG_LINE);
    json_object *o = json_tokener_parse(out);
    ck_assert_ptr_nonnull(o);
    json_object *v;
    ck_assert(json_object_object_get_ex(o, "truncated", &v));
    ck_assert(json_object_get_boolean(v));
    json_object_put(o);
}
END_TEST

/* Test cases a full run makes (check/unit/plan.h). */
#define UNIT_TEST_PLAN 16

int main(void)
{
    Suite *s = suite_create("arena_buf_log");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, arena_returns_aligned_memory_and_survives_big_allocations);
    tcase_add_test(tc, arena_reset_runs_cleanups_last_registered_first);
    tcase_add_test(tc, buf_refuses_to_grow_past_its_cap);
    tcase_add_test(tc, buf_json_string_escapes_quotes_controls_and_newlines);
    tcase_add_test(tc, buf_append_that_crosses_the_cap_adds_nothing);
    tcase_add_test(tc, buf_json_string_that_crosses_the_cap_adds_nothing);
    tcase_add_test(tc, buf_commit_refuses_more_than_was_reserved);
    tcase_add_test(tc, buf_null_string_from_a_failed_allocation_is_an_error_not_a_crash);
    tcase_add_test(tc, buf_with_an_unlimited_cap_still_keeps_room_for_the_nul);
    tcase_add_test(tc, arena_refuses_sizes_whose_rounding_would_wrap);
    tcase_add_test(tc, arena_limit_makes_allocations_fail_until_reset);
    tcase_add_test(tc, response_header_refuses_null_from_a_failed_arena_allocation);
    tcase_add_test(tc, error_body_with_a_null_message_falls_back_to_the_status_reason);
    tcase_add_test(tc, log_json_line_is_valid_json_with_request_id_and_masked_secret);
    tcase_add_test(tc, log_logfmt_line_quotes_values_with_spaces);
    tcase_add_test(tc, log_overlong_line_is_cut_marked_and_still_valid_json);
    suite_add_tcase(s, tc);
    return ars_check_run(s, UNIT_TEST_PLAN);
}
