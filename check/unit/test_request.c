/* Request parsing: params, headers, query, and the capped body reader. */
#include <check.h>
#include "plan.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memio.h"
#include "request.h"

static struct ars_arena arena;
static struct ars_buf body;
static struct ars_request req;
static struct memio mio;

static void setup(void)
{
    ars_arena_init(&arena, 4096);
    ars_buf_init(&body, 100);
    memset(&req, 0, sizeof(req));
    req.arena = &arena;
    req.body = &body;
}

static void teardown(void)
{
    ars_arena_deinit(&arena);
    ars_buf_deinit(&body);
    ars_buf_deinit(&mio.out);
}

START_TEST(parses_method_path_query_and_headers)
{
    char *envp[] = {
        "REQUEST_METHOD=POST",
        "REQUEST_URI=/api/v1/messages?beta=true&name=a%20b+c&flag",
        "CONTENT_TYPE=application/json",
        "CONTENT_LENGTH=12",
        "HTTP_X_API_KEY=cr_abc",
        "HTTP_ANTHROPIC_VERSION=2023-06-01",
        "REMOTE_ADDR=127.0.0.1",
        NULL
    };
    ck_assert_int_eq(ars_request_parse(&req, envp), ARS_OK);
    ck_assert_str_eq(req.method, "POST");
    ck_assert_str_eq(req.path, "/api/v1/messages");
    ck_assert_str_eq(req.query, "beta=true&name=a%20b+c&flag");
    ck_assert_str_eq(ars_request_query(&req, "beta"), "true");
    ck_assert_str_eq(ars_request_query(&req, "name"), "a b c");
    ck_assert_str_eq(ars_request_query(&req, "flag"), "");
    ck_assert_ptr_null(ars_request_query(&req, "missing"));
    ck_assert_str_eq(ars_request_header(&req, "x-api-key"), "cr_abc");
    ck_assert_str_eq(ars_request_header(&req, "anthropic-version"), "2023-06-01");
    ck_assert_str_eq(ars_request_header(&req, "content-type"), "application/json");
    ck_assert_int_eq(req.content_length, 12);
}
END_TEST

START_TEST(rejects_request_without_method_or_uri)
{
    char *envp[] = { "REQUEST_METHOD=GET", NULL };
    ck_assert_int_eq(ars_request_parse(&req, envp), ARS_ERR_INVALID);
}
END_TEST

static void reset_req(void)
{
    memset(&req, 0, sizeof(req));
    req.arena = &arena;
    req.body = &body;
}

/* Parses envp and expects a 400 naming a bad Content-Length. */
static void expect_bad_length(char **envp)
{
    reset_req();
    ck_assert_int_eq(ars_request_parse(&req, envp), ARS_ERR_INVALID);
    ck_assert_int_eq(req.parse_status, 400);
    ck_assert_ptr_nonnull(strstr(req.parse_error, "Content-Length"));
    ck_assert_ptr_nonnull(req.path);   /* parsed first: the error gets the route's shape */
}

