/* Unit tests run against a declared plan: each test program states how many
 * test cases (loop iterations count one each) a full run makes, and fails
 * when another number ran. A suite that silently lost cases (a tcase that
 * was never added, a loop over an empty table) must not pass.
 *
 * Running a subset on purpose (CK_RUN_SUITE / CK_RUN_CASE / CK_INCLUDE_TAGS /
 * CK_EXCLUDE_TAGS set) skips the plan check. */
#ifndef ARS_CHECK_PLAN_H
#define ARS_CHECK_PLAN_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

static inline int ars_check_run(Suite *s, int plan)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int run = srunner_ntests_run(sr);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    int subset = getenv("CK_RUN_SUITE") || getenv("CK_RUN_CASE") || getenv("CK_INCLUDE_TAGS") ||
                 getenv("CK_EXCLUDE_TAGS");
    if (!subset && run != plan) {
        printf("FAIL - ran %d test cases, the plan is %d\n", run, plan);
        return EXIT_FAILURE;
    }
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
