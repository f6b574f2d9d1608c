/* OpenAI Chat Completions <-> Messages: request conversion, non-stream
 * response and error conversion. The field table and the rules are in
 * openai.h; the stream converter is openai_stream.c.
 *
 * The request is parsed once with json-c (depth-capped), then the Claude
 * body is written with ars_buf_add_json_str: no second tree. Memory beyond
 * the parse tree is about twice the converted body: a message's blocks are
 * written once into a scratch buffer, handed to the open turn by swapping
 * buffers, and copied once into out when the turn closes (system messages
 * are collected by a first pass over the messages, so turns can go
 * straight to out). Subtrees that pass through (tool parameters, tool-call
 * arguments, a response_format schema) are re-serialised by json-c, so the
 * output is always plain JSON even where the input used json-c's
 * leniencies (single quotes, lone surrogates). */
#include "openai.h"

#include <json.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"

#define JSON_OUT (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define ECHO_MAX 64                 /* bytes of a client value quoted in an error */
#define TOOL_NAME_MAX 64            /* OpenAI's and Claude's common limit */
#define DEFAULT_MAX_TOKENS 4096

/* ---- JSON helpers ---------------------------------------------------------- */

/* obj[key], or NULL when absent or JSON null (OpenAI SDKs send null for
 * unset fields). */
static struct json_object *get(struct json_object *obj, const char *key)
{
    struct json_object *v = NULL;
    if (!obj || !json_object_object_get_ex(obj, key, &v))
        return NULL;
    return v;
}

static int is_type(struct json_object *v, enum json_type t)
{
    return v && json_object_is_type(v, t);
}

static const char *sval(struct json_object *v, size_t *n)
{
    int len = json_object_get_string_len(v);
    *n = len > 0 ? (size_t)len : 0;
    return json_object_get_string(v);
}

/* 1 when v is the string lit exactly (an embedded NUL never matches). */
static int str_is(struct json_object *v, const char *lit)
{
    size_t n;
    if (!is_type(v, json_type_string))
        return 0;
    const char *s = sval(v, &n);
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

static const char *type_name(struct json_object *v)
{
    switch (v ? json_object_get_type(v) : json_type_null) {
    case json_type_boolean: return "boolean";
    case json_type_double:
    case json_type_int: return "number";
    case json_type_string: return "string";
    case json_type_array: return "array";
    case json_type_object: return "object";
    case json_type_null:
    default: return "null";
    }
}

/* 1 when no number anywhere in v is NaN or infinite (json-c accepts the
 * NaN and Infinity literals and 1e999, none of which is JSON). Recursion is
 * bounded by the tokener's depth cap. */
static int all_finite(struct json_object *v)
{
    switch (v ? json_object_get_type(v) : json_type_null) {
    case json_type_double:
        return isfinite(json_object_get_double(v));
    case json_type_array: {
        size_t n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++)
            if (!all_finite(json_object_array_get_idx(v, i)))
                return 0;
        return 1;
    }
    case json_type_object: {
        json_object_object_foreach(v, key, val) {
            (void)key;
            if (!all_finite(val))
                return 0;
        }
        return 1;
    }
    default:
        return 1;
    }
}

/* Parses s as one JSON value with at most `depth` levels of nesting and
 * nothing but whitespace after it. On failure *why says what is wrong. */
static struct json_object *parse_json(const char *s, size_t n, int depth, const char **why)
{
    struct json_object *o = NULL;
    struct json_tokener *tok = NULL;

    *why = "not valid JSON";
    if (n > INT32_MAX) {                 /* json-c takes an int length */
        *why = "too large";
        return NULL;
    }
    tok = json_tokener_new_ex(depth);
    if (!tok) {
        *why = "out of memory";
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, s, (int)n);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    if (!o || jerr != json_tokener_success) {
        if (jerr == json_tokener_error_depth)
            *why = "nested too deeply";
        else if (jerr == json_tokener_continue)
            *why = "not valid JSON (unexpected end of data)";
        else if (jerr == json_tokener_error_parse_utf8_string)
            *why = "not valid JSON (invalid UTF-8)";
        else
            *why = "not valid JSON";
        goto bad;
    }
    for (size_t end = json_tokener_get_parse_end(tok); end < n; end++) {
        if (s[end] != ' ' && s[end] != '\t' && s[end] != '\n' && s[end] != '\r') {
            *why = "not valid JSON (characters after the value)";
            goto bad;
        }
    }
    if (!all_finite(o)) {
        *why = "not valid JSON (NaN or Infinity)";
        goto bad;
    }
    goto out;
bad:
    json_object_put(o);
    o = NULL;
out:
    json_tokener_free(tok);
    return o;
}

static enum ars_err sep(struct ars_buf *b)
{
    return b->len ? ars_buf_add(b, ",", 1) : ARS_OK;
}

static enum ars_err add_str(struct ars_buf *b, const char *s, size_t n)
{
    return ars_buf_add_json_str(b, s, n);
}

static enum ars_err add_cstr(struct ars_buf *b, const char *s)
{
    return ars_buf_add_json_str(b, s, strlen(s));
}

/* Appends v serialised as plain JSON. */
static enum ars_err add_value(struct ars_buf *b, struct json_object *v)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(v, JSON_OUT, &n);
    if (!s)
        return ARS_ERR_NOMEM;
    return ars_buf_add(b, s, n);
}

/* 1 when s has a character that is not JSON whitespace. */
static int has_text(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return 1;
    return 0;
}

static int ascii_lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

/* Case-insensitive ASCII prefix test on a counted string. */
static int has_prefix_ci(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    if (n < k)
        return 0;
    for (size_t i = 0; i < k; i++)
        if (ascii_lower((unsigned char)s[i]) != prefix[i])
            return 0;
    return 1;
}

static int eq_ci(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && has_prefix_ci(s, n, lit);
}

