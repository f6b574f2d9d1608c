/* libFuzzer target for the env-style config file parser
 * (fcgi-app/config.c: ars_config_load with a file). Build and run:
 * check/fuzz/README.md, scripts/fuzz.
 *
 * Input: byte 0 bit 0 puts valid JWT_SECRET and ENCRYPTION_KEY into the
 * environment (so a file can get past validation and its other keys are
 * checked), bit 1 sets the log format to JSON; the rest is the file, written
 * to an in-memory file that the loader opens by path. Checked against
 * config.h:
 * - the result is OK, CONFIG or NOMEM; a failure leaves *out NULL and one
 *   non-empty line in errbuf;
 * - a loaded config prints one KEY=VALUE line per key of the table, in
 *   table order, and every secret (REDIS_PASSWORD, PG_PASSWORD,
 *   JWT_SECRET, ENCRYPTION_KEY) is printed masked ("(unset)" or at most 4
 *   characters, then "***(N chars)");
 * - loading the same file twice gives the same result and output.
 * A broken invariant aborts with __builtin_trap. */
#define _GNU_SOURCE 1   /* memfd_create */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char path[4096];
static int fd = -1;
static int unlinked = 1;

static void remove_file(void)
{
    if (!unlinked)
        unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* A file in memory (a disk file's truncate and rewrite cost ~4 ms a
     * run); a private temporary file where memfd is missing. */
    fd = memfd_create("ars-fuzz-config", 0);
    if (fd >= 0) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    } else {
        const char *dir = getenv("TMPDIR");
        snprintf(path, sizeof(path), "%s/ars-fuzz-config.XXXXXX", dir && *dir ? dir : "/tmp");
        fd = mkstemp(path);
        CHECK(fd >= 0);
        unlinked = 0;
        atexit(remove_file);
    }
    /* Log lines (warnings about values) are formatted but not shown. */
    int devnull = open("/dev/null", O_WRONLY);
    CHECK(devnull >= 0);
    ars_log_set_fd(devnull);
    return 0;
}

static int is_secret(const char *line)
{
    static const char *const secrets[] = { "REDIS_PASSWORD=", "PG_PASSWORD=", "JWT_SECRET=", "ENCRYPTION_KEY=" };
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        if (strncmp(line, secrets[i], strlen(secrets[i])) == 0)
            return 1;
    return 0;
}

/* "(unset)", or up to 4 characters then "***(N chars)"; read from the
 * end, since the shown characters may be stars themselves. */
static int masked(const char *v)
{
    if (strcmp(v, "(unset)") == 0)
        return 1;
    size_t n = strlen(v);
    static const char tail[] = " chars)";
    size_t tn = sizeof(tail) - 1;
    if (n < tn || strcmp(v + n - tn, tail) != 0)
        return 0;
    size_t d = n - tn;
    while (d > 0 && v[d - 1] >= '0' && v[d - 1] <= '9')
        d--;
    if (d == n - tn || d < 4 || memcmp(v + d - 4, "***(", 4) != 0)
        return 0;
    return d - 4 <= 4;
}

static void check_printed(const char *out, size_t len)
{
    CHECK(len > 0 && out[len - 1] == '\n');
    size_t i = 0;
    for (const char *line = out; line < out + len; i++) {
        const char *nl = memchr(line, '\n', (size_t)(out + len - line));
        CHECK(nl);
        CHECK(i < ars_config_key_count());
        const char *name = ars_config_key_name(i);
        size_t nn = strlen(name);
        CHECK((size_t)(nl - line) > nn && memcmp(line, name, nn) == 0 && line[nn] == '=');
        if (is_secret(line)) {
            char v[256];
            size_t vn = (size_t)(nl - line) - nn - 1;
            CHECK(vn < sizeof(v));
            memcpy(v, line + nn + 1, vn);
            v[vn] = '\0';
            CHECK(masked(v));
        }
        line = nl + 1;
    }
    CHECK(i == ars_config_key_count());
}

/* Loads the file; the printed config (malloc'd) or NULL on failure. */
static char *load(char *const *env, enum ars_err *err, char *errbuf, size_t errlen, size_t *outlen)
{
    struct ars_config *cfg = (struct ars_config *)1;
    errbuf[0] = '\0';
    *err = ars_config_load(path, 1, env, &cfg, errbuf, errlen);
    *outlen = 0;
    if (*err != ARS_OK) {
        CHECK(*err == ARS_ERR_CONFIG || *err == ARS_ERR_NOMEM);
        CHECK(cfg == NULL);
        CHECK(errbuf[0] && !strchr(errbuf, '\n'));
        return NULL;
    }
    CHECK(cfg != NULL && cfg != (struct ars_config *)1);
    char *out = NULL;
    FILE *f = open_memstream(&out, outlen);
    CHECK(f);
    ars_config_print(cfg, f);
    CHECK(fclose(f) == 0);
    ars_config_free(cfg);
    check_printed(out, *outlen);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    CHECK(ftruncate(fd, 0) == 0);
    CHECK(pwrite(fd, data + 1, size - 1, 0) == (ssize_t)(size - 1));
    ars_log_setup(ARS_LOG_DEBUG, (data[0] & 2) ? ARS_LOG_JSON : ARS_LOG_LOGFMT);

    char jwt[] = "JWT_SECRET=fuzz-jwt-secret-0123456789abcdef0123456789";
    char key[] = "ENCRYPTION_KEY=0123456789abcdef0123456789abcdef";
    char *with_secrets[] = { jwt, key, NULL };
    char *none[] = { NULL };
    char *const *env = (data[0] & 1) ? with_secrets : none;

    char err1[512], err2[512];
    enum ars_err e1, e2;
    size_t n1, n2;
    char *out1 = load(env, &e1, err1, sizeof(err1), &n1);
    char *out2 = load(env, &e2, err2, sizeof(err2), &n2);
    CHECK(e1 == e2 && strcmp(err1, err2) == 0);
    CHECK(n1 == n2 && (!n1 || memcmp(out1, out2, n1) == 0));
    free(out1);
    free(out2);
    return 0;
}
