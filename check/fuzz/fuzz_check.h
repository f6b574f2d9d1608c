/* CHECK for the fuzz targets: a broken invariant names itself on stderr
 * and aborts with __builtin_trap, which libFuzzer reports as a crash and
 * saves the input for (check/fuzz/README.md). */
#ifndef ARS_FUZZ_CHECK_H
#define ARS_FUZZ_CHECK_H

#include <stdio.h>

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, \
                    #cond);                                                      \
            __builtin_trap();                                                    \
        }                                                                        \
    } while (0)

#endif