static int has_no_controls(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* ---- request conversion state --------------------------------------------- */

enum role { ROLE_NONE, ROLE_USER, ROLE_ASSISTANT };

struct tool_name {
    const char *s;
    size_t n;
};

struct conv {
    const struct ars_openai_opts *o;
    char *errbuf;
    size_t errlen;
    struct ars_buf sys;        /* system text blocks, comma-separated */
    struct ars_buf *out;       /* finished turns go here */
    size_t n_turns;
    struct ars_buf results;    /* open turn: tool_result blocks */
    struct ars_buf blocks;     /* open turn: every other block */
    struct ars_buf mresults;   /* the message being converted: tool_result blocks */
    struct ars_buf mblocks;    /* the message being converted: other blocks */
    struct ars_buf part;       /* scratch: one tool_result's content */
    enum role turn;            /* role of the open turn */
    char legacy_id[48];        /* id given to the last legacy assistant function_call */
    struct tool_name names[ARS_OPENAI_MAX_TOOLS];
    size_t n_names;
};

static enum ars_err fail(struct conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Formats the client-facing "FIELD: what is wrong" line. */
static enum ars_err fail(struct conv *c, const char *fmt, ...)
{
    if (c->errbuf && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->errbuf, c->errlen, fmt, ap);
        va_end(ap);
    }
    return ARS_ERR_INVALID;
}

/* Length of a client string as quoted in an error: at most ECHO_MAX bytes,
 * never past a control character (NUL, newline: the message stays one
 * line) nor through a UTF-8 character. */
static int echo_len(const char *s, size_t n)
{
    size_t k = n < ECHO_MAX ? n : ECHO_MAX;
    for (size_t i = 0; i < k; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return (int)i;
    while (k < n && k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--;
    return (int)k;
}

/* ---- blocks ------------------------------------------------------------------ */

/* {"type":"text","text":...}; blank text is dropped, since Claude refuses
 * empty and whitespace-only text blocks. */
static enum ars_err text_block(struct ars_buf *b, const char *s, size_t n)
{
    if (!has_text(s, n))
        return ARS_OK;
    enum ars_err err = sep(b);
    if (!err) err = ars_buf_adds(b, "{\"type\":\"text\",\"text\":");
    if (!err) err = add_str(b, s, n);
    if (!err) err = ars_buf_add(b, "}", 1);
    return err;
}

/* A tool id as a JSON string. Claude accepts only [A-Za-z0-9_-] in ids;
 * other bytes become '_', the same way in tool_use and tool_result, so the
 * pairs still match. */
static enum ars_err add_id(struct ars_buf *b, const char *s, size_t n)
{
    char *dst;
    enum ars_err err = ars_buf_reserve(b, n + 2, &dst);
    if (err)
        return err;
    dst[0] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
                 || ch == '_' || ch == '-';
        dst[i + 1] = ok ? (char)ch : '_';
    }
    dst[n + 1] = '"';
    return ars_buf_commit(b, n + 2);
}

/* Standard base64 (RFC 4648 section 4) as Claude decodes it: the alphabet,
 * whole 4-character groups, and '=' only as the padding of the last group
 * ("x=" or "==" at the very end). */
static int base64_ok(const char *s, size_t n)
{
    if (n == 0 || n % 4 != 0)
        return 0;
    size_t pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    for (size_t i = 0; i < n - pad; i++) {
        unsigned char ch = (unsigned char)s[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
                 || ch == '+' || ch == '/';
        if (!ok)
            return 0;
    }
    return 1;
}

/* An image_url part -> a Claude image block. data: URLs become base64
 * sources (media type checked against what Claude accepts), http(s) URLs
 * become url sources; `where` is the path of the part. */
static enum ars_err image_block(struct conv *c, struct ars_buf *b, const char *where,
                                struct json_object *part)
{
    static const char *const types[] = { "image/jpeg", "image/png", "image/gif", "image/webp" };
    struct json_object *iu = get(part, "image_url");
    struct json_object *urlv = iu;
    enum ars_err err;

    if (is_type(iu, json_type_object))
        urlv = get(iu, "url");
    else if (!is_type(iu, json_type_string))
        return fail(c, "%s.image_url: must be an object with a \"url\" (got %s)", where, type_name(iu));
    if (!is_type(urlv, json_type_string))
        return fail(c, "%s.image_url.url: must be a string (got %s)", where, type_name(urlv));
    size_t n;
    const char *url = sval(urlv, &n);

    if (has_prefix_ci(url, n, "data:")) {
        const char *p = url + 5, *end = url + n;
        const char *comma = memchr(p, ',', (size_t)(end - p));
        if (!comma)
            return fail(c, "%s.image_url.url: not a valid data: URL (no comma before the data)", where);
        const char *mt_end = p;
        while (mt_end < comma && *mt_end != ';')
            mt_end++;
        int base64 = 0;
        for (const char *q = mt_end; q < comma;) {      /* ;param;param */
            const char *r = q + 1;
            while (r < comma && *r != ';')
                r++;
            if (eq_ci(q + 1, (size_t)(r - q - 1), "base64"))
                base64 = 1;
            q = r;
        }
        const char *media = NULL;
        size_t mlen = (size_t)(mt_end - p);
        for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++)
            if (eq_ci(p, mlen, types[k]))
                media = types[k];
        if (!media && eq_ci(p, mlen, "image/jpg"))      /* a common misspelling */
            media = "image/jpeg";
        if (!media)
            return fail(c, "%s.image_url.url: unsupported image type \"%.*s\" "
                        "(Claude accepts image/jpeg, image/png, image/gif and image/webp)",
                        where, echo_len(p, mlen), p);
        if (!base64)
            return fail(c, "%s.image_url.url: the data: URL must be base64-encoded "
                        "(data:%s;base64,...)", where, media);
        const char *data = comma + 1;
        size_t dlen = (size_t)(end - data);
        if (!base64_ok(data, dlen))
            return fail(c, "%s.image_url.url: the image data is %s", where,
                        dlen ? "not valid base64" : "empty");
        err = sep(b);
        if (!err) err = ars_buf_adds(b, "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":");
        if (!err) err = add_cstr(b, media);
        if (!err) err = ars_buf_adds(b, ",\"data\":");
        if (!err) err = add_str(b, data, dlen);
        if (!err) err = ars_buf_adds(b, "}}");
        return err;
    }
    if ((has_prefix_ci(url, n, "https://") && n > 8) || (has_prefix_ci(url, n, "http://") && n > 7)) {
        err = sep(b);
        if (!err) err = ars_buf_adds(b, "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":");
        if (!err) err = add_str(b, url, n);
        if (!err) err = ars_buf_adds(b, "}}");
        return err;
    }
    return fail(c, "%s.image_url.url: must be a data: URL (data:image/png;base64,...) or an http(s) URL",
                where);
}

/* Which part types a content array may hold. */
enum {
    PART_TEXT = 1,
    PART_IMAGE = 2,
    PART_REFUSAL = 4
};

/* Converts `content` (a string or an array of parts) at path `where` into
 * blocks appended to b. A missing or null content is accepted only when
 * may_be_empty. */
static enum ars_err content_blocks(struct conv *c, struct ars_buf *b, const char *where,
                                   struct json_object *content, int allowed, int may_be_empty)
{
    char path[96];
    enum ars_err err = ARS_OK;
    size_t n;

    if (!content) {
        if (may_be_empty)
            return ARS_OK;
        return fail(c, "%s: is required", where);
    }
    if (is_type(content, json_type_string)) {
        const char *s = sval(content, &n);
        return text_block(b, s, n);
    }
    if (!is_type(content, json_type_array))
        return fail(c, "%s: must be a string or an array of content parts (got %s)", where,
                    type_name(content));
    size_t count = json_object_array_length(content);
    if (count > ARS_OPENAI_MAX_PARTS)
        return fail(c, "%s: more than %d content parts", where, ARS_OPENAI_MAX_PARTS);
    for (size_t j = 0; j < count && !err; j++) {
        struct json_object *part = json_object_array_get_idx(content, j);
        snprintf(path, sizeof(path), "%s[%zu]", where, j);
        if (!is_type(part, json_type_object))
            return fail(c, "%s: must be an object (got %s)", path, type_name(part));
        struct json_object *type = get(part, "type");
        if (!is_type(type, json_type_string))
            return fail(c, "%s.type: %s", path, type ? "must be a string" : "is required");
        if (str_is(type, "text") && (allowed & PART_TEXT)) {
            struct json_object *text = get(part, "text");
            if (!is_type(text, json_type_string))
                return fail(c, "%s.text: must be a string (got %s)", path, type_name(text));
            const char *s = sval(text, &n);
            err = text_block(b, s, n);
        } else if (str_is(type, "refusal") && (allowed & PART_REFUSAL)) {
            struct json_object *text = get(part, "refusal");
            if (!is_type(text, json_type_string))
                return fail(c, "%s.refusal: must be a string (got %s)", path, type_name(text));
            const char *s = sval(text, &n);
            err = text_block(b, s, n);
        } else if (str_is(type, "image_url") && (allowed & PART_IMAGE)) {
            err = image_block(c, b, path, part);
        } else if (str_is(type, "input_audio")) {
            return fail(c, "%s.type: audio input is not supported (Claude takes text and images)", path);
        } else if (str_is(type, "file")) {
            return fail(c, "%s.type: file parts are not supported; send the content as text or images", path);
        } else {
            const char *s = sval(type, &n);
            const char *expected = allowed == PART_TEXT ? "text"
                                   : allowed & PART_IMAGE ? "text or image_url" : "text or refusal";
            return fail(c, "%s.type: \"%.*s\" parts are not accepted here (expected %s)", path,
                        echo_len(s, n), s, expected);
        }
    }
    return err;
}

/* ---- turns -------------------------------------------------------------------- */

/* Closes the open turn into out. Tool results go first: Claude requires
 * them at the start of a user turn. */
static enum ars_err flush_turn(struct conv *c)
{
    enum ars_err err = ARS_OK;
    struct ars_buf *out = c->out;
    if (!c->results.len && !c->blocks.len)
        return ARS_OK;
    if (c->n_turns++)
        err = ars_buf_add(out, ",", 1);
    if (!err) err = ars_buf_adds(out, c->turn == ROLE_ASSISTANT
                                 ? "{\"role\":\"assistant\",\"content\":["
                                 : "{\"role\":\"user\",\"content\":[");
    if (!err) err = ars_buf_add(out, c->results.data, c->results.len);
    if (!err && c->results.len && c->blocks.len) err = ars_buf_add(out, ",", 1);
    if (!err) err = ars_buf_add(out, c->blocks.data, c->blocks.len);
    if (!err) err = ars_buf_adds(out, "]}");
    ars_buf_reset(&c->results);
    ars_buf_reset(&c->blocks);
    return err;
}

static void swap_buf(struct ars_buf *a, struct ars_buf *b)
{
    struct ars_buf t = *a;
    *a = *b;
    *b = t;
}

/* Appends the list in from (comma-separated blocks) to the list in to;
 * when to is empty the buffers are swapped instead of copied. */
static enum ars_err move_blocks(struct ars_buf *to, struct ars_buf *from)
{
    enum ars_err err = ARS_OK;
    if (!from->len)
        return ARS_OK;
    if (!to->len) {
        swap_buf(to, from);
    } else {
        err = ars_buf_add(to, ",", 1);
        if (!err) err = ars_buf_add(to, from->data, from->len);
    }
    ars_buf_reset(from);
    return err;
}

/* Adds the blocks of the message just converted to the turn of role r,
 * opening a new turn when the role changes. A message with no blocks left
 * (empty text only) adds nothing and does not break a run of one role. */
static enum ars_err commit(struct conv *c, enum role r)
{
    enum ars_err err = ARS_OK;
    if (!c->mresults.len && !c->mblocks.len)
        return ARS_OK;
    if (c->turn != r) {
        err = flush_turn(c);
        c->turn = r;
    }
    if (!err) err = move_blocks(&c->results, &c->mresults);
    if (!err) err = move_blocks(&c->blocks, &c->mblocks);
    ars_buf_reset(&c->mresults);
    ars_buf_reset(&c->mblocks);
    return err;
}

/* {"type":"tool_use","id":...,"name":...,"input":...}. `args` is the
 * arguments string (or, leniently, an object); `where` its path. */
static enum ars_err tool_use_block(struct conv *c, struct ars_buf *b, const char *where,
                                   const char *id, size_t id_len, struct json_object *name,
                                   struct json_object *args)
{
    struct json_object *input = NULL;
    enum ars_err err;
    size_t n;

    if (is_type(args, json_type_string)) {
        const char *s = sval(args, &n);
        if (has_text(s, n)) {
            const char *why;
            input = parse_json(s, n, ARS_OPENAI_MAX_DEPTH, &why);
            if (!input)
                return fail(c, "%s: %s", where, why);
            if (!is_type(input, json_type_object)) {
                err = fail(c, "%s: must be a JSON object (got %s)", where, type_name(input));
                json_object_put(input);
                return err;
            }
        }
    } else if (is_type(args, json_type_object)) {
        input = json_object_get(args);
    } else if (args) {
        return fail(c, "%s: must be a string holding a JSON object (got %s)", where, type_name(args));
    }
    const char *nm = sval(name, &n);
    err = sep(b);
    if (!err) err = ars_buf_adds(b, "{\"type\":\"tool_use\",\"id\":");
    if (!err) err = add_id(b, id, id_len);
    if (!err) err = ars_buf_adds(b, ",\"name\":");
    if (!err) err = add_str(b, nm, n);
    if (!err) err = ars_buf_adds(b, ",\"input\":");
    if (!err) err = input ? add_value(b, input) : ars_buf_adds(b, "{}");
    if (!err) err = ars_buf_add(b, "}", 1);
    json_object_put(input);
    return err;
}

/* {"type":"tool_result","tool_use_id":...[,"content":[...]]} into
 * c->mresults; content is text and image parts (blank ones dropped; no
 * content member at all when nothing is left). */
static enum ars_err tool_result_block(struct conv *c, const char *where, const char *id, size_t id_len,
                                      struct json_object *content)
{
    ars_buf_reset(&c->part);
    enum ars_err err = content_blocks(c, &c->part, where, content, PART_TEXT | PART_IMAGE, 1);
    if (!err) err = sep(&c->mresults);
    if (!err) err = ars_buf_adds(&c->mresults, "{\"type\":\"tool_result\",\"tool_use_id\":");
    if (!err) err = add_id(&c->mresults, id, id_len);
    if (!err && c->part.len) {
        err = ars_buf_adds(&c->mresults, ",\"content\":[");
        if (!err) err = ars_buf_add(&c->mresults, c->part.data, c->part.len);
        if (!err) err = ars_buf_add(&c->mresults, "]", 1);
    }
    if (!err) err = ars_buf_add(&c->mresults, "}", 1);
    return err;
}

/* ---- messages ----------------------------------------------------------------- */

static enum ars_err conv_system(struct conv *c, struct json_object *m, size_t i)
{
    char where[48];
    snprintf(where, sizeof(where), "messages[%zu].content", i);
    enum ars_err err = content_blocks(c, &c->mblocks, where, get(m, "content"), PART_TEXT, 0);
    if (!err) err = move_blocks(&c->sys, &c->mblocks);
    return err;
}

static enum ars_err conv_user(struct conv *c, struct json_object *m, size_t i)
{
    char where[48];
    snprintf(where, sizeof(where), "messages[%zu].content", i);
    enum ars_err err = content_blocks(c, &c->mblocks, where, get(m, "content"),
                                      PART_TEXT | PART_IMAGE, 0);
    if (!err) err = commit(c, ROLE_USER);
    return err;
}

static enum ars_err conv_assistant(struct conv *c, struct json_object *m, size_t i)
{
    char where[96];
    enum ars_err err;
    size_t n;

    snprintf(where, sizeof(where), "messages[%zu].content", i);
    err = content_blocks(c, &c->mblocks, where, get(m, "content"), PART_TEXT | PART_REFUSAL, 1);
    if (err)
        return err;

    struct json_object *calls = get(m, "tool_calls");
    if (calls && !is_type(calls, json_type_array))
        return fail(c, "messages[%zu].tool_calls: must be an array (got %s)", i, type_name(calls));
    size_t count = calls ? json_object_array_length(calls) : 0;
    if (count > ARS_OPENAI_MAX_PARTS)
        return fail(c, "messages[%zu].tool_calls: more than %d tool calls", i, ARS_OPENAI_MAX_PARTS);
    for (size_t j = 0; j < count; j++) {
        struct json_object *call = json_object_array_get_idx(calls, j);
        if (!is_type(call, json_type_object))
            return fail(c, "messages[%zu].tool_calls[%zu]: must be an object (got %s)", i, j, type_name(call));
        struct json_object *type = get(call, "type");
        if (type && !str_is(type, "function"))
            return fail(c, "messages[%zu].tool_calls[%zu].type: only \"function\" tool calls are supported", i, j);
        struct json_object *id = get(call, "id");
        if (!is_type(id, json_type_string) || !json_object_get_string_len(id))
            return fail(c, "messages[%zu].tool_calls[%zu].id: %s", i, j,
                        id ? "must be a non-empty string" : "is required");
        struct json_object *fn = get(call, "function");
        if (!is_type(fn, json_type_object))
            return fail(c, "messages[%zu].tool_calls[%zu].function: %s", i, j,
                        fn ? "must be an object" : "is required");
        struct json_object *name = get(fn, "name");
        if (!is_type(name, json_type_string) || !json_object_get_string_len(name))
            return fail(c, "messages[%zu].tool_calls[%zu].function.name: %s", i, j,
                        name ? "must be a non-empty string" : "is required");
        snprintf(where, sizeof(where), "messages[%zu].tool_calls[%zu].function.arguments", i, j);
        const char *ids = sval(id, &n);
        err = tool_use_block(c, &c->mblocks, where, ids, n, name, get(fn, "arguments"));
        if (err)
            return err;
    }

    struct json_object *fc = get(m, "function_call");       /* legacy */
    if (fc) {
        if (!is_type(fc, json_type_object))
            return fail(c, "messages[%zu].function_call: must be an object (got %s)", i, type_name(fc));
        struct json_object *name = get(fc, "name");
        if (!is_type(name, json_type_string) || !json_object_get_string_len(name))
            return fail(c, "messages[%zu].function_call.name: %s", i,
                        name ? "must be a non-empty string" : "is required");
        snprintf(c->legacy_id, sizeof(c->legacy_id), "call_function_%zu", i);
        snprintf(where, sizeof(where), "messages[%zu].function_call.arguments", i);
        err = tool_use_block(c, &c->mblocks, where, c->legacy_id, strlen(c->legacy_id), name,
                             get(fc, "arguments"));
        if (err)
            return err;
    }
    return commit(c, ROLE_ASSISTANT);
}

static enum ars_err conv_tool(struct conv *c, struct json_object *m, size_t i)
{
    char where[48];
    size_t n;
    struct json_object *id = get(m, "tool_call_id");
    if (!is_type(id, json_type_string) || !json_object_get_string_len(id))
        return fail(c, "messages[%zu].tool_call_id: %s", i, id ? "must be a non-empty string" : "is required");
    snprintf(where, sizeof(where), "messages[%zu].content", i);
    const char *s = sval(id, &n);
    enum ars_err err = tool_result_block(c, where, s, n, get(m, "content"));
    if (!err) err = commit(c, ROLE_USER);
    return err;
}

/* Legacy role "function": the result of the last legacy function_call. */
static enum ars_err conv_function(struct conv *c, struct json_object *m, size_t i)
{
    char where[48];
    if (!c->legacy_id[0])
        return fail(c, "messages[%zu]: a \"function\" message must follow an assistant function_call", i);
    snprintf(where, sizeof(where), "messages[%zu].content", i);
    enum ars_err err = tool_result_block(c, where, c->legacy_id, strlen(c->legacy_id), get(m, "content"));
    if (!err) err = commit(c, ROLE_USER);
    return err;
}

static int is_system(struct json_object *m)
{
    struct json_object *role = get(m, "role");
    return str_is(role, "system") || str_is(role, "developer");
}

/* Pass 1: checks every message's shape and role, and collects the system
 * and developer messages, in order, into c->sys. */
static enum ars_err system_pass(struct conv *c, struct json_object *msgs)
{
    enum ars_err err = ARS_OK;
    size_t n;

    if (!msgs)
        return fail(c, "messages: is required");
    if (!is_type(msgs, json_type_array))
        return fail(c, "messages: must be an array (got %s)", type_name(msgs));
    size_t count = json_object_array_length(msgs);
    if (count == 0)
        return fail(c, "messages: must not be empty");
    if (count > ARS_OPENAI_MAX_MESSAGES)
        return fail(c, "messages: more than %d messages", ARS_OPENAI_MAX_MESSAGES);
    for (size_t i = 0; i < count && !err; i++) {
        struct json_object *m = json_object_array_get_idx(msgs, i);
        if (!is_type(m, json_type_object))
            return fail(c, "messages[%zu]: must be an object (got %s)", i, type_name(m));
        struct json_object *role = get(m, "role");
        if (!is_type(role, json_type_string))
            return fail(c, "messages[%zu].role: %s", i, role ? "must be a string" : "is required");
        if (is_system(m)) {
            err = conv_system(c, m, i);
        } else if (!str_is(role, "user") && !str_is(role, "assistant") && !str_is(role, "tool")
                   && !str_is(role, "function")) {
            const char *s = sval(role, &n);
            return fail(c, "messages[%zu].role: unknown role \"%.*s\" "
                        "(expected system, developer, user, assistant or tool)", i, echo_len(s, n), s);
        }
    }
    return err;
}

/* Pass 2: every other message, merged into alternating turns written to
 * c->out (shapes and roles were checked by pass 1). */
static enum ars_err turn_pass(struct conv *c, struct json_object *msgs)
{
    enum ars_err err = ARS_OK;
    size_t count = json_object_array_length(msgs);

    for (size_t i = 0; i < count && !err; i++) {
        struct json_object *m = json_object_array_get_idx(msgs, i);
        struct json_object *role = get(m, "role");
        if (is_system(m))
            continue;
        if (str_is(role, "user"))
            err = conv_user(c, m, i);
        else if (str_is(role, "assistant"))
            err = conv_assistant(c, m, i);
        else if (str_is(role, "tool"))
            err = conv_tool(c, m, i);
        else
            err = conv_function(c, m, i);
    }
    if (!err) err = flush_turn(c);
    if (!err && !c->n_turns)
        return fail(c, "messages: no user or assistant message with content");
    return err;
}

/* ---- tools ------------------------------------------------------------------- */

static int tool_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > TOOL_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
              || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

static int have_tool(const struct conv *c, const char *s, size_t n)
{
    for (size_t k = 0; k < c->n_names; k++)
        if (c->names[k].n == n && memcmp(c->names[k].s, s, n) == 0)
            return 1;
    return 0;
}

/* One function definition (tools[i].function or functions[i], at `where`)
 * -> a Claude tool appended to b. */
static enum ars_err tool_def(struct conv *c, struct ars_buf *b, const char *where, struct json_object *fn)
{
    size_t n, dn = 0;
    enum ars_err err;

    struct json_object *name = get(fn, "name");
    if (!is_type(name, json_type_string))
        return fail(c, "%s.name: %s", where, name ? "must be a string" : "is required");
    const char *nm = sval(name, &n);
    if (!tool_name_ok(nm, n))
        return fail(c, "%s.name: \"%.*s\" is not a valid tool name (1 to %d of a-z, A-Z, 0-9, _ and -)",
                    where, echo_len(nm, n), nm, TOOL_NAME_MAX);
    if (have_tool(c, nm, n))
        return fail(c, "%s.name: duplicate tool name \"%.*s\"", where, echo_len(nm, n), nm);
    struct json_object *desc = get(fn, "description");
    if (desc && !is_type(desc, json_type_string))
        return fail(c, "%s.description: must be a string (got %s)", where, type_name(desc));
    const char *ds = desc ? sval(desc, &dn) : NULL;
    struct json_object *params = get(fn, "parameters");
    if (params && !is_type(params, json_type_object))
        return fail(c, "%s.parameters: must be a JSON Schema object (got %s)", where, type_name(params));
    struct json_object *strict = get(fn, "strict");
    if (strict && !is_type(strict, json_type_boolean))
        return fail(c, "%s.strict: must be a boolean (got %s)", where, type_name(strict));

    c->names[c->n_names].s = nm;
    c->names[c->n_names].n = n;
    c->n_names++;

    err = sep(b);
    if (!err) err = ars_buf_adds(b, "{\"name\":");
    if (!err) err = add_str(b, nm, n);
    if (!err && ds && dn) {
        err = ars_buf_adds(b, ",\"description\":");
        if (!err) err = add_str(b, ds, dn);
    }
    if (!err) err = ars_buf_adds(b, ",\"input_schema\":");
    if (!err) err = params ? add_value(b, params) : ars_buf_adds(b, "{\"type\":\"object\",\"properties\":{}}");
    if (!err && strict && json_object_get_boolean(strict))
        err = ars_buf_adds(b, ",\"strict\":true");
    if (!err) err = ars_buf_add(b, "}", 1);
    return err;
}

static enum ars_err conv_tools(struct conv *c, struct json_object *req, struct ars_buf *b)
{
    char where[48];
    enum ars_err err = ARS_OK;
    struct json_object *tools = get(req, "tools");
    struct json_object *fns = get(req, "functions");

    if (tools && !is_type(tools, json_type_array))
        return fail(c, "tools: must be an array (got %s)", type_name(tools));
    if (fns && !is_type(fns, json_type_array))
        return fail(c, "functions: must be an array (got %s)", type_name(fns));
    size_t nt = tools ? json_object_array_length(tools) : 0;
    size_t nf = fns ? json_object_array_length(fns) : 0;
    if (nt + nf > ARS_OPENAI_MAX_TOOLS)
        return fail(c, "%s: more than %d tools", nt > ARS_OPENAI_MAX_TOOLS ? "tools" : "functions",
                    ARS_OPENAI_MAX_TOOLS);
    for (size_t i = 0; i < nt && !err; i++) {
        struct json_object *t = json_object_array_get_idx(tools, i);
        if (!is_type(t, json_type_object))
            return fail(c, "tools[%zu]: must be an object (got %s)", i, type_name(t));
        struct json_object *type = get(t, "type");
        if (type && !str_is(type, "function"))
            return fail(c, "tools[%zu].type: only \"function\" tools are supported", i);
        struct json_object *fn = get(t, "function");
        if (!is_type(fn, json_type_object))
            return fail(c, "tools[%zu].function: %s", i, fn ? "must be an object" : "is required");
        snprintf(where, sizeof(where), "tools[%zu].function", i);
        err = tool_def(c, b, where, fn);
    }
    for (size_t i = 0; i < nf && !err; i++) {
        struct json_object *fn = json_object_array_get_idx(fns, i);
        if (!is_type(fn, json_type_object))
            return fail(c, "functions[%zu]: must be an object (got %s)", i, type_name(fn));
        snprintf(where, sizeof(where), "functions[%zu]", i);
        err = tool_def(c, b, where, fn);
    }
    return err;
}

/* tool_choice (or legacy function_call) and parallel_tool_calls -> the
 * Claude tool_choice object in b, or nothing. */
static enum ars_err conv_tool_choice(struct conv *c, struct json_object *req, struct ars_buf *b)
{
    struct json_object *tc = get(req, "tool_choice");
    int legacy = 0;                      /* function_call: no "required", {"name"} objects */
    const char *type = NULL;
    const char *name = NULL;
    size_t name_len = 0;
    enum ars_err err;

    if (!tc) {
        tc = get(req, "function_call");
        legacy = tc != NULL;
    }
    const char *field = legacy ? "function_call" : "tool_choice";
    struct json_object *par = get(req, "parallel_tool_calls");
    if (par && !is_type(par, json_type_boolean))
        return fail(c, "parallel_tool_calls: must be a boolean (got %s)", type_name(par));
    int no_parallel = par && !json_object_get_boolean(par);

    if (!tc) {
        type = "auto";
    } else if (is_type(tc, json_type_string)) {
        if (str_is(tc, "auto"))
            type = "auto";
        else if (str_is(tc, "none"))
            type = "none";
        else if (str_is(tc, "required") && !legacy)
            type = "any";
        else
            return fail(c, "%s: must be %s or an object naming a function", field,
                        legacy ? "\"auto\", \"none\"" : "\"auto\", \"none\", \"required\"");
    } else if (is_type(tc, json_type_object)) {
        struct json_object *nm;
        const char *nm_field = legacy ? "function_call.name" : "tool_choice.function.name";
        if (legacy) {
            nm = get(tc, "name");
        } else {
            struct json_object *t = get(tc, "type");
            if (t && !str_is(t, "function"))
                return fail(c, "tool_choice.type: only \"function\" is supported");
            nm = get(get(tc, "function"), "name");
        }
        if (!is_type(nm, json_type_string))
            return fail(c, "%s: %s", nm_field, nm ? "must be a string" : "is required");
        name = sval(nm, &name_len);
        if (!have_tool(c, name, name_len))
            return fail(c, "%s: no tool named \"%.*s\" in tools", nm_field, echo_len(name, name_len), name);
        type = "tool";
    } else {
        return fail(c, "%s: must be a string or an object (got %s)", field, type_name(tc));
    }

    if (c->n_names == 0) {
        if (strcmp(type, "any") == 0)
            return fail(c, "tool_choice: \"required\" needs tools");
        return ARS_OK;                   /* auto / none without tools: nothing to say */
    }
    if (!tc && !no_parallel)
        return ARS_OK;                   /* Claude's default is auto */
    err = ars_buf_adds(b, "{\"type\":");
    if (!err) err = add_cstr(b, type);
    if (!err && name) {
        err = ars_buf_adds(b, ",\"name\":");
        if (!err) err = add_str(b, name, name_len);
    }
    if (!err && no_parallel && strcmp(type, "none") != 0)
        err = ars_buf_adds(b, ",\"disable_parallel_tool_use\":true");
    if (!err) err = ars_buf_add(b, "}", 1);
    return err;
}

/* ---- scalar parameters ----------------------------------------------------- */

static int number(struct json_object *v, double *d)
{
    if (!is_type(v, json_type_double) && !is_type(v, json_type_int))
        return 0;
    *d = json_object_get_double(v);
    return 1;
}

static enum ars_err int_param(struct conv *c, struct json_object *req, const char *key, long long *out,
                              int *have)
{
    struct json_object *v = get(req, key);
    *have = 0;
    if (!v)
        return ARS_OK;
    if (!is_type(v, json_type_int))
        return fail(c, "%s: must be an integer (got %s)", key, type_name(v));
    int64_t x = json_object_get_int64(v);
    if (x < 1 || x > ARS_BODY_MAX_TOKENS_CAP)
        return fail(c, "%s: must be an integer from 1 to %lld", key, ARS_BODY_MAX_TOKENS_CAP);
    *out = (long long)x;
    *have = 1;
    return ARS_OK;
}

/* Refuses what Claude cannot do rather than answering something else. */
static enum ars_err refuse_unsupported(struct conv *c, struct json_object *req)
{
    struct json_object *v;
    double d;

    if ((v = get(req, "n")) != NULL) {
        if (!is_type(v, json_type_int))
            return fail(c, "n: must be an integer (got %s)", type_name(v));
        if (json_object_get_int64(v) != 1)
            return fail(c, "n: only n = 1 is supported (Claude returns one choice per request)");
    }
    if ((v = get(req, "logprobs")) != NULL) {
        if (!is_type(v, json_type_boolean))
            return fail(c, "logprobs: must be a boolean (got %s)", type_name(v));
        if (json_object_get_boolean(v))
            return fail(c, "logprobs: log probabilities are not supported (Claude does not return them)");
    }
    if ((v = get(req, "top_logprobs")) != NULL) {
        if (!number(v, &d))
            return fail(c, "top_logprobs: must be an integer (got %s)", type_name(v));
        if (d != 0)
            return fail(c, "top_logprobs: log probabilities are not supported (Claude does not return them)");
    }
    if ((v = get(req, "logit_bias")) != NULL) {
        if (!is_type(v, json_type_object))
            return fail(c, "logit_bias: must be an object (got %s)", type_name(v));
        if (json_object_object_length(v) != 0)
            return fail(c, "logit_bias: token biasing is not supported (Claude has no equivalent)");
    }
    if (get(req, "audio"))
        return fail(c, "audio: audio output is not supported (Claude answers in text)");
    if ((v = get(req, "modalities")) != NULL) {
        if (!is_type(v, json_type_array))
            return fail(c, "modalities: must be an array (got %s)", type_name(v));
        size_t n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++)
            if (!str_is(json_object_array_get_idx(v, i), "text"))
                return fail(c, "modalities[%zu]: only \"text\" output is supported", i);
    }
    if (get(req, "web_search_options"))
        return fail(c, "web_search_options: web search is not supported on this endpoint");
    return ARS_OK;
}

/* reasoning_effort and response_format -> the members of output_config. */
static enum ars_err conv_output_config(struct conv *c, struct json_object *req, struct ars_buf *b)
{
    static const struct { const char *openai, *claude; } efforts[] = {
        { "none", "low" }, { "minimal", "low" }, { "low", "low" },
        { "medium", "medium" }, { "high", "high" }, { "xhigh", "high" },
    };
    enum ars_err err = ARS_OK;
    struct json_object *v = get(req, "reasoning_effort");

    if (v) {
        const char *effort = NULL;
        for (size_t k = 0; k < sizeof(efforts) / sizeof(efforts[0]); k++)
            if (str_is(v, efforts[k].openai))
                effort = efforts[k].claude;
        if (!effort)
            return fail(c, "reasoning_effort: must be one of none, minimal, low, medium, high or xhigh");
        err = ars_buf_adds(b, "\"effort\":");
        if (!err) err = add_cstr(b, effort);
    }

    struct json_object *rf = get(req, "response_format");
    if (!rf || err)
        return err;
    if (!is_type(rf, json_type_object))
        return fail(c, "response_format: must be an object (got %s)", type_name(rf));
    struct json_object *type = get(rf, "type");
    if (str_is(type, "text") || str_is(type, "json_object"))
        return ARS_OK;
    if (!str_is(type, "json_schema"))
        return fail(c, "response_format.type: must be \"text\", \"json_object\" or \"json_schema\"");
    struct json_object *js = get(rf, "json_schema");
    if (!is_type(js, json_type_object))
        return fail(c, "response_format.json_schema: %s", js ? "must be an object" : "is required");
    struct json_object *strict = get(js, "strict");
    if (strict && !is_type(strict, json_type_boolean))
        return fail(c, "response_format.json_schema.strict: must be a boolean (got %s)", type_name(strict));
    /* strict: true is what the OpenAI SDK's parse(), LangChain's
     * withStructuredOutput and the Vercel AI SDK send. Claude's structured
     * output constrains the answer to the schema either way; a schema it
     * cannot honour comes back as its own 400, converted to OpenAI's shape. */
    struct json_object *schema = get(js, "schema");
    if (!is_type(schema, json_type_object))
        return fail(c, "response_format.json_schema.schema: %s", schema ? "must be an object" : "is required");
    err = sep(b);
    if (!err) err = ars_buf_adds(b, "\"format\":{\"type\":\"json_schema\",\"schema\":");
    if (!err) err = add_value(b, schema);
    if (!err) err = ars_buf_add(b, "}", 1);
    return err;
}

static enum ars_err conv_stop(struct conv *c, struct json_object *req, struct ars_buf *b)
{
    struct json_object *v = get(req, "stop");
    enum ars_err err = ARS_OK;
    size_t n;

    if (!v)
        return ARS_OK;
    if (is_type(v, json_type_string)) {
        const char *s = sval(v, &n);
        return n ? add_str(b, s, n) : ARS_OK;
    }
    if (!is_type(v, json_type_array))
        return fail(c, "stop: must be a string or an array of strings (got %s)", type_name(v));
    size_t count = json_object_array_length(v);
    if (count > ARS_OPENAI_MAX_STOP)
        return fail(c, "stop: at most %d stop sequences", ARS_OPENAI_MAX_STOP);
    for (size_t i = 0; i < count && !err; i++) {
        struct json_object *e = json_object_array_get_idx(v, i);
        if (!is_type(e, json_type_string))
            return fail(c, "stop[%zu]: must be a string (got %s)", i, type_name(e));
        const char *s = sval(e, &n);
        if (!n)
            continue;                    /* an empty stop sequence stops nothing */
        err = sep(b);
        if (!err) err = add_str(b, s, n);
    }
    return err;
}

/* meta->claude_model from the model map (exact name), else the name. */
static enum ars_err map_model(struct conv *c, const char *model, struct ars_openai_meta *meta)
{
    const char *map = c->o ? c->o->model_map_json : NULL;
    const char *to = model;
    size_t to_len = strlen(model);
    struct json_object *obj = NULL;

    if (map && *map) {
        obj = json_tokener_parse(map);
        struct json_object *v = is_type(obj, json_type_object) ? get(obj, model) : NULL;
        if (is_type(v, json_type_string) && json_object_get_string_len(v) > 0)
            to = sval(v, &to_len);
    }
    if (to_len >= sizeof(meta->claude_model) || memchr(to, '\0', to_len)) {
        json_object_put(obj);
        return fail(c, "model: the model map gives an invalid name for \"%.*s\"", echo_len(model, strlen(model)), model);
    }
    memcpy(meta->claude_model, to, to_len);
    meta->claude_model[to_len] = '\0';
    json_object_put(obj);
    return ARS_OK;
}

/* ---- request: the whole ----------------------------------------------------- */

static enum ars_err convert(struct conv *c, struct json_object *req, struct ars_buf *out,
                           struct ars_openai_meta *meta)
{
    struct ars_buf tools, choice, stop, ocfg;
    enum ars_err err;
    size_t n;
    double temp = 0, top_p = 0;

    ars_buf_init(&tools, out->cap);
    ars_buf_init(&choice, 4096);
    ars_buf_init(&stop, out->cap);
    ars_buf_init(&ocfg, out->cap);

    /* ---- read and check everything but the turns ---- */
    struct json_object *model = get(req, "model");
    if (!model) { err = fail(c, "model: is required"); goto out; }
    if (!is_type(model, json_type_string)) { err = fail(c, "model: must be a string (got %s)", type_name(model)); goto out; }
    const char *ms = sval(model, &n);
    if (n == 0 || n >= sizeof(meta->model) || !has_no_controls(ms, n)) {
        err = fail(c, "model: must be a name of 1 to %d bytes without control characters", ARS_OPENAI_MODEL_BYTES - 1);
        goto out;
    }
    memcpy(meta->model, ms, n);
    meta->model[n] = '\0';
    if ((err = map_model(c, meta->model, meta)) != ARS_OK)
        goto out;
    if ((err = refuse_unsupported(c, req)) != ARS_OK)
        goto out;

    struct json_object *msgs = get(req, "messages");
    if ((err = system_pass(c, msgs)) != ARS_OK)
        goto out;
    if ((err = conv_tools(c, req, &tools)) != ARS_OK)
        goto out;
    meta->n_tools = (int)c->n_names;
    if ((err = conv_tool_choice(c, req, &choice)) != ARS_OK)
        goto out;
    if ((err = conv_stop(c, req, &stop)) != ARS_OK)
        goto out;
    if ((err = conv_output_config(c, req, &ocfg)) != ARS_OK)
        goto out;

    /* max_completion_tokens wins over the deprecated max_tokens */
    long long max_tokens = c->o && c->o->default_max_tokens > 0 ? c->o->default_max_tokens : DEFAULT_MAX_TOKENS;
    long long v;
    int have;
    if ((err = int_param(c, req, "max_tokens", &v, &have)) != ARS_OK)
        goto out;
    if (have)
        max_tokens = v;
    if ((err = int_param(c, req, "max_completion_tokens", &v, &have)) != ARS_OK)
        goto out;
    if (have)
        max_tokens = v;

    struct json_object *t = get(req, "temperature");
    if (t && (!number(t, &temp) || temp < 0 || temp > 2)) {
        err = fail(c, "temperature: must be a number from 0 to 2");
        goto out;
    }
    struct json_object *p = get(req, "top_p");
    if (p && (!number(p, &top_p) || top_p < 0 || top_p > 1)) {
        err = fail(c, "top_p: must be a number from 0 to 1");
        goto out;
    }

    struct json_object *stream = get(req, "stream");
    if (stream && !is_type(stream, json_type_boolean)) {
        err = fail(c, "stream: must be a boolean (got %s)", type_name(stream));
        goto out;
    }
    meta->stream = stream && json_object_get_boolean(stream);
    struct json_object *so = get(req, "stream_options");
    if (so && !is_type(so, json_type_object)) {
        err = fail(c, "stream_options: must be an object (got %s)", type_name(so));
        goto out;
    }
    struct json_object *iu = get(so, "include_usage");
    if (iu && !is_type(iu, json_type_boolean)) {
        err = fail(c, "stream_options.include_usage: must be a boolean (got %s)", type_name(iu));
        goto out;
    }
    meta->include_usage = meta->stream && iu && json_object_get_boolean(iu);

    struct json_object *user = get(req, "user");
    const char *user_field = "user";
    if (!user) {
        user = get(req, "safety_identifier");
        user_field = "safety_identifier";
    }
    if (user && !is_type(user, json_type_string)) {
        err = fail(c, "%s: must be a string (got %s)", user_field, type_name(user));
        goto out;
    }

    /* ---- write; the turns go straight to out (the caller rolls back) ---- */
    err = ars_buf_adds(out, "{\"model\":");
    if (!err) err = add_cstr(out, meta->claude_model);
    if (!err) err = ars_buf_printf(out, ",\"max_tokens\":%lld", max_tokens);
    if (!err && c->sys.len) {
        err = ars_buf_adds(out, ",\"system\":[");
        if (!err) err = ars_buf_add(out, c->sys.data, c->sys.len);
        if (!err) err = ars_buf_add(out, "]", 1);
    }
    if (!err) err = ars_buf_adds(out, ",\"messages\":[");
    if (!err) err = turn_pass(c, msgs);
    if (!err) err = ars_buf_add(out, "]", 1);
    if (!err && tools.len) {
        err = ars_buf_adds(out, ",\"tools\":[");
        if (!err) err = ars_buf_add(out, tools.data, tools.len);
        if (!err) err = ars_buf_add(out, "]", 1);
    }
    if (!err && choice.len) {
        err = ars_buf_adds(out, ",\"tool_choice\":");
        if (!err) err = ars_buf_add(out, choice.data, choice.len);
    }
    if (!err && stop.len) {
        err = ars_buf_adds(out, ",\"stop_sequences\":[");
        if (!err) err = ars_buf_add(out, stop.data, stop.len);
        if (!err) err = ars_buf_add(out, "]", 1);
    }
    if (!err && t) {
        /* OpenAI's temperature runs 0..2, Claude's 0..1: values above 1 are
         * sent as 1, Claude's most random setting. Not a rescale: 0.7 keeps
         * meaning 0.7 for clients tuned on either API. */
        err = ars_buf_adds(out, ",\"temperature\":");
        if (!err) err = temp > 1 ? ars_buf_add(out, "1", 1) : add_value(out, t);
    }
    if (!err && p && !(t && top_p == 1)) {
        /* top_p 1 (OpenAI's default, no cut-off) is dropped next to a
         * temperature: newer Claude models refuse the two together. */
        err = ars_buf_adds(out, ",\"top_p\":");
        if (!err) err = add_value(out, p);
    }
    if (!err && user) {
        const char *us = sval(user, &n);
        err = ars_buf_adds(out, ",\"metadata\":{\"user_id\":");
        if (!err) err = add_str(out, us, n);
        if (!err) err = ars_buf_add(out, "}", 1);
    }
    if (!err && ocfg.len) {
        err = ars_buf_adds(out, ",\"output_config\":{");
        if (!err) err = ars_buf_add(out, ocfg.data, ocfg.len);
        if (!err) err = ars_buf_add(out, "}", 1);
    }
    if (!err && meta->stream)
        err = ars_buf_adds(out, ",\"stream\":true");
    if (!err) err = ars_buf_add(out, "}", 1);
out:
    ars_buf_deinit(&tools);
    ars_buf_deinit(&choice);
    ars_buf_deinit(&stop);
    ars_buf_deinit(&ocfg);
    return err;
}

enum ars_err ars_openai_to_claude(const char *body, size_t len, const struct ars_openai_opts *o,
                                  struct ars_buf *out, struct ars_openai_meta *meta,
                                  char *errbuf, size_t errlen)
{
    struct conv *c = NULL;
    struct json_object *req = NULL;
    size_t start = out->len;
    enum ars_err err;
    const char *why;

    if (errbuf && errlen)
        errbuf[0] = '\0';
    memset(meta, 0, sizeof(*meta));
    c = calloc(1, sizeof(*c));           /* the tool-name table makes it ~8 KiB */
    if (!c)
        return ARS_ERR_NOMEM;
    c->o = o;
    c->errbuf = errbuf;
    c->errlen = errlen;
    c->out = out;
    meta->show_thinking = o ? o->show_thinking : 0;
    size_t cap = out->cap;
    ars_buf_init(&c->sys, cap);
    ars_buf_init(&c->results, cap);
    ars_buf_init(&c->blocks, cap);
    ars_buf_init(&c->mresults, cap);
    ars_buf_init(&c->mblocks, cap);
    ars_buf_init(&c->part, cap);

    if (!body) {
        err = fail(c, "body: is empty");
        goto out;
    }
    req = parse_json(body, len, ARS_OPENAI_MAX_DEPTH, &why);
    if (!req) {
        if (strcmp(why, "nested too deeply") == 0)
            err = fail(c, "body: JSON nested deeper than %d levels", ARS_OPENAI_MAX_DEPTH);
        else
            err = fail(c, "body: %s", why);
        goto out;
    }
    if (!is_type(req, json_type_object)) {
        err = fail(c, "body: must be a JSON object (got %s)", type_name(req));
        goto out;
    }
    /* json-c keeps the last of a repeated member; the upstream of an
     * OpenAI client might keep the first. One reading only: refuse it. */
    char members_why[256];
    if (ars_body_check_members(body, len, members_why, sizeof(members_why)) != ARS_OK) {
        err = fail(c, "body: %s", members_why);   /* every message reads "FIELD: what is wrong" */
        goto out;
    }
    err = convert(c, req, out, meta);
out:
    if (err) {
        out->len = start;                /* leave out as it was */
        if (out->data)
            out->data[start] = '\0';
        if (err == ARS_ERR_TOOBIG && errbuf && errlen)
            snprintf(errbuf, errlen, "body: the converted request is over the size limit");
    }
    json_object_put(req);
    ars_buf_deinit(&c->sys);
    ars_buf_deinit(&c->results);
    ars_buf_deinit(&c->blocks);
    ars_buf_deinit(&c->mresults);
    ars_buf_deinit(&c->mblocks);
    ars_buf_deinit(&c->part);
    free(c);
    return err;
}

/* ---- shared pieces of the responses ---------------------------------------- */

const char *ars_openai_finish_reason(const char *stop_reason, size_t len)
{
    static const struct { const char *claude, *openai; } map[] = {
        { "end_turn", "stop" },
        { "stop_sequence", "stop" },
        { "pause_turn", "stop" },
        { "max_tokens", "length" },
        { "model_context_window_exceeded", "length" },
        { "tool_use", "tool_calls" },
        { "refusal", "content_filter" },
    };
    if (!stop_reason)
        return "stop";
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (len == strlen(map[i].claude) && memcmp(stop_reason, map[i].claude, len) == 0)
            return map[i].openai;
    return "stop";
}

static void error_kind(int status, const char *ctype, size_t clen, const char **type, const char **code)
{
    static const struct { const char *claude, *type, *code; } map[] = {
        { "invalid_request_error", "invalid_request_error", "invalid_request" },
        { "authentication_error", "authentication_error", "invalid_api_key" },
        { "permission_error", "permission_error", "permission_denied" },
        { "not_found_error", "not_found_error", "not_found" },
        { "request_too_large", "invalid_request_error", "request_too_large" },
        { "rate_limit_error", "rate_limit_error", "rate_limit_exceeded" },
        { "billing_error", "insufficient_quota", "insufficient_quota" },
        { "timeout_error", "server_error", "timeout" },
        { "api_error", "server_error", "server_error" },
        { "overloaded_error", "server_error", "overloaded" },
    };
    if (ctype) {
        for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
            if (clen == strlen(map[i].claude) && memcmp(ctype, map[i].claude, clen) == 0) {
                *type = map[i].type;
                *code = map[i].code;
                return;
            }
        }
    }
    switch (status) {
    case 401: *type = "authentication_error"; *code = "invalid_api_key"; return;
    case 402: *type = "insufficient_quota"; *code = "insufficient_quota"; return;
    case 403: *type = "permission_error"; *code = "permission_denied"; return;
    case 404: *type = "not_found_error"; *code = "not_found"; return;
    case 413: *type = "invalid_request_error"; *code = "request_too_large"; return;
    case 429: *type = "rate_limit_error"; *code = "rate_limit_exceeded"; return;
    default:
        if (status >= 400 && status < 500) {
            *type = "invalid_request_error";
            *code = "invalid_request";
        } else {
            *type = "server_error";
            *code = "server_error";
        }
    }
}

enum ars_err ars_openai_error_object(struct ars_buf *out, int status, const char *claude_type,
                                     size_t type_len, const char *message, size_t message_len)
{
    const char *type, *code;
    error_kind(status, claude_type, type_len, &type, &code);
    enum ars_err err = ars_buf_adds(out, "{\"error\":{\"message\":");
    if (!err) err = add_str(out, message, message_len);
    if (!err) err = ars_buf_adds(out, ",\"type\":");
    if (!err) err = add_cstr(out, type);
    if (!err) err = ars_buf_adds(out, ",\"param\":null,\"code\":");
    if (!err) err = add_cstr(out, code);
    if (!err) err = ars_buf_adds(out, "}}");
    return err;
}

enum ars_err ars_openai_usage_object(struct ars_buf *out, const struct ars_usage *u)
{
    long long input = u->input > 0 ? u->input : 0;
    long long read = u->cache_read > 0 ? u->cache_read : 0;
    long long write = (u->cache_write_5m > 0 ? u->cache_write_5m : 0)
                      + (u->cache_write_1h > 0 ? u->cache_write_1h : 0);
    long long output = u->output > 0 ? u->output : 0;
    long long prompt = input + read + write;       /* each <= 10^9: no overflow */
    return ars_buf_printf(out, "{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld,"
                          "\"prompt_tokens_details\":{\"cached_tokens\":%lld}}",
                          prompt, output, prompt + output, read);
}

void ars_openai_completion_id(char *dst, size_t size, const char *id)
{
    static const char prefix[] = "chatcmpl-";
    size_t plen = sizeof(prefix) - 1;
    size_t n = id ? strlen(id) : 0;

    if (size <= plen) {
        if (size)
            dst[0] = '\0';
        return;
    }
    memcpy(dst, prefix, plen);
    if (n > size - plen - 1) {
        n = size - plen - 1;
        while (n > 0 && ((unsigned char)id[n] & 0xC0) == 0x80)
            n--;                         /* do not split a UTF-8 character */
    }
    if (n)
        memcpy(dst + plen, id, n);
    dst[plen + n] = '\0';
}

/* ---- non-stream response -------------------------------------------------- */

static enum ars_err response(struct json_object *msg, const struct ars_openai_meta *meta, long long created,
                             const char *id, struct ars_buf *out, struct ars_buf *text,
                             struct ars_buf *thinking, struct ars_buf *calls)
{
    enum ars_err err = ARS_OK;
    size_t n;

    struct json_object *content = get(msg, "content");
    if (!is_type(msg, json_type_object) || str_is(get(msg, "type"), "error")
        || !is_type(content, json_type_array))
        return ARS_ERR_INVALID;
    size_t count = json_object_array_length(content);
    for (size_t i = 0; i < count && !err; i++) {
        struct json_object *b = json_object_array_get_idx(content, i);
        struct json_object *type = get(b, "type");
        if (str_is(type, "text")) {
            struct json_object *s = get(b, "text");
            if (is_type(s, json_type_string)) {
                const char *p = sval(s, &n);
                err = ars_buf_add(text, p, n);
            }
        } else if (str_is(type, "thinking") && meta->show_thinking) {
            struct json_object *s = get(b, "thinking");
            if (is_type(s, json_type_string)) {
                const char *p = sval(s, &n);
                err = ars_buf_add(thinking, p, n);
            }
        } else if (str_is(type, "tool_use")) {
            struct json_object *tid = get(b, "id"), *name = get(b, "name"), *input = get(b, "input");
            if (!is_type(tid, json_type_string) || !is_type(name, json_type_string))
                continue;
            const char *args = "{}";
            size_t args_len = 2;
            if (input) {
                args = json_object_to_json_string_length(input, JSON_OUT, &args_len);
                if (!args)
                    return ARS_ERR_NOMEM;
            }
            const char *p = sval(tid, &n);
            err = sep(calls);
            if (!err) err = ars_buf_adds(calls, "{\"id\":");
            if (!err) err = add_str(calls, p, n);
            p = sval(name, &n);
            if (!err) err = ars_buf_adds(calls, ",\"type\":\"function\",\"function\":{\"name\":");
            if (!err) err = add_str(calls, p, n);
            if (!err) err = ars_buf_adds(calls, ",\"arguments\":");
            if (!err) err = add_str(calls, args, args_len);
            if (!err) err = ars_buf_adds(calls, "}}");
        }
        /* thinking when hidden, redacted_thinking, server tool blocks: dropped */
    }
    if (err)
        return err;

    struct ars_sse_usage u;
    ars_sse_usage_init(&u);
    ars_sse_usage_from_message(&u, msg);
    const char *sr = NULL;
    size_t sr_len = 0;
    struct json_object *stop = get(msg, "stop_reason");
    if (is_type(stop, json_type_string))
        sr = sval(stop, &sr_len);

    char cid[ARS_OPENAI_ID_BYTES];
    ars_openai_completion_id(cid, sizeof(cid), id);
    err = ars_buf_adds(out, "{\"id\":");
    if (!err) err = add_cstr(out, cid);
    if (!err) err = ars_buf_printf(out, ",\"object\":\"chat.completion\",\"created\":%lld,\"model\":", created);
    if (!err) err = add_cstr(out, meta->model);
    if (!err) err = ars_buf_adds(out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    if (!err) err = (!text->len && calls->len) ? ars_buf_adds(out, "null") : add_str(out, text->data ? text->data : "", text->len);
    if (!err && meta->show_thinking && thinking->len) {
        err = ars_buf_adds(out, ",\"reasoning_content\":");
        if (!err) err = add_str(out, thinking->data, thinking->len);
    }
    if (!err && calls->len) {
        err = ars_buf_adds(out, ",\"tool_calls\":[");
        if (!err) err = ars_buf_add(out, calls->data, calls->len);
        if (!err) err = ars_buf_add(out, "]", 1);
    }
    if (!err) err = ars_buf_adds(out, ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":");
    if (!err) err = add_cstr(out, ars_openai_finish_reason(sr, sr_len));
    if (!err) err = ars_buf_adds(out, "}],\"usage\":");
    if (!err) err = ars_openai_usage_object(out, &u.usage);
    if (!err) err = ars_buf_add(out, "}", 1);
    return err;
}

enum ars_err ars_claude_to_openai_response(const char *claude_body, size_t len,
                                           const struct ars_openai_meta *meta, long long created,
                                           const char *id, struct ars_buf *out)
{
    struct ars_buf text, thinking, calls;
    size_t start = out->len;
    const char *why;
    enum ars_err err = ARS_ERR_INVALID;

    ars_buf_init(&text, out->cap);
    ars_buf_init(&thinking, out->cap);
    ars_buf_init(&calls, out->cap);
    struct json_object *msg = claude_body ? parse_json(claude_body, len, ARS_OPENAI_UPSTREAM_DEPTH, &why) : NULL;
    if (msg)
        err = response(msg, meta, created, id, out, &text, &thinking, &calls);
    if (err) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    json_object_put(msg);
    ars_buf_deinit(&text);
    ars_buf_deinit(&thinking);
    ars_buf_deinit(&calls);
    return err;
}

/* ---- errors -------------------------------------------------------------------- */

enum ars_err ars_claude_error_to_openai(int status, const char *claude_body, size_t len, struct ars_buf *out)
{
    const char *why;
    const char *type = NULL, *message = NULL;
    size_t type_len = 0, message_len = 0;
    char generic[64];
    struct json_object *body = claude_body ? parse_json(claude_body, len, ARS_OPENAI_UPSTREAM_DEPTH, &why) : NULL;

    struct json_object *e = get(body, "error");
    if (is_type(e, json_type_object)) {
        struct json_object *m = get(e, "message"), *t = get(e, "type");
        if (is_type(m, json_type_string))
            message = sval(m, &message_len);
        if (is_type(t, json_type_string))
            type = sval(t, &type_len);
    }
    if (!message) {
        snprintf(generic, sizeof(generic), "upstream returned HTTP %d", status);
        message = generic;
        message_len = strlen(generic);
        type = NULL;
    }
    size_t start = out->len;
    enum ars_err err = ars_openai_error_object(out, status, type, type_len, message, message_len);
    if (err) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    json_object_put(body);
    return err;
}
