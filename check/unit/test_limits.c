/* Limits math without Redis: UTC day buckets, the week start for every
 * reset day and hour, and what a refused client is told (status, error
 * type, message). */
#include <check.h>
#include "plan.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limits.h"

#define HOUR_MS 3600000LL
/* 2024-01-01T00:00:00Z, a Monday. */
#define MON_2024_01_01 1704067200000LL

static void assert_contains(const char *msg, const char *needle)
{
    ck_assert_msg(strstr(msg, needle) != NULL, "message \"%s\" does not contain \"%s\"", msg, needle);
}

START_TEST(day_bucket_changes_exactly_at_midnight_utc)
{
    char b[9];
    long long midnight = MON_2024_01_01 + 10 * ARS_DAY_MS;    /* 2024-01-11T00:00:00Z */
    ars_day_bucket(midnight - 1, b);
    ck_assert_str_eq(b, "20240110");
    ars_day_bucket(midnight, b);
    ck_assert_str_eq(b, "20240111");
    ars_day_bucket(midnight + ARS_DAY_MS - 1, b);
    ck_assert_str_eq(b, "20240111");
    ck_assert_int_eq(ars_day_start_ms(midnight - 1), midnight - ARS_DAY_MS);
    ck_assert_int_eq(ars_day_start_ms(midnight), midnight);
    ck_assert_int_eq(ars_day_start_ms(midnight + 12 * HOUR_MS + 5), midnight);
}
END_TEST

START_TEST(day_bucket_handles_leap_day_and_year_end)
{
    char b[9];
    long long feb29 = 1709164800000LL;   /* 2024-02-29T00:00:00Z */
    ars_day_bucket(feb29 + 23 * HOUR_MS, b);
    ck_assert_str_eq(b, "20240229");
    ars_day_bucket(feb29 + ARS_DAY_MS, b);
    ck_assert_str_eq(b, "20240301");
    ars_day_bucket(MON_2024_01_01 - 1, b);
    ck_assert_str_eq(b, "20231231");
    ars_day_bucket(0, b);
    ck_assert_str_eq(b, "19700101");
}
END_TEST

/* For every reset day and a few hours: the hour before the reset still
 * belongs to the previous week, the reset instant and the hour after to
 * the new one. */
START_TEST(week_starts_at_the_reset_day_and_hour_for_each_day)
{
    static const int hours[] = { 0, 1, 9, 23 };
    for (int day = 1; day <= 7; day++) {
        for (size_t h = 0; h < sizeof(hours) / sizeof(hours[0]); h++) {
            /* The reset instant in the week of 2024-01-08 (Monday). */
            long long reset = MON_2024_01_01 + ARS_WEEK_MS + (day - 1) * ARS_DAY_MS + hours[h] * HOUR_MS;
            ck_assert_msg(ars_week_start_ms(reset, day, hours[h]) == reset, "day %d hour %d: at reset", day,
                          hours[h]);
            ck_assert_msg(ars_week_start_ms(reset + HOUR_MS, day, hours[h]) == reset,
                          "day %d hour %d: hour after", day, hours[h]);
            ck_assert_msg(ars_week_start_ms(reset - 1, day, hours[h]) == reset - ARS_WEEK_MS,
                          "day %d hour %d: ms before", day, hours[h]);
            ck_assert_msg(ars_week_start_ms(reset - HOUR_MS, day, hours[h]) == reset - ARS_WEEK_MS,
                          "day %d hour %d: hour before", day, hours[h]);
            ck_assert_msg(ars_week_start_ms(reset + ARS_WEEK_MS - 1, day, hours[h]) == reset,
                          "day %d hour %d: last ms of the week", day, hours[h]);
        }
    }
}
END_TEST

START_TEST(week_start_defaults_monday_midnight_and_clamps_bad_settings)
{
    long long wed_noon = MON_2024_01_01 + 2 * ARS_DAY_MS + 12 * HOUR_MS;
    ck_assert_int_eq(ars_week_start_ms(wed_noon, 1, 0), MON_2024_01_01);
    ck_assert_int_eq(ars_week_start_ms(wed_noon, 0, 0), MON_2024_01_01);      /* day 0 -> Monday */
    ck_assert_int_eq(ars_week_start_ms(wed_noon, 9, -3), MON_2024_01_01);     /* -> Monday 00:00 */
    /* Sunday 23:00 reset seen from Wednesday: the previous Sunday. */
    ck_assert_int_eq(ars_week_start_ms(wed_noon, 7, 99), MON_2024_01_01 - 1 * HOUR_MS);
}
END_TEST

