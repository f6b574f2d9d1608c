#include "body.h"

#include <stdio.h>
#include <string.h>

struct scanner {
    const char *p;
    const char *end;
    int depth;
    const char *error;
    char msg[160];                 /* a formatted error; error points here */
};

/* The top-level member names seen so far, decoded. */
struct members {
    size_t n;
    size_t len[ARS_BODY_MAX_MEMBERS];
    char name[ARS_BODY_MAX_MEMBERS][ARS_BODY_MEMBER_NAME_MAX];
};

struct top {
    struct ars_body_fields *f;
    struct members seen;
};

static void skip_ws(struct scanner *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
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
            /* Only the escapes JSON has: a parser upstream refuses the rest,
             * and decode_string() may rely on four hex digits after \u. */
            if (s->p >= s->end)
                return -1;
            char e = *s->p++;
            if (e == 'u') {
                if (s->end - s->p < 4)
                    return -1;
                for (int i = 0; i < 4; i++)
                    if (hexval(*s->p++) < 0)
                        return -1;
            } else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                return -1;
            }
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

/* Decodes a string token (quotes included, escapes already checked by
 * skip_string) into out, NUL-terminated; *len (may be NULL) gets the
 * decoded length, which may hold NULs from \u0000. \uXXXX becomes UTF-8;
 * surrogate pairs are joined. -1 when it did not fit: out holds a
 * truncated prefix. */
static int decode_string(struct ars_span tok, char *out, size_t cap, size_t *len)
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
    if (len)
        *len = o;
    return p < end ? -1 : 0;
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

/* A member name, decoded: "str\u0065am" is "stream" to every JSON parser,
 * so it must be to the relay too. */
struct name {
    char s[ARS_BODY_MEMBER_NAME_MAX + 4];   /* decode_string stops 4 bytes short of the end */
    size_t n;
    int too_long;
};

static void decode_name(struct ars_span key, struct name *nm)
{
    nm->too_long = decode_string(key, nm->s, sizeof(nm->s), &nm->n) != 0 || nm->n >= ARS_BODY_MEMBER_NAME_MAX;
}

static int key_is(const struct name *nm, const char *name)
{
    size_t n = strlen(name);
    return !nm->too_long && nm->n == n && memcmp(nm->s, name, n) == 0;
}

/* A name for an error message: printable ASCII, the rest as '?'. */
static void printable(const struct name *nm, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < nm->n && o + 1 < cap; i++)
        out[o++] = nm->s[i] >= 0x20 && nm->s[i] < 0x7f ? nm->s[i] : '?';
    out[o] = '\0';
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
    struct name nm;
    if (skip_value(s, &v))
        return -1;
    decode_name(key, &nm);
    if (key_is(&nm, "user_id") && v.n >= 2 && v.p[0] == '"')
        (void)decode_string(v, f->user_id, sizeof(f->user_id), NULL);   /* only hashed for stickiness */
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

static int repeated(struct scanner *s, const struct name *nm)
{
    char shown[ARS_BODY_MEMBER_NAME_MAX];
    printable(nm, shown, sizeof(shown));
    snprintf(s->msg, sizeof(s->msg), "request body repeats the top-level member \"%s\" (each member may appear once)",
             shown);
    s->error = s->msg;
    return -1;
}

/* Refuses a top-level member seen before (after decoding). At most
 * ARS_BODY_MAX_MEMBERS names of ARS_BODY_MEMBER_NAME_MAX bytes, so the
 * quadratic compare is bounded (~8000 short memcmp at worst). */
static int remember(struct scanner *s, struct members *seen, const struct name *nm)
{
    if (nm->too_long) {
        snprintf(s->msg, sizeof(s->msg), "request body has a top-level member name longer than %d bytes",
                 ARS_BODY_MEMBER_NAME_MAX - 1);
        s->error = s->msg;
        return -1;
    }
    for (size_t i = 0; i < seen->n; i++)
        if (seen->len[i] == nm->n && memcmp(seen->name[i], nm->s, nm->n) == 0)
            return repeated(s, nm);
    if (seen->n == ARS_BODY_MAX_MEMBERS) {
        snprintf(s->msg, sizeof(s->msg), "request body has more than %d top-level members", ARS_BODY_MAX_MEMBERS);
        s->error = s->msg;
        return -1;
    }
    memcpy(seen->name[seen->n], nm->s, nm->n);
    seen->len[seen->n++] = nm->n;
    return 0;
}

