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

START_TEST(overlong_model_is_refused_not_truncated)
{
    static char body[ARS_BODY_MODEL_MAX * 4];
    size_t n = (size_t)snprintf(body, sizeof(body), "{\"model\":\"");
    for (int i = 0; i < ARS_BODY_MODEL_MAX; i++)
        body[n++] = 'a';
    n += (size_t)snprintf(body + n, sizeof(body) - n, "\"}");
    ck_assert_int_eq(scan(body), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "model: longer than 255 bytes"));
    /* 255 bytes is the longest accepted */
    n = (size_t)snprintf(body, sizeof(body), "{\"model\":\"");
    for (int i = 0; i < ARS_BODY_MODEL_MAX - 1; i++)
        body[n++] = 'a';
    n += (size_t)snprintf(body + n, sizeof(body) - n, "\"}");
    ck_assert_int_eq(scan(body), ARS_OK);
    ck_assert_uint_eq(strlen(f.model), ARS_BODY_MODEL_MAX - 1);
}
END_TEST

START_TEST(model_with_a_control_character_is_refused)
{
    /* "claude-opus-4-1\u0000x" would read as "claude-opus-4-1" in C */
    ck_assert_int_eq(scan("{\"model\":\"claude-haiku-4-5\\u0000x\"}"), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "control characters"));
}
END_TEST

START_TEST(repeated_top_level_key_is_refused_naming_it)
{
    ck_assert_int_eq(scan("{\"model\":\"m\",\"stream\":true,\"stream\":false}"), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "repeats the top-level member \"stream\""));
    ck_assert_int_eq(scan("{\"model\":\"claude-opus-4-1\",\"model\":\"claude-haiku-4-5\"}"), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "repeats the top-level member \"model\""));
    /* members the relay does not read are checked too: the upstream's parser would still pick one */
    ck_assert_int_eq(scan("{\"model\":\"m\",\"tools\":[],\"tools\":[]}"), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "\"tools\""));
}
END_TEST

START_TEST(repeated_nested_key_is_not_the_relays_business)
{
    ck_assert_int_eq(scan("{\"model\":\"m\",\"metadata\":{\"user_id\":\"a\",\"user_id\":\"b\"},"
                          "\"messages\":[{\"role\":\"user\",\"role\":\"user\",\"content\":\"x\"}]}"), ARS_OK);
    ck_assert_str_eq(f.model, "m");
}
END_TEST

START_TEST(escaped_key_is_read_as_decoded)
{
    ck_assert_int_eq(scan("{\"m\\u006fdel\":\"claude-opus-4-1\",\"str\\u0065am\":true}"), ARS_OK);
    ck_assert_str_eq(f.model, "claude-opus-4-1");
    ck_assert_int_eq(f.stream, 1);
    ck_assert_int_eq(strncmp(f.model_value.p, "\"claude-opus-4-1\"", f.model_value.n), 0);
    ck_assert_int_eq(scan("{\"model\":\"m\",\"\\u0073ystem\":\"be brief\",\"metadata\":{\"user\\u005fid\":\"u1\"}}"),
                     ARS_OK);
    ck_assert_int_eq(strncmp(f.system.p, "\"be brief\"", f.system.n), 0);
    ck_assert_str_eq(f.user_id, "u1");
}
END_TEST

START_TEST(escaped_key_that_decodes_to_a_duplicate_is_refused)
{
    ck_assert_int_eq(scan("{\"model\":\"m\",\"stream\":false,\"str\\u0065am\":true}"), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "repeats the top-level member \"stream\""));
    ck_assert_int_eq(scan("{\"m\\u006fdel\":\"claude-opus-4-1\",\"model\":\"claude-haiku-4-5\"}"), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "\"model\""));
    /* \/ is '/' */
    ck_assert_int_eq(scan("{\"model\":\"m\",\"a/b\":1,\"a\\/b\":2}"), ARS_ERR_INVALID);
    /* a NUL inside a name is part of the name: "stream\0" is not "stream" */
    ck_assert_int_eq(scan("{\"model\":\"m\",\"stream\":true,\"stream\\u0000\":false}"), ARS_OK);
    ck_assert_int_eq(f.stream, 1);
}
END_TEST

