/* Config table: defaults, file and environment, bad values named. */
#include <check.h>
#include "plan.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build-config.h"
#include "config.h"

#define JWT "JWT_SECRET=0123456789abcdef0123456789abcdef0123"
#define ENC "ENCRYPTION_KEY=0123456789abcdef0123456789abcdef"

static char err[512];

static struct ars_config *load_env(char *const *env, enum ars_err *rc)
{
    struct ars_config *cfg = NULL;
    err[0] = '\0';
    *rc = ars_config_load(NULL, 0, env, &cfg, err, sizeof(err));
    return cfg;
}

static char *write_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/ars-test-config-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

START_TEST(defaults_apply_when_only_secrets_are_set)
{
    char *env[] = { JWT, ENC, NULL };
    enum ars_err rc;
    struct ars_config *cfg = load_env(env, &rc);
    ck_assert_int_eq(rc, ARS_OK);
    ck_assert_str_eq(cfg->redis_host, "127.0.0.1");
    ck_assert_int_eq(cfg->redis_port, 6379);
    ck_assert_int_eq(cfg->request_max_bytes, 62914560);
    ck_assert_str_eq(cfg->redis_key_prefix, "ars:");
    ck_assert_str_eq(cfg->pg_host, "");
    ck_assert_int_eq(cfg->enable_test_routes, 0);
    ars_config_free(cfg);
}
END_TEST

START_TEST(load_keys_default_to_one_reserved_worker_eight_drains_and_the_own_group)
{
    char *env[] = { JWT, ENC, NULL };
    enum ars_err rc;
    struct ars_config *cfg = load_env(env, &rc);
    ck_assert_int_eq(rc, ARS_OK);
    ck_assert_int_eq(cfg->worker_reserve, 1);
    ck_assert_int_eq(cfg->drain_max_concurrent, 8);
    ck_assert_str_eq(cfg->listen_socket_group, "");
    ars_config_free(cfg);
    char *env2[] = { JWT, ENC, "WORKER_RESERVE=0", "DRAIN_MAX_CONCURRENT=0", "LISTEN_SOCKET_GROUP=www-data", NULL };
    cfg = load_env(env2, &rc);
    ck_assert_int_eq(rc, ARS_OK);
    ck_assert_int_eq(cfg->worker_reserve, 0);
    ck_assert_int_eq(cfg->drain_max_concurrent, 0);
    ck_assert_str_eq(cfg->listen_socket_group, "www-data");
    ars_config_free(cfg);
    char *env3[] = { JWT, ENC, "WORKER_RESERVE=-1", NULL };
    ck_assert_ptr_null(load_env(env3, &rc));
    ck_assert_ptr_nonnull(strstr(err, "WORKER_RESERVE"));
}
END_TEST

START_TEST(refuses_to_start_without_jwt_secret_and_says_how_to_make_one)
{
    char *env[] = { ENC, NULL };
    enum ars_err rc;
    ck_assert_ptr_null(load_env(env, &rc));
    ck_assert_int_eq(rc, ARS_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, "JWT_SECRET"));
    ck_assert_ptr_nonnull(strstr(err, "openssl rand"));
}
END_TEST

START_TEST(refuses_short_jwt_secret)
{
    char *env[] = { "JWT_SECRET=short", ENC, NULL };
    enum ars_err rc;
    ck_assert_ptr_null(load_env(env, &rc));
    ck_assert_ptr_nonnull(strstr(err, "JWT_SECRET is too short"));
}
END_TEST

START_TEST(refuses_encryption_key_that_is_not_exactly_32_chars)
{
    char *env1[] = { JWT, "ENCRYPTION_KEY=0123456789abcdef0123456789abcdef0", NULL };
    char *env2[] = { JWT, NULL };
    enum ars_err rc;
    ck_assert_ptr_null(load_env(env1, &rc));
    ck_assert_ptr_nonnull(strstr(err, "ENCRYPTION_KEY is the wrong length"));
    ck_assert_ptr_null(load_env(env2, &rc));
    ck_assert_ptr_nonnull(strstr(err, "ENCRYPTION_KEY is not set"));
}
END_TEST

