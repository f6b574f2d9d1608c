/* Messages SSE events -> OpenAI chat.completion.chunk lines (openai.h).
 *
 * One event in, zero or more `data: ...\n\n` lines out; the converter keeps
 * only what a later chunk needs: whether the role chunk went out, the
 * content block that is open (Claude streams blocks one after the other,
 * never interleaved, so one slot is enough), the ordinal of the tool call
 * it carries, and the usage and stop_reason seen so far. Every chunk is
 * written whole or not at all: on a buffer error out is rolled back to
 * where the event started. */
#include "openai.h"

#include <json.h>
#include <stdint.h>
#include <string.h>

enum block_kind {
    BLOCK_NONE,
    BLOCK_TEXT,
    BLOCK_TOOL,
    BLOCK_THINKING,
    BLOCK_OTHER        /* server tools, redacted thinking, future types: dropped */
};

void ars_openai_stream_init(struct ars_openai_stream *s, const struct ars_openai_meta *meta,
                            long long created, const char *id, int show_thinking)
{
    memset(s, 0, sizeof(*s));
    ars_openai_completion_id(s->id, sizeof(s->id), id);
    if (meta) {
        size_t n = strnlen(meta->model, sizeof(meta->model) - 1);
        memcpy(s->model, meta->model, n);
        s->model[n] = '\0';
        s->include_usage = meta->include_usage;
    }
    s->created = created;
    s->show_thinking = show_thinking;
    s->block = -1;
    s->block_kind = BLOCK_NONE;
    ars_sse_usage_init(&s->usage);
}

int ars_openai_stream_done(const struct ars_openai_stream *s)
{
    return s->done;
}

/* ---- JSON in ------------------------------------------------------------------ */

static struct json_object *parse_event(const struct ars_sse_event *ev)
{
    struct json_object *o = NULL;
    struct json_tokener *tok;