START_TEST(invalid_escapes_are_malformed_json)
{
    ck_assert_int_eq(scan("{\"model\":\"m\",\"str\\x65am\":true}"), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "not valid JSON"));
    ck_assert_int_eq(scan("{\"model\":\"m\",\"s\\u00g5\":true}"), ARS_ERR_INVALID);
    ck_assert_int_eq(scan("{\"model\":\"m\\u00\"}"), ARS_ERR_INVALID);
}
END_TEST

START_TEST(too_many_or_too_long_top_level_names_are_refused)
{
    static char body[ARS_BODY_MAX_MEMBERS * 16 + 64];
    size_t n = (size_t)snprintf(body, sizeof(body), "{\"model\":\"m\"");
    for (int i = 0; i < ARS_BODY_MAX_MEMBERS; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n, ",\"k%d\":1", i);
    snprintf(body + n, sizeof(body) - n, "}");
    ck_assert_int_eq(scan(body), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "more than 128 top-level members"));
    n = (size_t)snprintf(body, sizeof(body), "{\"model\":\"m\",\"");
    for (int i = 0; i < ARS_BODY_MEMBER_NAME_MAX; i++)
        body[n++] = 'k';
    snprintf(body + n, sizeof(body) - n, "\":1}");
    ck_assert_int_eq(scan(body), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "member name longer than 63 bytes"));
    n = (size_t)snprintf(body, sizeof(body), "{\"model\":\"m\",\"");
    for (int i = 0; i < ARS_BODY_MEMBER_NAME_MAX - 1; i++)
        body[n++] = 'k';
    snprintf(body + n, sizeof(body) - n, "\":1}");
    ck_assert_int_eq(scan(body), ARS_OK);   /* 63 bytes is the longest accepted */
}
END_TEST

START_TEST(max_tokens_must_be_a_positive_integer_within_the_cap)
{
    ck_assert_int_eq(scan("{\"model\":\"m\",\"max_tokens\":1024}"), ARS_OK);
    ck_assert_int_eq(f.max_tokens, 1024);
    ck_assert_int_eq(scan("{\"model\":\"m\",\"max_tokens\":1000000}"), ARS_OK);
    ck_assert_int_eq(scan("{\"model\":\"m\"}"), ARS_OK);   /* absent: the upstream's call */
    ck_assert_int_eq(f.max_tokens, 0);
    static const char *const bad[] = { "0", "-1", "1000001", "99999999999999999999999", "1.5", "1e3",
                                       "\"64\"", "null", "true", "[64]" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"model\":\"m\",\"max_tokens\":%s}", bad[i]);
        ck_assert_msg(scan(body) == ARS_ERR_INVALID, "max_tokens %s accepted", bad[i]);
        ck_assert_ptr_nonnull(strstr(err, "max_tokens: must be an integer from 1 to 1000000"));
    }
}
END_TEST

/* Test cases a full run makes (check/unit/plan.h). */
#define UNIT_TEST_PLAN 17

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
    tcase_add_test(tc, overlong_model_is_refused_not_truncated);
    tcase_add_test(tc, model_with_a_control_character_is_refused);
    tcase_add_test(tc, repeated_top_level_key_is_refused_naming_it);
    tcase_add_test(tc, repeated_nested_key_is_not_the_relays_business);
    tcase_add_test(tc, escaped_key_is_read_as_decoded);
    tcase_add_test(tc, escaped_key_that_decodes_to_a_duplicate_is_refused);
    tcase_add_test(tc, invalid_escapes_are_malformed_json);
    tcase_add_test(tc, too_many_or_too_long_top_level_names_are_refused);
    tcase_add_test(tc, max_tokens_must_be_a_positive_integer_within_the_cap);
    suite_add_tcase(s, tc);
    return ars_check_run(s, UNIT_TEST_PLAN);
}