START_TEST(rejects_non_numeric_and_out_of_range_integers_naming_the_variable)
{
    char *env1[] = { JWT, ENC, "REDIS_PORT=63x", NULL };
    char *env2[] = { JWT, ENC, "WORKER_THREADS=0", NULL };
    char *env3[] = { JWT, ENC, "REQUEST_MAX_BYTES=", NULL };
    enum ars_err rc;
    ck_assert_ptr_null(load_env(env1, &rc));
    ck_assert_ptr_nonnull(strstr(err, "REDIS_PORT (environment): invalid value \"63x\""));
    ck_assert_ptr_null(load_env(env2, &rc));
    ck_assert_ptr_nonnull(strstr(err, "WORKER_THREADS"));
    ck_assert_ptr_nonnull(strstr(err, "from 1 to"));
    ck_assert_ptr_null(load_env(env3, &rc));
    ck_assert_ptr_nonnull(strstr(err, "REQUEST_MAX_BYTES"));
}
END_TEST

START_TEST(rejects_bad_booleans_and_enum_values)
{
    char *env1[] = { JWT, ENC, "ENABLE_CORS=maybe", NULL };
    char *env2[] = { JWT, ENC, "LOG_LEVEL=loud", NULL };
    enum ars_err rc;
    ck_assert_ptr_null(load_env(env1, &rc));
    ck_assert_ptr_nonnull(strstr(err, "ENABLE_CORS"));
    ck_assert_ptr_nonnull(strstr(err, "true or false"));
    ck_assert_ptr_null(load_env(env2, &rc));
    ck_assert_ptr_nonnull(strstr(err, "LOG_LEVEL"));
    ck_assert_ptr_nonnull(strstr(err, "debug, info, warn, error"));
}
END_TEST

START_TEST(accepts_yes_no_on_off_booleans)
{
    char *env[] = { JWT, ENC, "ENABLE_CORS=YES", "PG_SSL=off", "LOG_FORMAT=json", NULL };
    enum ars_err rc;
    struct ars_config *cfg = load_env(env, &rc);
    ck_assert_int_eq(rc, ARS_OK);
    ck_assert_int_eq(cfg->enable_cors, 1);
    ck_assert_int_eq(cfg->pg_ssl, 0);
    ck_assert_int_eq(cfg->log_format, 1);
    ars_config_free(cfg);
}
END_TEST

START_TEST(reads_env_file_with_comments_quotes_and_export_and_environment_wins)
{
    char *path = write_file(
        "# comment\n"
        "\n"
        "export " JWT "\n"
        ENC "\n"
        "REDIS_HOST=\"redis.internal\"\n"
        "REDIS_PORT = 6380\n"
        "PG_DATABASE='claude-relay'\n"
        "SOME_OTHER_TOOL=ignored\n");
    char *env[] = { "REDIS_PORT=6390", NULL };
    struct ars_config *cfg = NULL;
    ck_assert_int_eq(ars_config_load(path, 1, env, &cfg, err, sizeof(err)), ARS_OK);
    ck_assert_str_eq(cfg->redis_host, "redis.internal");
    ck_assert_int_eq(cfg->redis_port, 6390);
    ck_assert_str_eq(cfg->pg_database, "claude-relay");
    ars_config_free(cfg);
    unlink(path);
}
END_TEST

START_TEST(bad_value_in_file_names_file_and_line)
{
    char *path = write_file(JWT "\n" ENC "\nREDIS_DB=-1\n");
    struct ars_config *cfg = NULL;
    ck_assert_int_eq(ars_config_load(path, 1, NULL, &cfg, err, sizeof(err)), ARS_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, "REDIS_DB"));
    ck_assert_ptr_nonnull(strstr(err, ":3)"));
    unlink(path);
}
END_TEST

