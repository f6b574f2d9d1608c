/* The request-body scanner: the few fields routing needs, found without a
 * full parse, and clear errors for bodies that are not a Messages request. */
#include <check.h>
#include "plan.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"

static struct ars_body_fields f;
static char err[256];

static enum ars_err scan(const char *body)
{
    return ars_body_scan(body, strlen(body), 1, &f, err, sizeof(err));
}

START_TEST(finds_model_stream_user_id_system_and_first_message)
{
    const char *body =
        "{\"model\":\"claude-sonnet-5\",\"max_tokens\":1024,"
        "\"system\":[{\"type\":\"text\",\"text\":\"be {brief}\"}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"hi ]\"},{\"role\":\"assistant\",\"content\":\"yo\"}],"
        "\"metadata\":{\"user_id\":\"user_abc_account__session_1234\"},\"stream\":true}";
    ck_assert_int_eq(scan(body), ARS_OK);
    ck_assert_str_eq(f.model, "claude-sonnet-5");
    ck_assert_int_eq(f.stream, 1);
    ck_assert_str_eq(f.user_id, "user_abc_account__session_1234");
    ck_assert_uint_eq(f.message_count, 2);
    ck_assert_int_eq(strncmp(f.first_message.p, "{\"role\":\"user\",\"content\":\"hi ]\"}", f.first_message.n), 0);
    ck_assert_uint_eq(f.first_message.n, strlen("{\"role\":\"user\",\"content\":\"hi ]\"}"));
    ck_assert_int_eq(strncmp(f.system.p, "[{\"type\":\"text\",\"text\":\"be {brief}\"}]", f.system.n), 0);
    ck_assert_int_eq(strncmp(f.model_value.p, "\"claude-sonnet-5\"", f.model_value.n), 0);
}
END_TEST

START_TEST(stream_is_false_unless_literally_true)
{
    ck_assert_int_eq(scan("{\"model\":\"m\",\"stream\":false}"), ARS_OK);
    ck_assert_int_eq(f.stream, 0);
    ck_assert_int_eq(scan("{\"model\":\"m\",\"stream\":\"true\"}"), ARS_OK);
    ck_assert_int_eq(f.stream, 0);
    ck_assert_int_eq(scan("{\"model\":\"m\"}"), ARS_OK);
    ck_assert_int_eq(f.stream, 0);
}
END_TEST

START_TEST(decodes_escapes_in_strings)
{
    ck_assert_int_eq(scan("{\"model\":\"a\\\"b\\u00e9\\ud83d\\ude00\",\"metadata\":{\"user_id\":\"x\\\\y\"}}"), ARS_OK);
    ck_assert_str_eq(f.model, "a\"b\xc3\xa9\xf0\x9f\x98\x80");
    ck_assert_str_eq(f.user_id, "x\\y");
}
END_TEST

START_TEST(nested_member_named_model_is_not_the_model)
{
    ck_assert_int_eq(scan("{\"tools\":[{\"model\":\"evil\"}],\"model\":\"claude-haiku-4-5\"}"), ARS_OK);
    ck_assert_str_eq(f.model, "claude-haiku-4-5");
}
END_TEST

START_TEST(rejects_non_objects_and_malformed_json)
{
    ck_assert_int_eq(scan("[1,2]"), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "JSON object"));
    ck_assert_int_eq(scan(""), ARS_ERR_INVALID);
    ck_assert_int_eq(scan("{\"model\":\"m\""), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "not valid JSON"));
    ck_assert_int_eq(scan("{\"model\":\"m\",\"messages\":[{\"a\":1}"), ARS_ERR_INVALID);
    ck_assert_int_eq(scan("{\"model\":\"m\"} trailing"), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "after the JSON object"));
    ck_assert_int_eq(scan("{\"model\":\"unterminated}"), ARS_ERR_INVALID);
}
END_TEST

START_TEST(requires_a_string_model)
{
    ck_assert_int_eq(scan("{\"messages\":[]}"), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "model: required"));
    ck_assert_int_eq(scan("{\"model\":42}"), ARS_ERR_INVALID);
    ck_assert_int_eq(scan("{\"model\":\"\"}"), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "must not be empty"));
}
END_TEST

START_TEST(refuses_absurd_nesting)
{
    static char body[4096];
    size_t n = (size_t)snprintf(body, sizeof(body), "{\"model\":\"m\",\"x\":");
    for (int i = 0; i < 300; i++)
        body[n++] = '[';
    for (int i = 0; i < 300; i++)
        body[n++] = ']';
    body[n++] = '}';
    body[n] = '\0';
    ck_assert_int_eq(scan(body), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "nested too deeply"));
}
END_TEST

START_TEST(whitespace_everywhere_is_fine)
{
    ck_assert_int_eq(scan(" \n{ \"model\" : \"m\" ,\r\n \"stream\" :\ttrue , \"messages\" : [ ] } \n"), ARS_OK);
    ck_assert_str_eq(f.model, "m");
    ck_assert_int_eq(f.stream, 1);
    ck_assert_uint_eq(f.message_count, 0);
}
END_TEST

START_TEST(overlong_model_is_truncated_not_overflowed)
{
    static char body[ARS_BODY_MODEL_MAX * 4];
    size_t n = (size_t)snprintf(body, sizeof(body), "{\"model\":\"");
    for (int i = 0; i < ARS_BODY_MODEL_MAX * 2; i++)
        body[n++] = 'a';
    n += (size_t)snprintf(body + n, sizeof(body) - n, "\"}");
    ck_assert_int_eq(scan(body), ARS_OK);
    ck_assert_uint_lt(strlen(f.model), ARS_BODY_MODEL_MAX);
}
END_TEST

/* Test cases a full run makes (check/unit/plan.h). */
#define UNIT_TEST_PLAN 9

int main(void)
{
    Suite *s = suite_create("body");
    TCase *tc = tcase_create("scan");
    tcase_add_test(tc, finds_model_stream_user_id_system_and_first_message);
    tcase_add_test(tc, stream_is_false_unless_literally_true);
    tcase_add_test(tc, decodes_escapes_in_strings);
    tcase_add_test(tc, nested_member_named_model_is_not_the_model);
    tcase_add_test(tc, rejects_non_objects_and_malformed_json);
    tcase_add_test(tc, requires_a_string_model);
    tcase_add_test(tc, refuses_absurd_nesting);
    tcase_add_test(tc, whitespace_everywhere_is_fine);
    tcase_add_test(tc, overlong_model_is_truncated_not_overflowed);
    suite_add_tcase(s, tc);
    return ars_check_run(s, UNIT_TEST_PLAN);
}
