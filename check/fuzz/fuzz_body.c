/* libFuzzer target for the Messages body scanner (handlers/relay/body.c,
 * ars_body_scan). Build and run: check/fuzz/README.md, scripts/fuzz.
 *
 * Input: byte 0 bit 0 is require_model, the rest is the body. The harness
 * uses only the contract in body.h, not the scanner's internals:
 * - the result is OK or INVALID; INVALID comes with a one-line message;
 * - the body is scanned twice, from a buffer of exactly its size and from
 *   one followed by bytes that would change the answer ('}' and '"'): both
 *   must agree, so the scanner never looks past len;
 * - on OK every span lies inside the body, the model token is a quoted
 *   string whose decoded text is NUL-terminated in `model` (and equal to
 *   the token's bytes when it has no escapes and fits), stream is 0 or 1,
 *   message_count is 0 exactly when first_message is absent.
 * It also compares with json-c (ARS_FUZZ_BODY_STRICT=0 in the environment
 * turns that off): when json-c parses the body strictly as an object, the
 * model and stream the scanner found must be the ones json-c found (the
 * billing and the model blacklist depend on it: repeated and escaped keys;
 * compared for printable-ASCII model names that fit). A broken invariant
 * aborts with __builtin_trap. */
#include <json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static int strict;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *s = getenv("ARS_FUZZ_BODY_STRICT");
    strict = !(s && strcmp(s, "0") == 0);
    return 0;
}

static int inside(struct ars_span sp, const char *body, size_t n)
{
    if (!sp.p)
        return sp.n == 0;
    return sp.p >= body && sp.n <= n && (size_t)(sp.p - body) <= n - sp.n;
}

/* The same fields, compared position by position (the two scans ran over
 * different copies of the body). */
static int same_span(struct ars_span a, const char *abase, struct ars_span b, const char *bbase)
{
    if (!a.p || !b.p)
        return !a.p && !b.p && a.n == b.n;
    return a.p - abase == b.p - bbase && a.n == b.n;
}

static void check_fields(const struct ars_body_fields *f, const char *body, size_t n, int require_model)
{
    CHECK(memchr(f->model, '\0', sizeof(f->model)));
    CHECK(memchr(f->user_id, '\0', sizeof(f->user_id)));
    CHECK(f->stream == 0 || f->stream == 1);
    CHECK(inside(f->model_value, body, n));
    CHECK(inside(f->system, body, n));
    CHECK(inside(f->first_message, body, n));
    CHECK((f->message_count == 0) == (f->first_message.p == NULL));
    CHECK(f->message_count <= n);
    if (f->system.p)
        CHECK(f->system.n >= 1);
    if (f->model_value.p) {
        const char *t = f->model_value.p;
        size_t tn = f->model_value.n;
        CHECK(tn >= 2 && t[0] == '"' && t[tn - 1] == '"');
        /* Without escapes the text is the token's bytes: all of them when
         * they fit (the decoder keeps 4 bytes for one UTF-8 sequence), a
         * prefix otherwise. */
        if (!memchr(t, '\\', tn)) {
            size_t mn = strlen(f->model);
            CHECK(mn <= tn - 2 && memcmp(f->model, t + 1, mn) == 0);
            if (tn - 2 + 4 < sizeof(f->model))
                CHECK(mn == tn - 2);
        }
    }
    if (require_model)
        CHECK(f->model_value.p && f->model[0]);
}

/* The model and stream json-c sees, for the strict comparison. */
static void compare_with_json_c(const struct ars_body_fields *f, const char *body, size_t n)
{
    struct json_tokener *tok = json_tokener_new();
    CHECK(tok);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *o = json_tokener_parse_ex(tok, body, (int)n);
    /* Strict mode also refuses bytes after the value. */
    int whole = o && json_tokener_get_error(tok) == json_tokener_success;
    json_tokener_free(tok);
    if (whole && json_object_is_type(o, json_type_object)) {
        struct json_object *m = NULL, *s = NULL;
        if (json_object_object_get_ex(o, "model", &m) && json_object_is_type(m, json_type_string)) {
            const char *jm = json_object_get_string(m);
            size_t jn = (size_t)json_object_get_string_len(m);
            /* Model ids are printable ASCII; how each decoder spells a lone
             * surrogate or where it cuts a long name is not the question. */
            int ascii = jn + 4 < sizeof(f->model);
            for (size_t i = 0; ascii && i < jn; i++)
                ascii = jm[i] >= 0x20 && jm[i] < 0x7f;
            if (ascii)
                CHECK(f->model_value.p && strcmp(f->model, jm) == 0);
        } else {
            CHECK(!f->model_value.p);
        }
        int js = json_object_object_get_ex(o, "stream", &s) && json_object_is_type(s, json_type_boolean)
                 && json_object_get_boolean(s);
        CHECK(f->stream == js);
    }
    json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int require_model = data[0] & 1;
    size_t n = size - 1;

    /* Exactly n bytes on the heap: ASan reports a read past the end. */
    char *exact = malloc(n ? n : 1);
    CHECK(exact);
    memcpy(exact, data + 1, n);
    /* The same bytes followed by a tail that would close an object or a
     * string if the scanner read it. */
    char *padded = malloc(n + 8);
    CHECK(padded);
    memcpy(padded, data + 1, n);
    memcpy(padded + n, "\"}]}\"}\n", 8);

    struct ars_body_fields f1, f2;
    char err1[256], err2[256];
    err1[0] = err2[0] = '\0';
    enum ars_err e1 = ars_body_scan(exact, n, require_model, &f1, err1, sizeof(err1));
    enum ars_err e2 = ars_body_scan(padded, n, require_model, &f2, err2, sizeof(err2));

    CHECK(e1 == ARS_OK || e1 == ARS_ERR_INVALID);
    CHECK(e1 == e2);
    if (e1 == ARS_ERR_INVALID) {
        CHECK(err1[0] && !strchr(err1, '\n') && strcmp(err1, err2) == 0);
    } else {
        check_fields(&f1, exact, n, require_model);
        CHECK(strcmp(f1.model, f2.model) == 0 && strcmp(f1.user_id, f2.user_id) == 0);
        CHECK(f1.stream == f2.stream && f1.message_count == f2.message_count);
        CHECK(same_span(f1.model_value, exact, f2.model_value, padded));
        CHECK(same_span(f1.system, exact, f2.system, padded));
        CHECK(same_span(f1.first_message, exact, f2.first_message, padded));
        if (strict)
            compare_with_json_c(&f1, exact, n);
    }
    free(exact);
    free(padded);
    return 0;
}
