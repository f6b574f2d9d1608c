#include "sse.h"

#include <json.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

static const char bom[3] = { '\xEF', '\xBB', '\xBF' };

/* ---- parser -------------------------------------------------------------- */

void ars_sse_init(struct ars_sse_parser *p, size_t max_event_bytes)
{
    memset(p, 0, sizeof(*p));
    p->max_event_bytes = max_event_bytes ? max_event_bytes : ARS_CAP_SSE_EVENT_BYTES;
    /* The raw buffer is bounded by what the caller feeds between pulls plus
     * one unfinished event (checked in scan()), not by a cap of its own. */
    ars_buf_init(&p->raw, SIZE_MAX / 4);
    ars_buf_init(&p->joined, p->max_event_bytes);
    p->at_line_start = 1;
}

void ars_sse_deinit(struct ars_sse_parser *p)
{
    ars_buf_deinit(&p->raw);
    ars_buf_deinit(&p->joined);
}

/* Offset of the first \n or \r in s[0..n), n if there is none. Two memchr
 * passes beat a byte loop on the ~200-byte lines of a delta event. */
static size_t find_eol(const char *s, size_t n)
{
    const char *lf = memchr(s, '\n', n);
    size_t lim = lf ? (size_t)(lf - s) : n;
    const char *cr = memchr(s, '\r', lim);
    return cr ? (size_t)(cr - s) : lim;
}

/* Drops the events already pulled from the front of the raw buffer. Each
 * pulled event costs at most one move of the unfinished bytes behind it,
 * so the total work stays linear in the stream. */
static void compact(struct ars_sse_parser *p)
{
    /* pos runs ahead of done only over a skipped BOM before the first
     * boundary; nothing can be dropped then. */
    size_t drop = p->pos <= p->done ? p->pos : 0;
    if (!drop)
        return;
    memmove(p->raw.data, p->raw.data + drop, p->raw.len - drop);
    p->raw.len -= drop;
    p->raw.data[p->raw.len] = '\0';
    p->base += drop;
    p->pos -= drop;
    p->done -= drop;
    p->scan -= drop;
}

/* Finds the event boundaries (blank lines) in the bytes not scanned yet
 * and moves `done` to the last one. Only line ends are looked at here;
 * fields are parsed when an event is pulled. */
static enum ars_err scan(struct ars_sse_parser *p)
{
    const char *s = p->raw.data;
    size_t len = p->raw.len, i = p->scan;

    while (i < len) {
        if (p->prev_cr) {
            p->prev_cr = 0;
            if (s[i] == '\n') {
                /* second half of a \r\n; if the \r ended an event, the
                 * boundary moves past it */
                if (p->done == i)
                    p->done = i + 1;
                i++;
                continue;
            }
        }
        size_t t = find_eol(s + i, len - i);
        if (t == len - i) {            /* unfinished line */
            if (t)
                p->at_line_start = 0;
            i = len;
            break;
        }
        size_t j = i + t;
        if (t == 0 && p->at_line_start) {
            if (j + 1 - p->done > p->max_event_bytes) {
                p->scan = j;
                return ARS_ERR_TOOBIG;
            }
            p->done = j + 1;
        }
        p->at_line_start = 1;
        p->prev_cr = s[j] == '\r';
        i = j + 1;
    }
    p->scan = len;
    if (len - p->done > p->max_event_bytes)
        return ARS_ERR_TOOBIG;
    return ARS_OK;
}

enum ars_err ars_sse_feed(struct ars_sse_parser *p, const char *data, size_t n,
                          size_t *consumed_to_boundary)
{
    enum ars_err err = p->err;
    if (err)
        goto out;
    if (!data && n) {
        err = ARS_ERR_INVALID;
        goto out;
    }
    compact(p);
    if (n && (err = ars_buf_add(&p->raw, data, n)) != ARS_OK)
        goto out;
    if (!p->bom_done) {
        size_t k = p->raw.len < sizeof(bom) ? p->raw.len : sizeof(bom);
        if (k == 0)
            goto out;
        if (memcmp(p->raw.data, bom, k) != 0) {
            p->bom_done = 1;
        } else if (k == sizeof(bom)) {
            p->bom_done = 1;
            p->pos = p->scan = sizeof(bom);   /* passed through, never parsed */
        } else {
            goto out;                         /* a BOM prefix: wait for more */
        }
    }
    err = scan(p);
out:
    if (err == ARS_ERR_TOOBIG || err == ARS_ERR_NOMEM)
        p->err = err;                         /* sticky */
    if (consumed_to_boundary)
        *consumed_to_boundary = p->base + p->done;
    return err;
}