START_TEST(dollars_show_two_decimals_and_more_only_when_needed)
{
    char b[40];
    static const struct { long long micros; const char *want; } cases[] = {
        { 0, "$0.00" },          { 1500000, "$1.50" },    { 10000000, "$10.00" },
        { 1234567, "$1.234567" }, { 1230000, "$1.23" },    { 1234500, "$1.2345" },
        { 5, "$0.000005" },       { 999999999999LL, "$999999.999999" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ars_format_dollars(cases[i].micros, b, sizeof(b));
        ck_assert_str_eq(b, cases[i].want);
    }
}
END_TEST

START_TEST(retry_after_header_rounds_up_and_is_at_least_one_second)
{
    struct ars_admission a = { .verdict = ARS_LIMIT_WINDOW_REQUESTS };
    static const long long ms[] = { 0, 1, 999, 1000, 1001, 59999, 60000, -5 };
    static const long long want[] = { 1, 1, 1, 1, 2, 60, 60, 1 };
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        a.retry_after_ms = ms[i];
        ck_assert_int_eq(ars_limits_retry_after_seconds(&a), want[i]);
    }
}
END_TEST

START_TEST(concurrency_refusal_is_429_with_counts_and_retry)
{
    long long now = MON_2024_01_01;
    struct ars_admission a = { .verdict = ARS_LIMIT_CONCURRENCY, .retry_after_ms = 4500,
                               .reset_at_ms = now + 4500, .current = 2, .limit = 2 };
    int status;
    const char *type;
    char msg[512];
    ars_limits_describe(&a, &status, &type, msg, sizeof(msg));
    ck_assert_int_eq(status, 429);
    ck_assert_str_eq(type, "rate_limit_error");
    assert_contains(msg, "Concurrency limit");
    assert_contains(msg, "2 of 2");
    assert_contains(msg, "Retry after 1 s");
    assert_contains(msg, "2024-01-01T00:00:04Z");
}
END_TEST

START_TEST(concurrency_retry_after_is_a_short_hint_not_the_lease_ttl)
{
    /* The oldest lease may run for LEASE_TTL_SECONDS (300 s); any request
     * of the key may end sooner. */
    struct ars_admission a = { .verdict = ARS_LIMIT_CONCURRENCY, .retry_after_ms = 300000 };
    ck_assert_int_le(ars_limits_retry_after_seconds(&a), 2);
    ck_assert_int_ge(ars_limits_retry_after_seconds(&a), 1);
}
END_TEST

START_TEST(window_refusals_are_429_and_name_the_limit_and_reset)
{
    long long now = MON_2024_01_01 + 30 * 60000;
    long long end = MON_2024_01_01 + HOUR_MS;
    struct ars_admission a = { .retry_after_ms = end - now, .reset_at_ms = end, .window_start_ms = MON_2024_01_01 };
    int status;
    const char *type;
    char msg[512];

    a.verdict = ARS_LIMIT_WINDOW_REQUESTS;
    a.current = 10;
    a.limit = 10;
    ars_limits_describe(&a, &status, &type, msg, sizeof(msg));
    ck_assert_int_eq(status, 429);
    ck_assert_str_eq(type, "rate_limit_error");
    assert_contains(msg, "10 of 10 requests");
    assert_contains(msg, "2024-01-01T01:00:00Z");
    assert_contains(msg, "1800 s");

    a.verdict = ARS_LIMIT_WINDOW_TOKENS;
    a.current = 120000;
    a.limit = 100000;
    ars_limits_describe(&a, &status, &type, msg, sizeof(msg));
    ck_assert_int_eq(status, 429);
    assert_contains(msg, "120000 of 100000 tokens");

    a.verdict = ARS_LIMIT_WINDOW_COST;
    a.current = 2500000;
    a.limit = 2000000;
    ars_limits_describe(&a, &status, &type, msg, sizeof(msg));
    ck_assert_int_eq(status, 429);
    ck_assert_str_eq(type, "rate_limit_error");
    assert_contains(msg, "$2.50 of the $2.00 cost limit");
    assert_contains(msg, "2024-01-01T01:00:00Z");
}
END_TEST

