/* Scheduler, pure parts: model families, the retry-after and unified-
 * reset headers, cool-down bounds, model mapping and the account view
 * built from a stored record. The Redis side is in
 * check/redis/redis_scheduler_test.c. */
#include <check.h>
#include "plan.h"
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "crypto.h"
#include "scheduler.h"

static struct ars_config *cfg;

static void setup(void)
{
    char *env[] = { "JWT_SECRET=0123456789abcdef0123456789abcdef-unit",
                    "ENCRYPTION_KEY=0123456789abcdef0123456789abcdef", "COOLDOWN_MAX_SECONDS=1800", NULL };
    char err[256] = "";
    ck_assert_msg(ars_config_load(NULL, 0, env, &cfg, err, sizeof(err)) == ARS_OK, "config: %s", err);
}

static void teardown(void)
{
    ars_config_free(cfg);
    cfg = NULL;
}

/* 2025-06-01T12:00:00Z */
#define T0_S 1748779200LL
#define T0_MS (T0_S * 1000)

START_TEST(model_family_is_found_by_substring_in_any_case)
{
    ck_assert_str_eq(ars_model_family("claude-opus-4-1-20250805"), "opus");
    ck_assert_str_eq(ars_model_family("claude-3-opus-latest"), "opus");
    ck_assert_str_eq(ars_model_family("Claude-Sonnet-4-5"), "sonnet");
    ck_assert_str_eq(ars_model_family("claude-haiku-4-5-20251001"), "haiku");
    ck_assert_str_eq(ars_model_family("claude-fable-1"), "fable");
    ck_assert_str_eq(ars_model_family("gpt-4o"), "other");
    ck_assert_str_eq(ars_model_family(""), "other");
    ck_assert_str_eq(ars_model_family(NULL), "other");
}
END_TEST

START_TEST(retry_after_in_seconds)
{
    long long d = -1;
    ck_assert_int_eq(ars_sched_parse_retry_after("120", T0_MS, &d), 0);
    ck_assert_int_eq(d, 120000);
    ck_assert_int_eq(ars_sched_parse_retry_after(" 0 ", T0_MS, &d), 0);
    ck_assert_int_eq(d, 0);
    ck_assert_int_eq(ars_sched_parse_retry_after("1.5", T0_MS, &d), 0);
    ck_assert_int_eq(d, 1500);
}
END_TEST

START_TEST(retry_after_as_an_http_date_in_all_three_forms)
{
    long long d = -1;
    ck_assert_int_eq(ars_sched_parse_retry_after("Sun, 01 Jun 2025 12:01:30 GMT", T0_MS, &d), 0);
    ck_assert_int_eq(d, 90000);
    ck_assert_int_eq(ars_sched_parse_retry_after("Sunday, 01-Jun-25 12:02:00 GMT", T0_MS, &d), 0);
    ck_assert_int_eq(d, 120000);
    ck_assert_int_eq(ars_sched_parse_retry_after("Sun Jun  1 12:00:10 2025", T0_MS, &d), 0);
    ck_assert_int_eq(d, 10000);
}
END_TEST

START_TEST(retry_after_date_in_the_past_means_no_wait)
{
    long long d = -1;
    ck_assert_int_eq(ars_sched_parse_retry_after("Sun, 01 Jun 2025 11:00:00 GMT", T0_MS, &d), 0);
    ck_assert_int_eq(d, 0);
}
END_TEST