    if (!ev->data || ev->data_len == 0 || ev->data_len > INT32_MAX)
        return NULL;
    tok = json_tokener_new_ex(ARS_OPENAI_UPSTREAM_DEPTH);
    if (!tok)
        return NULL;
    o = json_tokener_parse_ex(tok, ev->data, (int)ev->data_len);
    if (o && (json_tokener_get_error(tok) != json_tokener_success || !json_object_is_type(o, json_type_object))) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

static struct json_object *get(struct json_object *obj, const char *key)
{
    struct json_object *v = NULL;
    if (!obj || !json_object_object_get_ex(obj, key, &v))
        return NULL;
    return v;
}

/* The string obj[key] and its length; NULL when it is not a string. */
static const char *get_str(struct json_object *obj, const char *key, size_t *n)
{
    struct json_object *v = get(obj, key);
    *n = 0;
    if (!v || !json_object_is_type(v, json_type_string))
        return NULL;
    int len = json_object_get_string_len(v);
    *n = len > 0 ? (size_t)len : 0;
    return json_object_get_string(v);
}

static int str_eq(const char *s, size_t n, const char *lit)
{
    return s && n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* ---- chunks out ------------------------------------------------------------ */

static enum ars_err add_str(struct ars_buf *b, const char *s, size_t n)
{
    return ars_buf_add_json_str(b, s, n);
}

/* `data: {"id":...,"object":"chat.completion.chunk","created":...,"model":...,` */
static enum ars_err chunk_head(const struct ars_openai_stream *s, struct ars_buf *out)
{
    enum ars_err err = ars_buf_adds(out, "data: {\"id\":");
    if (!err) err = add_str(out, s->id, strlen(s->id));
    if (!err) err = ars_buf_printf(out, ",\"object\":\"chat.completion.chunk\",\"created\":%lld,\"model\":",
                                   s->created);
    if (!err) err = add_str(out, s->model, strlen(s->model));
    if (!err) err = ars_buf_add(out, ",", 1);
    return err;
}

/* Opens a chunk up to its delta object: the caller writes the delta. */
static enum ars_err chunk_open(const struct ars_openai_stream *s, struct ars_buf *out)
{
    enum ars_err err = chunk_head(s, out);
    if (!err) err = ars_buf_adds(out, "\"choices\":[{\"index\":0,\"delta\":");
    return err;
}

/* Closes a chunk after its delta; finish NULL for "finish_reason": null. */
static enum ars_err chunk_close(const struct ars_openai_stream *s, struct ars_buf *out, const char *finish)
{
    enum ars_err err = ars_buf_adds(out, ",\"logprobs\":null,\"finish_reason\":");
    if (!err) err = finish ? add_str(out, finish, strlen(finish)) : ars_buf_adds(out, "null");
    if (!err) err = ars_buf_adds(out, "}]");
    if (!err && s->include_usage)
        err = ars_buf_adds(out, ",\"usage\":null");
    if (!err) err = ars_buf_adds(out, "}\n\n");
    return err;
}

/* A chunk whose delta is {"<key>": "<text>"}. */
static enum ars_err text_chunk(const struct ars_openai_stream *s, struct ars_buf *out, const char *key,
                               const char *text, size_t n)
{
    enum ars_err err = chunk_open(s, out);
    if (!err) err = ars_buf_add(out, "{", 1);
    if (!err) err = add_str(out, key, strlen(key));
    if (!err) err = ars_buf_add(out, ":", 1);
    if (!err) err = add_str(out, text, n);
    if (!err) err = ars_buf_add(out, "}", 1);
    if (!err) err = chunk_close(s, out, NULL);
    return err;
}

/* The first chunk, delta {role: assistant, content: ""}, once. The flag is
 * set by the caller after the whole event was written. */
static enum ars_err role_chunk(const struct ars_openai_stream *s, struct ars_buf *out, int *sent)
{
    if (s->started || *sent)
        return ARS_OK;
    enum ars_err err = chunk_open(s, out);
    if (!err) err = ars_buf_adds(out, "{\"role\":\"assistant\",\"content\":\"\"}");
    if (!err) err = chunk_close(s, out, NULL);
    if (!err) *sent = 1;
    return err;
}

static enum ars_err done_line(struct ars_buf *out)
{
    return ars_buf_adds(out, "data: [DONE]\n\n");
}

static enum ars_err error_chunk(struct ars_buf *out, int status, const char *type, size_t type_len,
                                const char *message, size_t message_len)
{
    enum ars_err err = ars_buf_adds(out, "data: ");
    if (!err) err = ars_openai_error_object(out, status, type, type_len, message, message_len);
    if (!err) err = ars_buf_adds(out, "\n\n");
    if (!err) err = done_line(out);
    return err;
}

/* The last chunk (empty delta, finish_reason), the usage chunk when asked
 * for, and [DONE]. */
static enum ars_err finish(const struct ars_openai_stream *s, struct ars_buf *out)
{
    const struct ars_sse_usage *u = &s->usage;
    const char *fr = ars_openai_finish_reason(u->stop_reason[0] ? u->stop_reason : NULL, strlen(u->stop_reason));
    enum ars_err err = chunk_open(s, out);
    if (!err) err = ars_buf_adds(out, "{}");
    if (!err) err = chunk_close(s, out, fr);
    if (!err && s->include_usage) {
        err = chunk_head(s, out);
        if (!err) err = ars_buf_adds(out, "\"choices\":[],\"usage\":");
        if (!err) err = ars_openai_usage_object(out, &u->usage);
        if (!err) err = ars_buf_adds(out, "}\n\n");
    }
    if (!err) err = done_line(out);
    return err;
}

/* ---- events --------------------------------------------------------------------- */

/* What the event changes in the converter, applied only once its chunks
 * were written. */
struct change {
    int started;               /* the role chunk went out */
    int set_block;             /* a block opened or closed */
    long long block;
    int block_kind;
    int tool_started;          /* a tool call took the next ordinal */
    int done;
};

static enum ars_err block_start(const struct ars_openai_stream *s, struct json_object *data,
                                struct ars_buf *out, struct change *ch)
{
    struct json_object *cb = get(data, "content_block");
    struct json_object *idx = get(data, "index");
    size_t tn, n, nn;
    const char *type = get_str(cb, "type", &tn);
    enum ars_err err = ARS_OK;

    ch->set_block = 1;
    ch->block = idx && json_object_is_type(idx, json_type_int) ? (long long)json_object_get_int64(idx) : -1;
    ch->block_kind = BLOCK_OTHER;
    if (str_eq(type, tn, "text")) {
        ch->block_kind = BLOCK_TEXT;
        const char *text = get_str(cb, "text", &n);
        if (text && n) {
            err = role_chunk(s, out, &ch->started);
            if (!err) err = text_chunk(s, out, "content", text, n);
        }
    } else if (str_eq(type, tn, "thinking")) {
        ch->block_kind = BLOCK_THINKING;
        const char *text = get_str(cb, "thinking", &n);
        if (s->show_thinking && text && n) {
            err = role_chunk(s, out, &ch->started);
            if (!err) err = text_chunk(s, out, "reasoning_content", text, n);
        }
    } else if (str_eq(type, tn, "tool_use")) {
        const char *id = get_str(cb, "id", &n);
        const char *name = get_str(cb, "name", &nn);
        if (!id || !name)
            return ARS_OK;               /* nothing a client could call */
        ch->block_kind = BLOCK_TOOL;
        ch->tool_started = 1;
        err = role_chunk(s, out, &ch->started);
        if (!err) err = chunk_open(s, out);
        if (!err) err = ars_buf_printf(out, "{\"tool_calls\":[{\"index\":%d,\"id\":", s->n_tool_calls);
        if (!err) err = add_str(out, id, n);
        if (!err) err = ars_buf_adds(out, ",\"type\":\"function\",\"function\":{\"name\":");
        if (!err) err = add_str(out, name, nn);
        if (!err) err = ars_buf_adds(out, ",\"arguments\":\"\"}}]}");
        if (!err) err = chunk_close(s, out, NULL);
    }
    return err;
}

static enum ars_err block_delta(const struct ars_openai_stream *s, struct json_object *data,
                                struct ars_buf *out, struct change *ch)
{
    struct json_object *delta = get(data, "delta");
    struct json_object *idx = get(data, "index");
    size_t tn, n;
    const char *type = get_str(delta, "type", &tn);
    enum ars_err err = ARS_OK;

    if (str_eq(type, tn, "text_delta")) {
        const char *text = get_str(delta, "text", &n);
        if (text && n) {
            err = role_chunk(s, out, &ch->started);
            if (!err) err = text_chunk(s, out, "content", text, n);
        }
    } else if (str_eq(type, tn, "thinking_delta")) {
        const char *text = get_str(delta, "thinking", &n);
        if (s->show_thinking && text && n) {
            err = role_chunk(s, out, &ch->started);
            if (!err) err = text_chunk(s, out, "reasoning_content", text, n);
        }
    } else if (str_eq(type, tn, "input_json_delta")) {
        const char *part = get_str(delta, "partial_json", &n);
        long long at = idx && json_object_is_type(idx, json_type_int) ? (long long)json_object_get_int64(idx) : -1;
        if (!part || !n || s->block_kind != BLOCK_TOOL || at != s->block)
            return ARS_OK;
        err = role_chunk(s, out, &ch->started);
        if (!err) err = chunk_open(s, out);
        if (!err) err = ars_buf_printf(out, "{\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":",
                                       s->tool_ordinal);
        if (!err) err = add_str(out, part, n);
        if (!err) err = ars_buf_adds(out, "}}]}");
        if (!err) err = chunk_close(s, out, NULL);
    }
    /* signature_delta, citations_delta and anything newer: nothing to say */
    return err;
}

enum ars_err ars_openai_stream_event(struct ars_openai_stream *s, const struct ars_sse_event *ev,
                                     struct ars_buf *out)
{
    struct change ch = { 0, 0, -1, BLOCK_NONE, 0, 0 };
    struct json_object *data = NULL;
    size_t start = out->len;
    enum ars_err err = ARS_OK;
    size_t tn;

    if (s->done || !ev || !ev->event)
        return ARS_OK;
    const char *name = ev->event;
    size_t name_len = strlen(name);
    if (str_eq(name, name_len, "ping"))
        return ARS_OK;
    data = parse_event(ev);
    struct ars_sse_event named = *ev;                 /* for the usage reader */
    if (str_eq(name, name_len, "message")) {          /* unnamed event: go by its type */
        const char *t = get_str(data, "type", &tn);
        if (t) {
            name = t;
            name_len = tn;
            named.event = t;
        }
    }

    if (str_eq(name, name_len, "error")) {
        size_t mn = 0, etn = 0;
        struct json_object *e = get(data, "error");
        const char *msg = get_str(e, "message", &mn);
        const char *etype = get_str(e, "type", &etn);
        if (!msg) {
            msg = "upstream error";
            mn = strlen(msg);
        }
        err = error_chunk(out, 0, etype, etn, msg, mn);
        ch.done = 1;
    } else if (!data) {
        goto out;                                     /* not the JSON it should be */
    } else if (str_eq(name, name_len, "message_start")) {
        ars_sse_usage_update(&s->usage, &named);
        err = role_chunk(s, out, &ch.started);
    } else if (str_eq(name, name_len, "content_block_start")) {
        err = block_start(s, data, out, &ch);
    } else if (str_eq(name, name_len, "content_block_delta")) {
        err = block_delta(s, data, out, &ch);
    } else if (str_eq(name, name_len, "content_block_stop")) {
        ch.set_block = 1;
        ch.block = -1;
        ch.block_kind = BLOCK_NONE;
    } else if (str_eq(name, name_len, "message_delta")) {
        ars_sse_usage_update(&s->usage, &named);
    } else if (str_eq(name, name_len, "message_stop")) {
        err = role_chunk(s, out, &ch.started);
        if (!err) err = finish(s, out);
        ch.done = 1;
    }
    /* anything else: nothing */

out:
    json_object_put(data);
    if (err) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return err;
    }
    if (ch.started)
        s->started = 1;
    if (ch.set_block) {
        s->block = ch.block;
        s->block_kind = ch.block_kind;
    }
    if (ch.tool_started)
        s->tool_ordinal = s->n_tool_calls++;
    if (ch.done)
        s->done = 1;
    return ARS_OK;
}

enum ars_err ars_openai_stream_abort(struct ars_openai_stream *s, const char *message, struct ars_buf *out)
{
    size_t start = out->len;
    if (s->done)
        return ARS_OK;
    if (!message || !*message)
        message = "upstream connection failed";
    enum ars_err err = error_chunk(out, 502, NULL, 0, message, strlen(message));
    if (err) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return err;
    }
    s->done = 1;
    return ARS_OK;
}
