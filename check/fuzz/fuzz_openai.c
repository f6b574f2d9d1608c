/* libFuzzer target for the OpenAI request converter (handlers/relay/openai.c),
 * with the response, error and stream converters fed the same bytes on the
 * side. Build and run: check/fuzz/README.md.
 *
 * Input: byte 0 picks the options (bit 0 show_thinking, bit 1 a model map,
 * bit 2 a small output cap, bit 3 default_max_tokens 1), the rest is the
 * request body. Invariants, each a __builtin_trap when broken:
 *   - the result is OK, INVALID or TOOBIG (TOOBIG only with the small cap);
 *   - on failure out is byte-for-byte what it was, and INVALID comes with a
 *     one-line "FIELD: what is wrong" message;
 *   - on success the body is one strict JSON object with a string model,
 *     max_tokens >= 1, a non-empty messages array whose roles alternate,
 *     whose contents are non-empty arrays with tool results first in user
 *     turns; meta strings are terminated and model is the one asked for;
 *   - converting the same input twice gives the same bytes;
 *   - the body as a Claude response or error, and as the data of every
 *     stream event, converts to strict JSON (or is refused) and leaves the
 *     stream converter done after message_stop or abort. */
#include <json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "openai.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct json_object *strict_parse(const char *s, size_t n)
{
    struct json_tokener *tok = json_tokener_new_ex(ARS_OPENAI_UPSTREAM_DEPTH * 2);
    CHECK(tok);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *o = json_tokener_parse_ex(tok, s, (int)n);
    int ok = o && json_tokener_get_error(tok) == json_tokener_success && json_tokener_get_parse_end(tok) == n;
    json_tokener_free(tok);
    if (!ok) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

static const char *type_of(struct json_object *block)
{
    struct json_object *t = NULL;
    if (!json_object_object_get_ex(block, "type", &t) || !json_object_is_type(t, json_type_string))
        return "";
    return json_object_get_string(t);
}

static void check_body(const char *s, size_t n, const struct ars_openai_meta *meta)
{
    struct json_object *o = strict_parse(s, n), *v = NULL;
    CHECK(o && json_object_is_type(o, json_type_object));
    CHECK(json_object_object_get_ex(o, "model", &v) && json_object_is_type(v, json_type_string));
    CHECK(strcmp(json_object_get_string(v), meta->claude_model) == 0);
    CHECK(json_object_object_get_ex(o, "max_tokens", &v) && json_object_is_type(v, json_type_int)
          && json_object_get_int64(v) >= 1);
    CHECK(json_object_object_get_ex(o, "messages", &v) && json_object_is_type(v, json_type_array));
    size_t count = json_object_array_length(v);
    CHECK(count >= 1);
    const char *prev = "";
    for (size_t i = 0; i < count; i++) {
        struct json_object *m = json_object_array_get_idx(v, i), *role = NULL, *content = NULL;
        CHECK(json_object_object_get_ex(m, "role", &role));
        const char *r = json_object_get_string(role);
        CHECK(strcmp(r, "user") == 0 || strcmp(r, "assistant") == 0);
        CHECK(strcmp(r, prev) != 0);                       /* turns alternate */
        prev = r;
        CHECK(json_object_object_get_ex(m, "content", &content) && json_object_is_type(content, json_type_array));
        size_t nb = json_object_array_length(content);
        CHECK(nb >= 1);
        int seen_other = 0;
        for (size_t k = 0; k < nb; k++) {
            const char *t = type_of(json_object_array_get_idx(content, k));
            if (strcmp(t, "tool_result") == 0) {
                CHECK(strcmp(r, "user") == 0 && !seen_other);   /* results first */
            } else {
                seen_other = 1;
                if (strcmp(t, "tool_use") == 0)
                    CHECK(strcmp(r, "assistant") == 0);
            }
        }
    }
    json_object_put(o);
}

static void check_response_side(const char *s, size_t n, const struct ars_openai_meta *meta)
{
    struct ars_buf out;
    ars_buf_init(&out, 1 << 24);
    enum ars_err err = ars_claude_to_openai_response(s, n, meta, 1, "fuzz", &out);
    CHECK(err == ARS_OK || err == ARS_ERR_INVALID);
    if (err == ARS_OK) {
        struct json_object *o = strict_parse(out.data, out.len);
        CHECK(o);
        json_object_put(o);
    } else {
        CHECK(out.len == 0);
    }
    ars_buf_reset(&out);
    CHECK(ars_claude_error_to_openai(500, s, n, &out) == ARS_OK);
    struct json_object *e = strict_parse(out.data, out.len);
    CHECK(e);
    json_object_put(e);

    /* every event kind with this data, then an abort */
    static const char *const names[] = {
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message", "ping", "error", "message_stop",
    };
    for (int show = 0; show < 2; show++) {
        struct ars_openai_stream st;
        ars_openai_stream_init(&st, meta, 1, "fuzz", show);
        ars_buf_reset(&out);
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            struct ars_sse_event ev = { names[i], s, n };
            CHECK(ars_openai_stream_event(&st, &ev, &out) == ARS_OK);
        }
        CHECK(ars_openai_stream_abort(&st, "gone", &out) == ARS_OK);
        CHECK(ars_openai_stream_done(&st));
        /* every line is `data: <strict JSON>` or `data: [DONE]`, [DONE] last */
        const char *p = out.data, *end = out.data + out.len;
        int last_done = 0;
        while (p < end) {
            CHECK((size_t)(end - p) > 6 && memcmp(p, "data: ", 6) == 0);
            const char *nl = strstr(p, "\n\n");
            CHECK(nl);
            size_t len = (size_t)(nl - p - 6);
            last_done = len == 6 && memcmp(p + 6, "[DONE]", 6) == 0;
            if (!last_done) {
                struct json_object *c = strict_parse(p + 6, len);
                CHECK(c);
                json_object_put(c);
            }
            p = nl + 2;
        }
        CHECK(last_done);
    }
    ars_buf_deinit(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    struct ars_openai_opts opts = {
        (flags & 2) ? "{\"gpt-4o\":\"claude-sonnet-4-5\",\"m\":\"claude-haiku-4-5\"}" : NULL,
        (flags & 8) ? 1 : 0,
        flags & 1,
    };
    size_t cap = (flags & 4) ? 256 : (size_t)1 << 26;

    struct ars_buf out1, out2;
    struct ars_openai_meta meta1, meta2;
    char err1[256], err2[256];
    ars_buf_init(&out1, cap);
    ars_buf_init(&out2, cap);
    CHECK(ars_buf_adds(&out1, "pre") == ARS_OK);

    enum ars_err e1 = ars_openai_to_claude(body, n, &opts, &out1, &meta1, err1, sizeof(err1));
    enum ars_err e2 = ars_openai_to_claude(body, n, &opts, &out2, &meta2, err2, sizeof(err2));
    CHECK(e1 == ARS_OK || e1 == ARS_ERR_INVALID || (e1 == ARS_ERR_TOOBIG && (flags & 4)));
    CHECK(e1 == e2);
    CHECK(out1.len >= 3 && memcmp(out1.data, "pre", 3) == 0);
    if (e1 == ARS_OK) {
        CHECK(out1.len - 3 == out2.len && memcmp(out1.data + 3, out2.data, out2.len) == 0);
        CHECK(memchr(meta1.model, '\0', sizeof(meta1.model)) && memchr(meta1.claude_model, '\0', sizeof(meta1.claude_model)));
        CHECK(meta1.model[0] && meta1.claude_model[0]);
        CHECK(meta1.n_tools >= 0 && meta1.n_tools <= ARS_OPENAI_MAX_TOOLS);
        CHECK(!meta1.include_usage || meta1.stream);
        CHECK(meta1.show_thinking == (flags & 1));
        check_body(out1.data + 3, out1.len - 3, &meta1);
    } else {
        CHECK(out1.len == 3 && out2.len == 0);
        CHECK(strcmp(err1, err2) == 0);
        if (e1 == ARS_ERR_INVALID) {
            CHECK(err1[0] && strstr(err1, ": ") && !strchr(err1, '\n'));
        }
    }
    ars_buf_deinit(&out1);
    ars_buf_deinit(&out2);

    struct ars_openai_meta meta = { "gpt-4o", "claude-sonnet-4-5", 1, (flags >> 4) & 1, 0, flags & 1 };
    check_response_side(body, n, &meta);
    return 0;
}