START_TEST(retry_after_garbage_is_rejected)
{
    static const char *const bad[] = { "", "soon", "-5", "12abc", "Sun, 01 Foo 2025 12:00:00 GMT",
                                       "Sun, 01 Jun 2025 12:00:00 PST", "Sun, 32 Jun 2025 12:00:00 GMT",
                                       "Sun, 01 Jun 2025 25:00:00 GMT", "Sun, 01 Jun 2025 12:00:00 GMT trailing",
                                       NULL };
    long long d;
    for (int i = 0; bad[i]; i++)
        ck_assert_msg(ars_sched_parse_retry_after(bad[i], T0_MS, &d) == -1, "accepted '%s'", bad[i]);
    ck_assert_int_eq(ars_sched_parse_retry_after(NULL, T0_MS, &d), -1);
    char longv[300];
    memset(longv, '1', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    ck_assert_msg(ars_sched_parse_retry_after(longv, T0_MS, &d) == -1, "a value over the cap is refused");
}
END_TEST

START_TEST(unified_reset_is_unix_seconds)
{
    long long t = 0;
    ck_assert_int_eq(ars_sched_parse_unified_reset("1748779200", &t), 0);
    ck_assert_int_eq(t, T0_MS);
    ck_assert_int_eq(ars_sched_parse_unified_reset("1748779200.250", &t), 0);
    ck_assert_int_eq(t, T0_MS + 250);
    ck_assert_int_eq(ars_sched_parse_unified_reset("2025-06-01T12:00:00Z", &t), 0);
    ck_assert_int_eq(t, T0_MS);
    ck_assert_int_eq(ars_sched_parse_unified_reset("2025-06-01T14:00:00+02:00", &t), 0);
    ck_assert_int_eq(t, T0_MS);
}
END_TEST

START_TEST(unified_reset_garbage_is_rejected)
{
    static const char *const bad[] = { "", "0", "tomorrow", "-1748779200", "1748779200s", "2025-13-01T00:00:00Z",
                                       "2025-06-01 12:00", NULL };
    long long t;
    for (int i = 0; bad[i]; i++)
        ck_assert_msg(ars_sched_parse_unified_reset(bad[i], &t) == -1, "accepted '%s'", bad[i]);
    ck_assert_int_eq(ars_sched_parse_unified_reset(NULL, &t), -1);
}
END_TEST

START_TEST(cooldown_is_capped_by_cooldown_max_and_at_least_a_second)
{
    ck_assert_int_eq(ars_sched_cooldown_clamp_ms(cfg, 10LL * 3600 * 1000), 1800LL * 1000);
    ck_assert_int_eq(ars_sched_cooldown_clamp_ms(cfg, 1800LL * 1000), 1800LL * 1000);
    ck_assert_int_eq(ars_sched_cooldown_clamp_ms(cfg, 90000), 90000);
    ck_assert_int_eq(ars_sched_cooldown_clamp_ms(cfg, 0), 1000);
    ck_assert_int_eq(ars_sched_cooldown_clamp_ms(cfg, -5000), 1000);
}
END_TEST

static struct ars_account *account_from(const char *json)
{
    json_object *rec = json_tokener_parse(json);
    ck_assert_msg(rec != NULL, "bad test JSON");
    struct ars_account *a = NULL;
    char err[256] = "";
    enum ars_err rc = ars_account_from_record(cfg, rec, &a, err, sizeof(err));
    json_object_put(rec);
    ck_assert_msg(rc == ARS_OK && a, "record refused: %s", err);
    return a;
}

START_TEST(model_mapping_is_case_insensitive_and_falls_back_to_the_request)
{
    struct ars_account *a = account_from(
        "{\"id\":\"acc-1\",\"type\":\"claude-console\",\"name\":\"c\",\"model_mapping\":"
        "{\"claude-sonnet-4-5\":\"upstream-sonnet\",\"Claude-Opus-4-1\":\"upstream-opus\"}}");
    ck_assert_str_eq(ars_account_map_model(a, "claude-sonnet-4-5"), "upstream-sonnet");
    ck_assert_str_eq(ars_account_map_model(a, "CLAUDE-SONNET-4-5"), "upstream-sonnet");
    ck_assert_str_eq(ars_account_map_model(a, "claude-opus-4-1"), "upstream-opus");
    ck_assert_str_eq(ars_account_map_model(a, "claude-haiku-4-5"), "claude-haiku-4-5");
    ck_assert_str_eq(ars_account_map_model(a, "claude-sonnet-4-5-x"), "claude-sonnet-4-5-x");
    ars_account_release(a);
}
END_TEST

START_TEST(account_view_decrypts_credentials_and_proxy)
{
    char *creds = NULL, *proxy = NULL;
    const char *plain = "{\"access_token\":\"at-1\",\"refresh_token\":\"rt-1\",\"expires_at\":1748779200000,"
                        "\"scopes\":[\"user:inference\",\"user:profile\"]}";
    ck_assert_int_eq(ars_crypto_encrypt(&cfg->keys, "acc-2", plain, strlen(plain), &creds), ARS_OK);
    ck_assert_int_eq(ars_crypto_encrypt(&cfg->keys, "acc-2", "socks5h://u:p@127.0.0.1:1080", 28, &proxy), ARS_OK);
    char json[4096];
    snprintf(json, sizeof(json),
             "{\"id\":\"acc-2\",\"type\":\"claude-oauth\",\"name\":\"o\",\"priority\":7,\"schedulable\":true,"
             "\"status\":\"active\",\"concurrency_limit\":3,\"groups\":[\"g1\"],\"credentials\":\"%s\",\"proxy\":\"%s\"}",
             creds, proxy);
    struct ars_account *a = account_from(json);
    ck_assert_int_eq(a->type, ARS_ACCOUNT_OAUTH);
    ck_assert_int_eq(a->priority, 7);
    ck_assert_int_eq(a->concurrency_limit, 3);
    ck_assert_str_eq(a->groups[0], "g1");
    ck_assert_ptr_null(a->groups[1]);
    ck_assert_str_eq(a->access_token, "at-1");
    ck_assert_str_eq(a->refresh_token, "rt-1");
    ck_assert_int_eq(a->token_expires_ms, T0_MS);
    ck_assert_str_eq(a->scopes, "user:inference user:profile");
    ck_assert_str_eq(a->proxy, "socks5h://u:p@127.0.0.1:1080");
    ars_account_release(a);
    free(creds);
    free(proxy);
}
END_TEST

START_TEST(credentials_sealed_for_another_account_are_refused)
{
    char *creds = NULL;
    const char *plain = "{\"api_key\":\"sk-ant-x\"}";
    ck_assert_int_eq(ars_crypto_encrypt(&cfg->keys, "other-account", plain, strlen(plain), &creds), ARS_OK);
    char json[2048];
    snprintf(json, sizeof(json), "{\"id\":\"acc-3\",\"type\":\"claude-console\",\"name\":\"c\",\"credentials\":\"%s\"}",
             creds);
    json_object *rec = json_tokener_parse(json);
    struct ars_account *a = NULL;
    char err[256] = "";
    ck_assert_int_eq(ars_account_from_record(cfg, rec, &a, err, sizeof(err)), ARS_ERR_INVALID);
    ck_assert_ptr_null(a);
    ck_assert_msg(strstr(err, "credentials") != NULL, "error names the field: %s", err);
    json_object_put(rec);
    free(creds);
}
END_TEST

START_TEST(unknown_account_type_is_refused_by_name)
{
    json_object *rec = json_tokener_parse("{\"id\":\"acc-4\",\"type\":\"bedrock\",\"name\":\"b\"}");
    struct ars_account *a = NULL;
    char err[256] = "";
    ck_assert_int_eq(ars_account_from_record(cfg, rec, &a, err, sizeof(err)), ARS_ERR_INVALID);
    ck_assert_msg(strstr(err, "bedrock") != NULL, "error names the type: %s", err);
    json_object_put(rec);
}
END_TEST

START_TEST(account_defaults_schedulable_with_priority_50)
{
    struct ars_account *a = account_from("{\"id\":\"acc-5\",\"type\":\"claude-console\",\"name\":\"d\"}");
    ck_assert_int_eq(a->schedulable, 1);
    ck_assert_int_eq(a->priority, 50);
    ck_assert_int_eq(a->concurrency_limit, 0);
    ck_assert_str_eq(a->api_key, "");
    ck_assert_str_eq(a->proxy, "");
    ck_assert_ptr_null(a->groups[0]);
    ars_account_release(a);
}
END_TEST

/* Test cases a full run makes (check/unit/plan.h). */
#define UNIT_TEST_PLAN 13

int main(void)
{
    Suite *s = suite_create("scheduler");
    TCase *tc = tcase_create("pure");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, model_family_is_found_by_substring_in_any_case);
    tcase_add_test(tc, retry_after_in_seconds);
    tcase_add_test(tc, retry_after_as_an_http_date_in_all_three_forms);
    tcase_add_test(tc, retry_after_date_in_the_past_means_no_wait);
    tcase_add_test(tc, retry_after_garbage_is_rejected);
    tcase_add_test(tc, unified_reset_is_unix_seconds);
    tcase_add_test(tc, unified_reset_garbage_is_rejected);
    tcase_add_test(tc, cooldown_is_capped_by_cooldown_max_and_at_least_a_second);
    tcase_add_test(tc, model_mapping_is_case_insensitive_and_falls_back_to_the_request);
    tcase_add_test(tc, account_view_decrypts_credentials_and_proxy);
    tcase_add_test(tc, credentials_sealed_for_another_account_are_refused);
    tcase_add_test(tc, unknown_account_type_is_refused_by_name);
    tcase_add_test(tc, account_defaults_schedulable_with_priority_50);
    suite_add_tcase(s, tc);
    return ars_check_run(s, UNIT_TEST_PLAN);
}
