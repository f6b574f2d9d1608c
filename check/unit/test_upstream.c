/* The upstream call's libcurl handle: which URL schemes it may use. */
#include <check.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "upstream.h"
#include "plan.h"

struct seen {
    size_t bytes;
};

static int count_data(void *ctx, const char *data, size_t n)
{
    (void)data;
    ((struct seen *)ctx)->bytes += n;
    return 0;
}

static void call_url(const char *url, struct ars_upstream_result *res, struct seen *seen)
{
    struct ars_upstream *u = ars_upstream_new();
    ck_assert_ptr_nonnull(u);
    struct ars_upstream_call call = {
        .url = url,
        .connect_timeout_ms = 1000,
        .first_byte_timeout_ms = 2000,
        .idle_timeout_ms = 2000,
        .max_response_bytes = 1 << 20,
        .on_data = count_data,
        .ctx = seen,
    };
    ars_upstream_perform(u, &call, res);
    ars_upstream_free(u);
}

START_TEST(refuses_file_urls_and_reads_nothing)
{
    char path[] = "/tmp/ars-test-upstream-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "secret\n", 7), 7);
    close(fd);
    char url[128];
    snprintf(url, sizeof(url), "file://%s", path);
    struct ars_upstream_result res;
    struct seen seen = { 0 };
    call_url(url, &res, &seen);
    unlink(path);
    ck_assert_int_ne(res.outcome, ARS_UP_DONE);
    ck_assert_uint_eq(seen.bytes, 0);
    ck_assert_uint_eq(res.bytes, 0);
    ars_upstream_result_clear(&res);
}
END_TEST

START_TEST(refuses_other_schemes_before_connecting)
{
    static const char *const urls[] = { "dict://127.0.0.1:1/x", "gopher://127.0.0.1:1/x", "ftp://127.0.0.1:1/x" };
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        struct ars_upstream_result res;
        struct seen seen = { 0 };
        call_url(urls[i], &res, &seen);
        ck_assert_int_eq(res.outcome, ARS_UP_CONNECT_FAILED);
        /* libcurl says the scheme is not allowed, not that port 1 refused us */
        ck_assert_msg(strstr(res.error, "not supported") || strstr(res.error, "disabled") ||
                      strstr(res.error, "Protocol"), "%s: error '%s'", urls[i], res.error);
        ars_upstream_result_clear(&res);
    }
}
END_TEST

/* Test cases a full run makes (check/unit/plan.h). */
#define UNIT_TEST_PLAN 2

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    Suite *s = suite_create("upstream");
    TCase *tc = tcase_create("schemes");
    tcase_add_test(tc, refuses_file_urls_and_reads_nothing);
    tcase_add_test(tc, refuses_other_schemes_before_connecting);
    suite_add_tcase(s, tc);
    int rc = ars_check_run(s, UNIT_TEST_PLAN);
    curl_global_cleanup();
    return rc;
}