START_TEST(rejects_bad_content_length_with_400_saying_so)
{
    char *garbage[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/x", "CONTENT_LENGTH=12abc", NULL };
    char *negative[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/x", "CONTENT_LENGTH=-5", NULL };
    char *plus[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/x", "CONTENT_LENGTH=+5", NULL };
    char *space[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/x", "CONTENT_LENGTH= 5", NULL };
    char *overflow[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/x", "CONTENT_LENGTH=99999999999999999999", NULL };
    char *conflict[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/x", "CONTENT_LENGTH=5", "CONTENT_LENGTH=7", NULL };
    char *conflict_hdr[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/x", "CONTENT_LENGTH=5",
                             "HTTP_CONTENT_LENGTH=500", NULL };
    expect_bad_length(garbage);
    expect_bad_length(negative);
    expect_bad_length(plus);
    expect_bad_length(space);
    expect_bad_length(overflow);
    expect_bad_length(conflict);
    ck_assert_ptr_nonnull(strstr(req.parse_error, "conflicting"));
    expect_bad_length(conflict_hdr);
}
END_TEST

START_TEST(accepts_agreeing_content_lengths)
{
    char *envp[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/x", "CONTENT_LENGTH=0042",
                     "HTTP_CONTENT_LENGTH=42", NULL };
    ck_assert_int_eq(ars_request_parse(&req, envp), ARS_OK);
    ck_assert_int_eq(req.content_length, 42);
}
END_TEST

START_TEST(refuses_header_values_with_cr_or_lf_with_400)
{
    char *cr[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/v1/messages",
                   "HTTP_ANTHROPIC_BETA=x\rx-api-key: sk-stolen", NULL };
    char *lf[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/v1/messages",
                   "HTTP_USER_AGENT=a\nHost: evil.example", NULL };
    char *ctl[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/v1/messages", "HTTP_X_APP=a\x01b", NULL };
    char **cases[] = { cr, lf, ctl };
    for (size_t i = 0; i < 3; i++) {
        reset_req();
        ck_assert_int_eq(ars_request_parse(&req, cases[i]), ARS_ERR_INVALID);
        ck_assert_int_eq(req.parse_status, 400);
        ck_assert_ptr_nonnull(strstr(req.parse_error, "control character"));
    }
}
END_TEST

START_TEST(value_cut_at_nul_carries_nothing_after_it)
{
    /* libfcgi hands params over as C strings: a NUL the client put in a
     * value ends it there, so the bytes behind it never become a header. */
    static const char raw[] = "HTTP_USER_AGENT=ua\0\r\nx-injected: 1";
    char *envp[] = { "REQUEST_METHOD=GET", "REQUEST_URI=/x", (char *)raw, NULL };
    ck_assert_int_eq(ars_request_parse(&req, envp), ARS_OK);
    ck_assert_str_eq(ars_request_header(&req, "user-agent"), "ua");
}
END_TEST

START_TEST(keeps_tabs_and_visible_bytes_in_header_values)
{
    char *envp[] = { "REQUEST_METHOD=GET", "REQUEST_URI=/x", "HTTP_USER_AGENT=a\tb c/1.0 \xc3\xa9", NULL };
    ck_assert_int_eq(ars_request_parse(&req, envp), ARS_OK);
    ck_assert_str_eq(ars_request_header(&req, "user-agent"), "a\tb c/1.0 \xc3\xa9");
}
END_TEST

START_TEST(refuses_header_name_with_odd_bytes_with_400)
{
    char *envp[] = { "REQUEST_METHOD=GET", "REQUEST_URI=/x", "HTTP_X_STAINLESS_A\r\nX=1", NULL };
    ck_assert_int_eq(ars_request_parse(&req, envp), ARS_ERR_INVALID);
    ck_assert_int_eq(req.parse_status, 400);
}
END_TEST

START_TEST(refuses_header_value_over_its_cap_with_431)
{
    static char big[ARS_CAP_HEADER_VALUE_BYTES + 64];
    int n = snprintf(big, sizeof(big), "HTTP_ANTHROPIC_BETA=");
    memset(big + n, 'a', ARS_CAP_HEADER_VALUE_BYTES + 1);
    char *envp[] = { "REQUEST_METHOD=GET", "REQUEST_URI=/x", big, NULL };
    ck_assert_int_eq(ars_request_parse(&req, envp), ARS_ERR_TOOBIG);
    ck_assert_int_eq(req.parse_status, 431);
    ck_assert_ptr_nonnull(strstr(req.parse_error, "anthropic-beta"));

    /* exactly at the cap is fine */
    reset_req();
    big[n + ARS_CAP_HEADER_VALUE_BYTES] = '\0';
    ck_assert_int_eq(ars_request_parse(&req, envp), ARS_OK);
}
END_TEST

START_TEST(refuses_too_many_headers_with_431_not_414)
{
    static char names[ARS_CAP_PARAMS + 1][32];
    static char *envp[ARS_CAP_PARAMS + 4];
    size_t k = 0;
    envp[k++] = "REQUEST_METHOD=GET";
    envp[k++] = "REQUEST_URI=/x";
    for (int i = 0; i <= ARS_CAP_PARAMS; i++) {
        snprintf(names[i], sizeof(names[i]), "HTTP_X_H%d=v", i);
        envp[k++] = names[i];
    }
    envp[k] = NULL;
    ck_assert_int_eq(ars_request_parse(&req, envp), ARS_ERR_TOOBIG);
    ck_assert_int_eq(req.parse_status, 431);
}
END_TEST

START_TEST(refuses_path_over_its_cap)
{
    static char uri[ARS_CAP_PATH_BYTES + 32];
    memcpy(uri, "REQUEST_URI=/", 13);
    memset(uri + 13, 'a', ARS_CAP_PATH_BYTES + 5);
    char *envp[] = { "REQUEST_METHOD=GET", uri, NULL };
    ck_assert_int_eq(ars_request_parse(&req, envp), ARS_ERR_TOOBIG);
    ck_assert_int_eq(req.parse_status, 414);
}
END_TEST

START_TEST(keeps_only_the_capped_number_of_query_pairs)
{
    static char uri[4096];
    size_t n = (size_t)snprintf(uri, sizeof(uri), "REQUEST_URI=/q?");
    for (int i = 0; i < ARS_CAP_QUERY_PARAMS + 10; i++)
        n += (size_t)snprintf(uri + n, sizeof(uri) - n, "k%d=v&", i);
    char *envp[] = { "REQUEST_METHOD=GET", uri, NULL };
    ck_assert_int_eq(ars_request_parse(&req, envp), ARS_OK);
    ck_assert_uint_eq(req.nquery, ARS_CAP_QUERY_PARAMS);
}
END_TEST

static void with_body(const char *content_length, const char *data, size_t piece)
{
    static char cl[64];
    snprintf(cl, sizeof(cl), "CONTENT_LENGTH=%s", content_length ? content_length : "");
    char *envp[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/x", cl, NULL };
    ck_assert_int_eq(ars_request_parse(&req, envp), ARS_OK);
    memio_init(&mio, data, strlen(data));
    mio.piece = piece;
    req.io = memio_io(&mio);
}

START_TEST(reads_body_of_announced_length_in_pieces)
{
    with_body("11", "hello world", 3);
    ck_assert_int_eq(ars_request_read_body(&req), ARS_OK);
    ck_assert_uint_eq(body.len, 11);
    ck_assert_str_eq(body.data, "hello world");
}
END_TEST

START_TEST(reads_body_to_eof_when_content_length_is_absent)
{
    with_body(NULL, "chunked upload body", 4);
    ck_assert_int_eq(req.content_length, -1);
    ck_assert_int_eq(ars_request_read_body(&req), ARS_OK);
    ck_assert_str_eq(body.data, "chunked upload body");
}
END_TEST

START_TEST(refuses_announced_body_over_cap_without_reading_it)
{
    with_body("101", "x", 0);
    ck_assert_int_eq(ars_request_read_body(&req), ARS_ERR_TOOBIG);
    ck_assert_uint_eq(mio.in_pos, 0);
}
END_TEST

START_TEST(accepts_body_exactly_at_cap)
{
    static char data[101];
    memset(data, 'a', 100);
    with_body("100", data, 7);
    ck_assert_int_eq(ars_request_read_body(&req), ARS_OK);
    ck_assert_uint_eq(body.len, 100);
    with_body(NULL, data, 7);
    ck_assert_int_eq(ars_request_read_body(&req), ARS_OK);
    ck_assert_uint_eq(body.len, 100);
}
END_TEST

START_TEST(refuses_unannounced_body_over_cap)
{
    static char data[102];
    memset(data, 'a', 101);
    with_body(NULL, data, 0);
    ck_assert_int_eq(ars_request_read_body(&req), ARS_ERR_TOOBIG);
}
END_TEST

START_TEST(reports_body_shorter_than_announced)
{
    with_body("50", "only this", 0);
    ck_assert_int_eq(ars_request_read_body(&req), ARS_ERR_IO);
}
END_TEST

START_TEST(reports_read_error)
{
    with_body(NULL, "abc", 0);
    mio.read_error = 1;
    ck_assert_int_eq(ars_request_read_body(&req), ARS_ERR_IO);
}
END_TEST

START_TEST(url_decode_leaves_broken_escapes_alone)
{
    ck_assert_str_eq(ars_url_decode(&arena, "a%2", 3, 0), "a%2");
    ck_assert_str_eq(ars_url_decode(&arena, "%zz%41", 6, 0), "%zzA");
    ck_assert_str_eq(ars_url_decode(&arena, "a+b", 3, 0), "a+b");
    ck_assert_str_eq(ars_url_decode(&arena, "a+b", 3, 1), "a b");
}
END_TEST

/* Test cases a full run makes (check/unit/plan.h). */
#define UNIT_TEST_PLAN 20

int main(void)
{
    Suite *s = suite_create("request");
    TCase *tc = tcase_create("parse");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, parses_method_path_query_and_headers);
    tcase_add_test(tc, rejects_request_without_method_or_uri);
    tcase_add_test(tc, rejects_bad_content_length_with_400_saying_so);
    tcase_add_test(tc, accepts_agreeing_content_lengths);
    tcase_add_test(tc, refuses_header_values_with_cr_or_lf_with_400);
    tcase_add_test(tc, value_cut_at_nul_carries_nothing_after_it);
    tcase_add_test(tc, keeps_tabs_and_visible_bytes_in_header_values);
    tcase_add_test(tc, refuses_header_name_with_odd_bytes_with_400);
    tcase_add_test(tc, refuses_header_value_over_its_cap_with_431);
    tcase_add_test(tc, refuses_too_many_headers_with_431_not_414);
    tcase_add_test(tc, refuses_path_over_its_cap);
    tcase_add_test(tc, keeps_only_the_capped_number_of_query_pairs);
    tcase_add_test(tc, reads_body_of_announced_length_in_pieces);
    tcase_add_test(tc, reads_body_to_eof_when_content_length_is_absent);
    tcase_add_test(tc, refuses_announced_body_over_cap_without_reading_it);
    tcase_add_test(tc, accepts_body_exactly_at_cap);
    tcase_add_test(tc, refuses_unannounced_body_over_cap);
    tcase_add_test(tc, reports_body_shorter_than_announced);
    tcase_add_test(tc, reports_read_error);
    tcase_add_test(tc, url_decode_leaves_broken_escapes_alone);
    suite_add_tcase(s, tc);
    return ars_check_run(s, UNIT_TEST_PLAN);
}
