/* Migration runner: names, ordering, duplicates, what counts as applied,
 * and the embedded list itself. */
#include <check.h>
#include "plan.h"
#include <stdlib.h>
#include <string.h>

#include "migrate.h"

static char err[256];

START_TEST(version_is_the_leading_number)
{
    ck_assert_int_eq(ars_migration_version("001_init"), 1);
    ck_assert_int_eq(ars_migration_version("042_usage_tables"), 42);
    ck_assert_int_eq(ars_migration_version("1000_big"), 1000);
}
END_TEST

START_TEST(malformed_names_have_no_version)
{
    ck_assert_int_eq(ars_migration_version("init"), -1);
    ck_assert_int_eq(ars_migration_version("01_short"), -1);
    ck_assert_int_eq(ars_migration_version("001init"), -1);
    ck_assert_int_eq(ars_migration_version("001_"), -1);
    ck_assert_int_eq(ars_migration_version(""), -1);
    ck_assert_int_eq(ars_migration_version(NULL), -1);
}
END_TEST

START_TEST(plan_orders_by_number_not_by_listing)
{
    struct ars_migration list[] = {
        { "010_ten", "" }, { "002_two", "" }, { "001_one", "" }, { "003_three", "" },
    };
    size_t order[4];
    ck_assert_int_eq(ars_migrations_plan(list, 4, order, err, sizeof(err)), ARS_OK);
    ck_assert_str_eq(list[order[0]].name, "001_one");
    ck_assert_str_eq(list[order[1]].name, "002_two");
    ck_assert_str_eq(list[order[2]].name, "003_three");
    ck_assert_str_eq(list[order[3]].name, "010_ten");
}
END_TEST

START_TEST(plan_refuses_two_migrations_with_one_number)
{
    struct ars_migration list[] = { { "002_a", "" }, { "001_x", "" }, { "002_b", "" } };
    size_t order[3];
    ck_assert_int_eq(ars_migrations_plan(list, 3, order, err, sizeof(err)), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "share a number"));
}
END_TEST

START_TEST(plan_refuses_a_badly_named_migration)
{
    struct ars_migration list[] = { { "001_ok", "" }, { "latest", "" } };
    size_t order[2];
    ck_assert_int_eq(ars_migrations_plan(list, 2, order, err, sizeof(err)), ARS_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "\"latest\""));
}
END_TEST

START_TEST(applied_set_decides_what_runs_again)
{
    long applied[] = { 1, 2 };
    ck_assert(ars_migration_applied(applied, 2, 1));
    ck_assert(ars_migration_applied(applied, 2, 2));
    ck_assert(!ars_migration_applied(applied, 2, 3));
    ck_assert(!ars_migration_applied(NULL, 0, 1));
}
END_TEST

START_TEST(embedded_migrations_are_valid_and_start_with_the_schema)
{
    ck_assert_uint_ge(ars_migrations_count, 1);
    size_t *order = calloc(ars_migrations_count, sizeof(*order));
    ck_assert_int_eq(ars_migrations_plan(ars_migrations, ars_migrations_count, order, err, sizeof(err)), ARS_OK);
    ck_assert_str_eq(ars_migrations[order[0]].name, "001_init");
    ck_assert_ptr_nonnull(strstr(ars_migrations[order[0]].sql, "CREATE TABLE IF NOT EXISTS api_keys"));
    /* Idempotent by construction: every CREATE guards itself. */
    for (size_t i = 0; i < ars_migrations_count; i++) {
        const char *p = ars_migrations[i].sql;
        while ((p = strstr(p, "CREATE ")) != NULL) {
            ck_assert_msg(strncmp(p, "CREATE TABLE IF NOT EXISTS", 26) == 0 ||
                          strncmp(p, "CREATE INDEX IF NOT EXISTS", 26) == 0,
                          "%s: unguarded CREATE near \"%.40s\"", ars_migrations[i].name, p);
            p += 7;
        }
    }
    free(order);
}
END_TEST

/* Test cases a full run makes (check/unit/plan.h). */
#define UNIT_TEST_PLAN 7

int main(void)
{
    Suite *s = suite_create("migrate");
    TCase *tc = tcase_create("plan");
    tcase_add_test(tc, version_is_the_leading_number);
    tcase_add_test(tc, malformed_names_have_no_version);
    tcase_add_test(tc, plan_orders_by_number_not_by_listing);
    tcase_add_test(tc, plan_refuses_two_migrations_with_one_number);
    tcase_add_test(tc, plan_refuses_a_badly_named_migration);
    tcase_add_test(tc, applied_set_decides_what_runs_again);
    tcase_add_test(tc, embedded_migrations_are_valid_and_start_with_the_schema);
    suite_add_tcase(s, tc);
    return ars_check_run(s, UNIT_TEST_PLAN);
}