/* Pulls the next block (lines up to a blank line) out of [pos, done) and
 * dispatches it if it had data. Values are NUL-terminated in place by
 * overwriting their line end, so a one-line data field (every event the
 * Messages API sends) is handed out without a copy; further data lines are
 * joined in p->joined. */
int ars_sse_next(struct ars_sse_parser *p, struct ars_sse_event *ev)
{
    char *s = p->raw.data;

    while (p->pos < p->done) {
        const char *name = NULL, *val = NULL;
        size_t val_len = 0, n_data = 0, i = p->pos;
        int ended = 0;

        while (i < p->done) {
            size_t t = find_eol(s + i, p->done - i);
            size_t j = i + t;
            if (j == p->done) {            /* cannot happen: done ends a blank line */
                i = p->done;
                break;
            }
            size_t next = j + 1;
            if (s[j] == '\r' && next < p->done && s[next] == '\n')
                next++;
            if (t == 0) {
                i = next;
                ended = 1;
                break;
            }
            if (s[i] != ':') {             /* ':' starts a comment */
                char *colon = memchr(s + i, ':', t);
                size_t name_len = colon ? (size_t)(colon - (s + i)) : t;
                char *v = colon ? colon + 1 : s + j;
                if (v < s + j && *v == ' ')
                    v++;
                size_t v_len = (size_t)(s + j - v);
                if (name_len == 5 && memcmp(s + i, "event", 5) == 0) {
                    s[j] = '\0';
                    name = v;
                } else if (name_len == 4 && memcmp(s + i, "data", 4) == 0) {
                    if (n_data == 0) {
                        s[j] = '\0';
                        val = v;
                        val_len = v_len;
                    } else {
                        /* joined is capped at max_event_bytes and the data
                         * of one event is shorter than the event, so only
                         * NOMEM can fail here */
                        enum ars_err err = ARS_OK;
                        if (n_data == 1) {
                            ars_buf_reset(&p->joined);
                            err = ars_buf_add(&p->joined, val, val_len);
                        }
                        if (!err)
                            err = ars_buf_add(&p->joined, "\n", 1);
                        if (!err)
                            err = ars_buf_add(&p->joined, v, v_len);
                        if (err) {
                            p->err = err;
                            p->pos = p->done;
                            return 0;
                        }
                        val = p->joined.data;
                        val_len = p->joined.len;
                    }
                    n_data++;
                }
                /* id, retry and unknown fields are ignored */
            }
            i = next;
        }
        p->pos = i;
        if (ended && n_data) {
            ev->event = name && *name ? name : "message";
            ev->data = val;
            ev->data_len = val_len;
            return 1;
        }
    }
    return 0;
}

/* ---- usage ----------------------------------------------------------------- */

void ars_sse_usage_init(struct ars_sse_usage *u)
{
    memset(u, 0, sizeof(*u));
}

/* Parses one event's data as a JSON object; NULL for anything else,
 * including trailing bytes after the object. */
static struct json_object *parse_object(const char *s, size_t n)
{
    struct json_object *o = NULL;
    struct json_tokener *tok = NULL;
    size_t end;

    if (n == 0 || n > INT32_MAX)           /* json-c takes an int length */
        goto out;
    tok = json_tokener_new_ex(ARS_CAP_SSE_JSON_DEPTH);
    if (!tok)
        goto out;
    o = json_tokener_parse_ex(tok, s, (int)n);
    if (!o || json_tokener_get_error(tok) != json_tokener_success
        || !json_object_is_type(o, json_type_object))
        goto bad;
#if JSON_C_VERSION_NUM >= ((0 << 16) | (15 << 8))
    end = json_tokener_get_parse_end(tok);
#else
    end = (size_t)tok->char_offset;
#endif
    for (; end < n; end++)
        if (s[end] != ' ' && s[end] != '\t' && s[end] != '\n' && s[end] != '\r')
            goto bad;
    goto out;
bad:
    json_object_put(o);
    o = NULL;
out:
    if (tok)
        json_tokener_free(tok);
    return o;
}