START_TEST(missing_explicit_config_file_is_an_error_but_default_is_optional)
{
    char *env[] = { JWT, ENC, NULL };
    struct ars_config *cfg = NULL;
    ck_assert_int_eq(ars_config_load("/nonexistent/ai-relay.env", 1, env, &cfg, err, sizeof(err)),
                     ARS_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/ai-relay.env"));
    ck_assert_int_eq(ars_config_load("/nonexistent/.env", 0, env, &cfg, err, sizeof(err)), ARS_OK);
    ars_config_free(cfg);
}
END_TEST

START_TEST(redis_tls_is_refused_when_hiredis_lacks_it)
{
#ifdef HAVE_HIREDIS_SSL
    return;
#endif
    char *env[] = { JWT, ENC, "REDIS_ENABLE_TLS=true", NULL };
    enum ars_err rc;
    ck_assert_ptr_null(load_env(env, &rc));
    ck_assert_ptr_nonnull(strstr(err, "REDIS_ENABLE_TLS"));
    ck_assert_ptr_nonnull(strstr(err, "no TLS support"));
}
END_TEST

START_TEST(check_config_output_masks_every_secret)
{
    char *env[] = { JWT, ENC, "REDIS_PASSWORD=hunter2-redis-password", "PG_PASSWORD=pg-secret-password-123", NULL };
    enum ars_err rc;
    struct ars_config *cfg = load_env(env, &rc);
    ck_assert_int_eq(rc, ARS_OK);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ars_config_print(cfg, f);
    fclose(f);
    ck_assert_ptr_null(strstr(text, "0123456789abcdef0123456789abcdef"));
    ck_assert_ptr_null(strstr(text, "hunter2-redis-password"));
    ck_assert_ptr_null(strstr(text, "pg-secret-password"));
    ck_assert_ptr_nonnull(strstr(text, "JWT_SECRET="));
    ck_assert_ptr_nonnull(strstr(text, "REDIS_PORT=6379\n"));
    free(text);
    ars_config_free(cfg);
}
END_TEST

START_TEST(sample_config_documents_every_key)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ars_config_print_sample(f);
    fclose(f);
    for (size_t i = 0; i < ars_config_key_count(); i++) {
        char needle[128];
        snprintf(needle, sizeof(needle), "%s=", ars_config_key_name(i));
        ck_assert_msg(strstr(text, needle), "sample lacks %s", ars_config_key_name(i));
    }
    free(text);
}
END_TEST

/* Test cases a full run makes (check/unit/plan.h). */
#define UNIT_TEST_PLAN 14

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("load");
    tcase_add_test(tc, defaults_apply_when_only_secrets_are_set);
    tcase_add_test(tc, load_keys_default_to_one_reserved_worker_eight_drains_and_the_own_group);
    tcase_add_test(tc, refuses_to_start_without_jwt_secret_and_says_how_to_make_one);
    tcase_add_test(tc, refuses_short_jwt_secret);
    tcase_add_test(tc, refuses_encryption_key_that_is_not_exactly_32_chars);
    tcase_add_test(tc, rejects_non_numeric_and_out_of_range_integers_naming_the_variable);
    tcase_add_test(tc, rejects_bad_booleans_and_enum_values);
    tcase_add_test(tc, accepts_yes_no_on_off_booleans);
    tcase_add_test(tc, reads_env_file_with_comments_quotes_and_export_and_environment_wins);
    tcase_add_test(tc, bad_value_in_file_names_file_and_line);
    tcase_add_test(tc, missing_explicit_config_file_is_an_error_but_default_is_optional);
    tcase_add_test(tc, redis_tls_is_refused_when_hiredis_lacks_it);
    tcase_add_test(tc, check_config_output_masks_every_secret);
    tcase_add_test(tc, sample_config_documents_every_key);
    suite_add_tcase(s, tc);
    return ars_check_run(s, UNIT_TEST_PLAN);
}
