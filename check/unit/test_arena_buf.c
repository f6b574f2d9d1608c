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
#define UNIT_TEST_PLAN 7

int main(void)
{
    Suite *s = suite_create("arena_buf_log");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, arena_returns_aligned_memory_and_survives_big_allocations);
    tcase_add_test(tc, arena_reset_runs_cleanups_last_registered_first);
    tcase_add_test(tc, buf_refuses_to_grow_past_its_cap);
    tcase_add_test(tc, buf_json_string_escapes_quotes_controls_and_newlines);
    tcase_add_test(tc, log_json_line_is_valid_json_with_request_id_and_masked_secret);
    tcase_add_test(tc, log_logfmt_line_quotes_values_with_spaces);
    tcase_add_test(tc, log_overlong_line_is_cut_marked_and_still_valid_json);
    suite_add_tcase(s, tc);
    return ars_check_run(s, UNIT_TEST_PLAN);
}