START_TEST(budget_refusals_are_402_billing_errors_with_dollars_and_reset_time)
{
    long long now = MON_2024_01_01 + 15 * HOUR_MS;
    int status;
    const char *type;
    char msg[512];

    struct ars_admission d = { .verdict = ARS_LIMIT_DAILY_COST, .current = 10020000, .limit = 10000000,
                               .reset_at_ms = MON_2024_01_01 + ARS_DAY_MS,
                               .retry_after_ms = MON_2024_01_01 + ARS_DAY_MS - now };
    ars_limits_describe(&d, &status, &type, msg, sizeof(msg));
    ck_assert_int_eq(status, 402);
    ck_assert_str_eq(type, "billing_error");
    assert_contains(msg, "Daily cost limit");
    assert_contains(msg, "$10.02");
    assert_contains(msg, "$10.00 daily budget");
    assert_contains(msg, "2024-01-02T00:00:00Z");

    struct ars_admission w = { .verdict = ARS_LIMIT_WEEKLY_COST, .current = 50000000, .limit = 50000000,
                               .reset_at_ms = MON_2024_01_01 + ARS_WEEK_MS + 9 * HOUR_MS };
    ars_limits_describe(&w, &status, &type, msg, sizeof(msg));
    ck_assert_int_eq(status, 402);
    ck_assert_str_eq(type, "billing_error");
    assert_contains(msg, "Weekly cost limit");
    assert_contains(msg, "$50.00 weekly budget");
    assert_contains(msg, "2024-01-08T09:00:00Z");

    struct ars_admission t = { .verdict = ARS_LIMIT_TOTAL_COST, .current = 100000001, .limit = 100000000 };
    ars_limits_describe(&t, &status, &type, msg, sizeof(msg));
    ck_assert_int_eq(status, 402);
    ck_assert_str_eq(type, "billing_error");
    assert_contains(msg, "Total cost limit");
    assert_contains(msg, "$100.000001");
    assert_contains(msg, "$100.00 total budget");
    assert_contains(msg, "does not reset");
}
END_TEST

START_TEST(ok_verdict_has_no_error_and_a_short_buffer_is_never_overrun)
{
    struct ars_admission ok = { .verdict = ARS_LIMIT_OK };
    int status;
    const char *type = "x";
    char msg[64];
    memset(msg, 'z', sizeof(msg));
    ars_limits_describe(&ok, &status, &type, msg, sizeof(msg));
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_null(type);
    ck_assert_str_eq(msg, "");

    char small[20 + 1];
    small[20] = '#';
    struct ars_admission t = { .verdict = ARS_LIMIT_TOTAL_COST, .current = 1, .limit = 1 };
    ars_limits_describe(&t, &status, &type, small, 20);
    ck_assert_int_eq(small[20], '#');
    ck_assert_int_eq((int)strlen(small), 19);
}
END_TEST

/* Test cases a full run makes (check/unit/plan.h). */
#define UNIT_TEST_PLAN 11

int main(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("limits");
    tcase_add_test(tc, day_bucket_changes_exactly_at_midnight_utc);
    tcase_add_test(tc, day_bucket_handles_leap_day_and_year_end);
    tcase_add_test(tc, week_starts_at_the_reset_day_and_hour_for_each_day);
    tcase_add_test(tc, week_start_defaults_monday_midnight_and_clamps_bad_settings);
    tcase_add_test(tc, dollars_show_two_decimals_and_more_only_when_needed);
    tcase_add_test(tc, retry_after_header_rounds_up_and_is_at_least_one_second);
    tcase_add_test(tc, concurrency_refusal_is_429_with_counts_and_retry);
    tcase_add_test(tc, concurrency_retry_after_is_a_short_hint_not_the_lease_ttl);
    tcase_add_test(tc, window_refusals_are_429_and_name_the_limit_and_reset);
    tcase_add_test(tc, budget_refusals_are_402_billing_errors_with_dollars_and_reset_time);
    tcase_add_test(tc, ok_verdict_has_no_error_and_a_short_buffer_is_never_overrun);
    suite_add_tcase(s, tc);
    return ars_check_run(s, UNIT_TEST_PLAN);
}