static struct json_object *get_object(struct json_object *obj, const char *key)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_object))
        return NULL;
    return v;
}

/* 1 and the string's bytes when obj[key] is a string, else 0. */
static int get_string(struct json_object *obj, const char *key, const char **s, size_t *len)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
        return 0;
    int n = json_object_get_string_len(v);
    *s = json_object_get_string(v);
    *len = n > 0 ? (size_t)n : 0;
    return *s != NULL;
}

/* 1 and the count clamped to [0, ARS_SSE_MAX_COUNT] when obj[key] is a
 * number; 0 (field treated as absent) for anything else. */
static int get_count(struct json_object *obj, const char *key, long long *out)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !v)
        return 0;
    switch (json_object_get_type(v)) {
    case json_type_int: {
        int64_t x = json_object_get_int64(v);     /* saturates, never wraps */
        *out = x < 0 ? 0 : x > ARS_SSE_MAX_COUNT ? ARS_SSE_MAX_COUNT : (long long)x;
        return 1;
    }
    case json_type_double: {
        double d = json_object_get_double(v);
        *out = !(d > 0) ? 0 : d >= (double)ARS_SSE_MAX_COUNT ? ARS_SSE_MAX_COUNT : (long long)d;
        return 1;
    }
    default:
        return 0;
    }
}

/* Copies into a fixed field, cut at a UTF-8 character boundary when the
 * field is too small. */