/* "max_tokens": an integer from 1 to ARS_BODY_MAX_TOKENS_CAP, digits only
 * (no sign, fraction or exponent). */
static int read_max_tokens(struct scanner *s, struct ars_span v, long long *out)
{
    long long x = 0;
    size_t i = 0;
    for (; i < v.n && v.p[i] >= '0' && v.p[i] <= '9'; i++) {
        x = x * 10 + (v.p[i] - '0');
        if (x > ARS_BODY_MAX_TOKENS_CAP)
            break;
    }
    if (i == 0 || i != v.n || x < 1 || x > ARS_BODY_MAX_TOKENS_CAP) {
        snprintf(s->msg, sizeof(s->msg), "max_tokens: must be an integer from 1 to %lld", ARS_BODY_MAX_TOKENS_CAP);
        s->error = s->msg;
        return -1;
    }
    *out = x;
    return 0;
}

static int top_member(struct scanner *s, struct ars_span key, void *arg)
{
    struct top *t = arg;
    struct ars_body_fields *f = t->f;
    struct name nm;
    decode_name(key, &nm);
    if (remember(s, &t->seen, &nm))
        return -1;
    if (key_is(&nm, "messages"))
        return scan_messages(s, f);
    if (key_is(&nm, "metadata") && s->p < s->end && *s->p == '{') {
        s->depth++;
        int rc = walk_object(s, metadata_member, f);
        s->depth--;
        return rc;
    }
    struct ars_span v;
    if (skip_value(s, &v))
        return -1;
    if (key_is(&nm, "model")) {
        if (v.p[0] == '"') {
            /* decode_string stops 4 bytes short of its buffer (room for
             * one UTF-8 character), hence the slack. */
            char model[ARS_BODY_MODEL_MAX + 4];
            size_t n;
            f->model_value = v;
            if (decode_string(v, model, sizeof(model), &n) || n >= ARS_BODY_MODEL_MAX) {
                snprintf(s->msg, sizeof(s->msg), "model: longer than %d bytes", ARS_BODY_MODEL_MAX - 1);
                s->error = s->msg;
                return -1;
            }
            for (size_t i = 0; i < n; i++)
                if ((unsigned char)model[i] < 0x20) {
                    s->error = "model: must not contain control characters";
                    return -1;
                }
            memcpy(f->model, model, n + 1);
        }
    } else if (key_is(&nm, "stream")) {
        f->stream = v.n == 4 && memcmp(v.p, "true", 4) == 0;
    } else if (key_is(&nm, "system")) {
        f->system = v;
    } else if (key_is(&nm, "max_tokens")) {
        return read_max_tokens(s, v, &f->max_tokens);
    }
    return 0;
}

/* The whole body: one JSON object, fn called for each top-level member,
 * nothing after it. -1 with the reason in errbuf. */
static int walk_body(const char *body, size_t len, int (*fn)(struct scanner *, struct ars_span, void *), void *arg,
                     char *errbuf, size_t errlen)
{
    struct scanner s = { body, body + len, 1, NULL, "" };
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{') {
        snprintf(errbuf, errlen, "request body must be a JSON object");
        return -1;
    }
    if (walk_object(&s, fn, arg)) {
        snprintf(errbuf, errlen, "%s", s.error ? s.error : "request body is not valid JSON");
        return -1;
    }
    skip_ws(&s);
    if (s.p != s.end) {
        snprintf(errbuf, errlen, "request body has data after the JSON object");
        return -1;
    }
    return 0;
}

enum ars_err ars_body_scan(const char *body, size_t len, int require_model, struct ars_body_fields *out,
                           char *errbuf, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    struct top t;
    t.f = out;
    t.seen.n = 0;
    if (walk_body(body, len, top_member, &t, errbuf, errlen))
        return ARS_ERR_INVALID;
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

static int any_member(struct scanner *s, struct ars_span key, void *arg)
{
    struct name nm;
    decode_name(key, &nm);
    if (remember(s, arg, &nm))
        return -1;
    return skip_value(s, NULL);
}

enum ars_err ars_body_check_members(const char *body, size_t len, char *errbuf, size_t errlen)
{
    struct members seen;
    seen.n = 0;
    return walk_body(body, len, any_member, &seen, errbuf, errlen) ? ARS_ERR_INVALID : ARS_OK;
}
