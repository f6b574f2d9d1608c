#include "body.h"

#include <stdio.h>
#include <string.h>

struct scanner {
    const char *p;
    const char *end;
    int depth;
    const char *error;
};

static void skip_ws(struct scanner *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* Moves past a string token starting at '"'; span covers the quotes. */
static int skip_string(struct scanner *s, struct ars_span *span)
{
    const char *start = s->p;
    if (s->p >= s->end || *s->p != '"')
        return -1;
    s->p++;
    while (s->p < s->end) {
        char c = *s->p++;
        if (c == '\\') {
            if (s->p >= s->end)
                return -1;
            s->p++;
        } else if (c == '"') {
            if (span) {
                span->p = start;
                span->n = (size_t)(s->p - start);
            }
            return 0;
        } else if ((unsigned char)c < 0x20) {
            return -1;
        }
    }
    return -1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes a string token (quotes included) into out, truncating at cap-1.
 * \uXXXX becomes UTF-8; surrogate pairs are joined. */
static void decode_string(struct ars_span tok, char *out, size_t cap)
{
    size_t o = 0;
    const char *p = tok.p + 1, *end = tok.p + tok.n - 1;
    while (p < end && o + 4 < cap) {
        char c = *p++;
        if (c != '\\') {
            out[o++] = c;
            continue;
        }
        char e = *p++;
        switch (e) {
        case 'n': out[o++] = '\n'; break;
        case 't': out[o++] = '\t'; break;
        case 'r': out[o++] = '\r'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'u': {
            unsigned cp = 0;
            for (int i = 0; i < 4 && p < end; i++, p++)
                cp = cp * 16 + (unsigned)(hexval(*p) < 0 ? 0 : hexval(*p));
            if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                unsigned lo = 0;
                for (int i = 2; i < 6; i++)
                    lo = lo * 16 + (unsigned)(hexval(p[i]) < 0 ? 0 : hexval(p[i]));
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            if (cp < 0x80) {
                out[o++] = (char)cp;
            } else if (cp < 0x800) {
                out[o++] = (char)(0xC0 | (cp >> 6));
                out[o++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                out[o++] = (char)(0xE0 | (cp >> 12));
                out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[o++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[o++] = (char)(0xF0 | (cp >> 18));
                out[o++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[o++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: out[o++] = e; break;
        }
    }
    out[o] = '\0';
}

/* Skips any value, recording its span. */
static int skip_value(struct scanner *s, struct ars_span *span)
{
    skip_ws(s);
    const char *start = s->p;
    if (s->p >= s->end)
        return -1;
    char c = *s->p;
    if (c == '"') {
        if (skip_string(s, NULL))
            return -1;
    } else if (c == '{' || c == '[') {
        /* Depth only: strings are skipped whole so brackets inside them don't count. */
        int depth = 0;
        while (s->p < s->end) {
            char d = *s->p;
            if (d == '"') {
                if (skip_string(s, NULL))
                    return -1;
                continue;
            }
            s->p++;
            if (d == '{' || d == '[') {
                if (++depth + s->depth > ARS_BODY_MAX_DEPTH) {
                    s->error = "request body is nested too deeply";
                    return -1;
                }
            } else if (d == '}' || d == ']') {
                if (--depth == 0)
                    break;
            }
        }
        if (depth != 0)
            return -1;
    } else {
        while (s->p < s->end && *s->p != ',' && *s->p != '}' && *s->p != ']' && *s->p != ' ' &&
               *s->p != '\n' && *s->p != '\r' && *s->p != '\t')
            s->p++;
        if (s->p == start)
            return -1;
    }
    if (span) {
        span->p = start;
        span->n = (size_t)(s->p - start);
    }
    return 0;
}

static int key_is(struct ars_span key, const char *name)
{
    size_t n = strlen(name);
    return key.n == n + 2 && memcmp(key.p + 1, name, n) == 0;
}

/* Walks an object's members, calling fn for each key with the scanner at
 * the value; fn must consume the value. */
static int walk_object(struct scanner *s, int (*fn)(struct scanner *, struct ars_span, void *), void *arg)
{
    skip_ws(s);
    if (s->p >= s->end || *s->p != '{')
        return -1;
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        struct ars_span key;
        if (skip_string(s, &key))
            return -1;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return -1;
        s->p++;
        skip_ws(s);
        if (fn(s, key, arg))
            return -1;
        skip_ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p == '}') {
            s->p++;
            return 0;
        }
        return -1;
    }
}

static int metadata_member(struct scanner *s, struct ars_span key, void *arg)
{
    struct ars_body_fields *f = arg;
    struct ars_span v;
    if (skip_value(s, &v))
        return -1;
    if (key_is(key, "user_id") && v.n >= 2 && v.p[0] == '"')
        decode_string(v, f->user_id, sizeof(f->user_id));
    return 0;
}

/* "messages": record the first element and count them. */
static int scan_messages(struct scanner *s, struct ars_body_fields *f)
{
    if (s->p >= s->end || *s->p != '[')
        return skip_value(s, NULL);
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    for (;;) {
        struct ars_span el;
        if (skip_value(s, &el))
            return -1;
        if (f->message_count++ == 0)
            f->first_message = el;
        skip_ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p == ']') {
            s->p++;
            return 0;
        }
        return -1;
    }
}

static int top_member(struct scanner *s, struct ars_span key, void *arg)
{
    struct ars_body_fields *f = arg;
    if (key_is(key, "messages"))
        return scan_messages(s, f);
    if (key_is(key, "metadata") && s->p < s->end && *s->p == '{') {
        s->depth++;
        int rc = walk_object(s, metadata_member, f);
        s->depth--;
        return rc;
    }
    struct ars_span v;
    if (skip_value(s, &v))
        return -1;
    if (key_is(key, "model")) {
        if (v.p[0] == '"') {
            f->model_value = v;
            decode_string(v, f->model, sizeof(f->model));
        }
    } else if (key_is(key, "stream")) {
        f->stream = v.n == 4 && memcmp(v.p, "true", 4) == 0;
    } else if (key_is(key, "system")) {
        f->system = v;
    }
    return 0;
}

enum ars_err ars_body_scan(const char *body, size_t len, int require_model, struct ars_body_fields *out,
                           char *errbuf, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    struct scanner s = { body, body + len, 1, NULL };
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{') {
        snprintf(errbuf, errlen, "request body must be a JSON object");
        return ARS_ERR_INVALID;
    }
    if (walk_object(&s, top_member, out)) {
        snprintf(errbuf, errlen, "%s", s.error ? s.error : "request body is not valid JSON");
        return ARS_ERR_INVALID;
    }
    skip_ws(&s);
    if (s.p != s.end) {
        snprintf(errbuf, errlen, "request body has data after the JSON object");
        return ARS_ERR_INVALID;
    }
    if (require_model && !out->model_value.p) {
        snprintf(errbuf, errlen, "model: required, a string such as \"claude-sonnet-5\"");
        return ARS_ERR_INVALID;
    }
    if (require_model && !out->model[0]) {
        snprintf(errbuf, errlen, "model: must not be empty");
        return ARS_ERR_INVALID;
    }
    return ARS_OK;
}