static void copy_str(char *dst, size_t size, const char *src, size_t len)
{
    size_t n = len;
    if (n > size - 1) {
        n = size - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void copy_field(char *dst, size_t size, struct json_object *obj, const char *key)
{
    const char *s;
    size_t len;
    if (get_string(obj, key, &s, &len))
        copy_str(dst, size, s, len);
}

static long long max_ll(long long a, long long b)
{
    return a > b ? a : b;
}

enum output_rule { OUTPUT_INITIAL, OUTPUT_FINAL };

/* Merges one usage object. Input, cache read and the raw cache-write
 * figures keep the highest value seen: the API reports them cumulatively
 * (message_start, repeated in message_delta by newer versions), so a sum
 * would bill them twice. The billed cache writes are derived from the raw
 * figures: the 1h split as given, the 5m split plus whatever part of
 * cache_creation_input_tokens the split does not explain. */
static void merge_usage(struct ars_sse_usage *u, struct json_object *usage, enum output_rule rule)
{
    long long v;
    const char *s;
    size_t len;

    if (get_count(usage, "input_tokens", &v))
        u->usage.input = max_ll(u->usage.input, v);
    if (get_count(usage, "cache_read_input_tokens", &v))
        u->usage.cache_read = max_ll(u->usage.cache_read, v);
    if (get_count(usage, "cache_creation_input_tokens", &v))
        u->seen_cache_creation = max_ll(u->seen_cache_creation, v);
    struct json_object *split = get_object(usage, "cache_creation");
    if (split) {
        if (get_count(split, "ephemeral_5m_input_tokens", &v))
            u->seen_ephemeral_5m = max_ll(u->seen_ephemeral_5m, v);
        if (get_count(split, "ephemeral_1h_input_tokens", &v))
            u->seen_ephemeral_1h = max_ll(u->seen_ephemeral_1h, v);
    }
    long long unexplained = u->seen_cache_creation - u->seen_ephemeral_5m - u->seen_ephemeral_1h;
    u->usage.cache_write_1h = u->seen_ephemeral_1h;
    u->usage.cache_write_5m = u->seen_ephemeral_5m + (unexplained > 0 ? unexplained : 0);

    if (get_count(usage, "output_tokens", &v)) {
        if (rule == OUTPUT_FINAL || !u->have_delta)
            u->usage.output = v;
    }
    if (get_string(usage, "speed", &s, &len) && len == 4 && memcmp(s, "fast", 4) == 0)
        u->usage.fast = 1;
}

static void read_error(struct ars_sse_usage *u, struct json_object *body)
{
    struct json_object *e = get_object(body, "error");
    u->saw_error = 1;
    if (e) {
        copy_field(u->error_type, sizeof(u->error_type), e, "type");
        copy_field(u->error_message, sizeof(u->error_message), e, "message");
    }
}

/* Dispatch on the event name. The string compares fail on the first byte
 * for content_block_* and ping, so the bulk of a stream costs nothing. */
void ars_sse_usage_update(struct ars_sse_usage *u, const struct ars_sse_event *ev)
{
    const char *name = ev->event;
    struct json_object *o = NULL, *part;

    if (strcmp(name, "message_start") == 0) {
        o = parse_object(ev->data, ev->data_len);
        struct json_object *msg = get_object(o, "message");
        if (!msg)
            goto out;
        copy_field(u->model, sizeof(u->model), msg, "model");
        copy_field(u->message_id, sizeof(u->message_id), msg, "id");
        if ((part = get_object(msg, "usage"))) {
            merge_usage(u, part, OUTPUT_INITIAL);
            u->have_start = 1;
        }
    } else if (strcmp(name, "message_delta") == 0) {
        o = parse_object(ev->data, ev->data_len);
        if (!o)
            goto out;
        if ((part = get_object(o, "delta")))
            copy_field(u->stop_reason, sizeof(u->stop_reason), part, "stop_reason");
        if ((part = get_object(o, "usage"))) {
            merge_usage(u, part, OUTPUT_FINAL);
            u->have_delta = 1;
        }
    } else if (strcmp(name, "message_stop") == 0) {
        u->saw_stop = 1;
    } else if (strcmp(name, "error") == 0) {
        o = parse_object(ev->data, ev->data_len);
        read_error(u, o);
    }
out:
    json_object_put(o);
}

void ars_sse_usage_from_message(struct ars_sse_usage *u, struct json_object *message)
{
    const char *type = NULL;
    size_t type_len = 0;
    struct json_object *usage;

    if (!message || !json_object_is_type(message, json_type_object))
        return;
    get_string(message, "type", &type, &type_len);
    if (type && type_len == 5 && memcmp(type, "error", 5) == 0) {
        read_error(u, message);
        return;
    }
    copy_field(u->model, sizeof(u->model), message, "model");
    copy_field(u->message_id, sizeof(u->message_id), message, "id");
    copy_field(u->stop_reason, sizeof(u->stop_reason), message, "stop_reason");
    if ((usage = get_object(message, "usage"))) {
        merge_usage(u, usage, OUTPUT_FINAL);
        u->have_start = 1;
        u->have_delta = 1;
    }
    if (type && type_len == 7 && memcmp(type, "message", 7) == 0)
        u->saw_stop = 1;
}

static int is_event_stream(const char *ct)
{
    if (!ct)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return strncasecmp(ct, "text/event-stream", 17) == 0 &&
           (ct[17] == '\0' || ct[17] == ';' || ct[17] == ' ' || ct[17] == '\t');
}

enum ars_err ars_sse_usage_from_body(struct ars_sse_usage *u, const char *content_type, const char *body,
                                     size_t len)
{
    if (!body)
        len = 0;
    if (is_event_stream(content_type)) {
        struct ars_sse_parser p;
        struct ars_sse_event ev;
        ars_sse_init(&p, 0);
        enum ars_err err = len ? ars_sse_feed(&p, body, len, NULL) : ARS_OK;
        while (ars_sse_next(&p, &ev))   /* events complete before an error still count */
            ars_sse_usage_update(u, &ev);
        ars_sse_deinit(&p);
        if (err == ARS_ERR_NOMEM)
            return err;
    } else {
        struct json_object *msg = parse_object(body, len);
        ars_sse_usage_from_message(u, msg);
        json_object_put(msg);
    }
    return u->have_start || u->have_delta ? ARS_OK : ARS_ERR_INVALID;
}
