#include "pricing.h"

#include <errno.h>
#include <json.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

#define UNIT_TEXT "USD per million tokens"
#define MICROS 1000000LL
#define MAX_THRESHOLD 1000000000000LL   /* tokens; far beyond any context window */

__extension__ typedef __int128 i128;

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    /* Field names come from the file and JSON escapes let them hold any
     * byte: the message stays one line (found by check/fuzz/fuzz_pricing). */
    for (char *c = errbuf; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
}

/* ---- exact decimals ------------------------------------------------------ */

enum dec_result { DEC_OK, DEC_MALFORMED, DEC_NEGATIVE, DEC_TOO_BIG };

/* JSON number text (as written in the file: json-c keeps it) to
 * micro-units: value * 10^6, rounded half up on the first dropped digit.
 * Works on the digits, so 0.1, 6.25 or 1e-7 convert exactly, with no
 * binary floating point in between. Results above `max` are DEC_TOO_BIG. */
static enum dec_result decimal_to_micros(const char *s, long long max, long long *out)
{
    char digits[64];
    size_t nd = 0;
    int neg = 0, any = 0;
    long exp10 = 0;

    if (*s == '-') {
        neg = 1;
        s++;
    }
    for (; *s >= '0' && *s <= '9'; s++) {
        any = 1;
        if (nd == 0 && *s == '0')
            continue;                          /* leading zero */
        if (nd == sizeof(digits))
            return DEC_TOO_BIG;                /* > 10^64 before the point */
        digits[nd++] = *s;
    }
    if (*s == '.') {
        s++;
        int frac = 0;
        for (; *s >= '0' && *s <= '9'; s++) {
            frac = 1;
            if (nd == 0 && *s == '0') {
                exp10--;                       /* 0.00x: shift, keep no digit */
                continue;
            }
            if (nd < sizeof(digits)) {
                digits[nd++] = *s;
                exp10--;
            }                                  /* digits past 64 only refine rounding; drop */
        }
        if (!frac)
            return DEC_MALFORMED;
    }
    if (!any)
        return DEC_MALFORMED;
    if (*s == 'e' || *s == 'E') {
        s++;
        int eneg = 0;
        if (*s == '+' || *s == '-')
            eneg = *s++ == '-';
        if (!(*s >= '0' && *s <= '9'))
            return DEC_MALFORMED;
        long e = 0;
        for (; *s >= '0' && *s <= '9'; s++)
            if (e < 100000)
                e = e * 10 + (*s - '0');
        exp10 += eneg ? -e : e;
    }
    if (*s)
        return DEC_MALFORMED;

    /* value = digits * 10^exp10, micros = digits * 10^(exp10 + 6) */
    long long v = 0;
    if (nd > 0) {
        long p = exp10 + 6;
        long keep = (long)nd + p;              /* digits left of the micro point */
        if (keep > 18)
            return neg ? DEC_NEGATIVE : DEC_TOO_BIG;
        if (p >= 0) {
            for (size_t i = 0; i < nd; i++)
                v = v * 10 + (digits[i] - '0');
            for (long i = 0; i < p; i++)
                v *= 10;
        } else if (keep >= 0) {
            for (long i = 0; i < keep; i++)
                v = v * 10 + (digits[i] - '0');
            if (digits[keep] >= '5')           /* round half up */
                v++;
        }                                      /* keep < 0: below half a micro */
    }
    if (neg && v > 0)
        return DEC_NEGATIVE;
    if (v > max)
        return DEC_TOO_BIG;
    *out = v;
    return DEC_OK;
}

/* ---- loading ------------------------------------------------------------- */

static const char *const rate_names[5] = {
    "input", "output", "cache_write_5m", "cache_write_1h", "cache_read"
};

static long long *rate_slot(struct ars_rates *r, size_t i)
{
    switch (i) {
    case 0: return &r->input;
    case 1: return &r->output;
    case 2: return &r->cache_write_5m;
    case 3: return &r->cache_write_1h;
    default: return &r->cache_read;
    }
}

static int rate_index(const char *key)
{
    for (size_t i = 0; i < 5; i++)
        if (strcmp(key, rate_names[i]) == 0)
            return (int)i;
    return -1;
}

/* Where an error is: file, then "model \"x\"" or "default". */
struct ctx {
    const char *file;
    const char *what;     /* "model \"claude-x\"" or "default" */
    char *errbuf;
    size_t errlen;
};

static enum ars_err bad(const struct ctx *c, const char *prefix, const char *field, const char *why)
{
    set_err(c->errbuf, c->errlen, "%s: %s: %s%s: %s", c->file, c->what, prefix, field, why);
    return ARS_ERR_CONFIG;
}

static enum ars_err parse_rate(const struct ctx *c, const char *prefix, const char *field,
                               struct json_object *v, long long *out)
{
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
        return bad(c, prefix, field, "must be a number (USD per million tokens)");
    const char *text = json_object_get_string(v);
    switch (decimal_to_micros(text ? text : "", ARS_PRICING_MAX_RATE, out)) {
    case DEC_OK: return ARS_OK;
    case DEC_NEGATIVE: return bad(c, prefix, field, "must not be negative");
    case DEC_TOO_BIG: return bad(c, prefix, field, "absurd rate (over 100000 USD per million tokens)");
    case DEC_MALFORMED: break;
    }
    return bad(c, prefix, field, "must be a plain decimal number");
}

/* The five rates of one set; `extra` lets a caller accept more keys
 * (returns 1 for "handled", -1 for "error already set", 0 for "unknown"). */
typedef int (*extra_key_fn)(const struct ctx *c, const char *key, struct json_object *v, void *arg,
                            enum ars_err *err);

static enum ars_err parse_set(const struct ctx *c, const char *prefix, struct json_object *obj,
                              struct ars_rates *r, extra_key_fn extra, void *arg)
{
    if (!json_object_is_type(obj, json_type_object)) {
        set_err(c->errbuf, c->errlen, "%s: %s: %.*s: must be an object", c->file, c->what,
                (int)(prefix[0] ? strlen(prefix) - 1 : 0), prefix);
        return ARS_ERR_CONFIG;
    }
    int seen[5] = { 0 };
    enum ars_err err = ARS_OK;
    json_object_object_foreach(obj, key, v) {
        if (key[0] == '_')
            continue;                          /* comment */
        int i = rate_index(key);
        if (i >= 0) {
            if ((err = parse_rate(c, prefix, key, v, rate_slot(r, (size_t)i))))
                return err;
            seen[i] = 1;
            continue;
        }
        if (extra) {
            int h = extra(c, key, v, arg, &err);
            if (h < 0)
                return err;
            if (h > 0)
                continue;
        }
        return bad(c, prefix, key, "unknown field");
    }
    for (size_t i = 0; i < 5; i++)
        if (!seen[i])
            return bad(c, prefix, rate_names[i], "missing (every rate set needs input, output, "
                       "cache_write_5m, cache_write_1h and cache_read)");
    return ARS_OK;
}

static int long_context_key(const struct ctx *c, const char *key, struct json_object *v, void *arg,
                            enum ars_err *err)
{
    if (strcmp(key, "threshold_tokens") != 0)
        return 0;
    long long *t = arg;
    const char *text = json_object_get_string(v);
    long long n;
    if (!json_object_is_type(v, json_type_int) || !text
        || decimal_to_micros(text, MAX_THRESHOLD * MICROS, &n) != DEC_OK || n % MICROS || n == 0) {
        *err = bad(c, "long_context.", key, "must be a whole number of tokens, 1 or more");
        return -1;
    }
    *t = n / MICROS;
    return 1;
}

static char *dup_checked(const struct ctx *c, const char *field, struct json_object *v,
                         size_t cap, enum ars_err *err)
{
    const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
    size_t n = s ? strlen(s) : 0;
    if (!s || n == 0 || n > cap || n != (size_t)json_object_get_string_len(v)) {
        char why[80];
        snprintf(why, sizeof(why), "must be a non-empty string of at most %zu bytes", cap);
        *err = bad(c, "", field, why);
        return NULL;
    }
    char *d = strdup(s);
    if (!d)
        *err = ARS_ERR_NOMEM;
    return d;
}

/* Ids go into lookups and logs: printable ASCII, no spaces. */
static int valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > ARS_CAP_PRICING_ID)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

struct model_arg {
    struct ars_model_price *m;
    int is_default;
    int have_name;
};

static int model_key(const struct ctx *c, const char *key, struct json_object *v, void *arg,
                     enum ars_err *err)
{
    struct model_arg *a = arg;
    struct ars_model_price *m = a->m;

    if (strcmp(key, "long_context") == 0) {
        m->long_context_threshold = 0;
        if ((*err = parse_set(c, "long_context.", v, &m->long_context, long_context_key,
                              &m->long_context_threshold)))
            return -1;
        if (!m->long_context_threshold) {
            *err = bad(c, "long_context.", "threshold_tokens", "missing");
            return -1;
        }
        m->has_long_context = 1;
        return 1;
    }
    if (strcmp(key, "fast") == 0) {
        if ((*err = parse_set(c, "fast.", v, &m->fast, NULL, NULL)))
            return -1;
        m->has_fast = 1;
        return 1;
    }
    if (a->is_default)
        return 0;
    if (strcmp(key, "display_name") == 0) {
        if (!(m->display_name = dup_checked(c, key, v, 256, err)))
            return -1;
        a->have_name = 1;
        return 1;
    }
    if (strcmp(key, "list") == 0) {
        if (!json_object_is_type(v, json_type_boolean)) {
            *err = bad(c, "", key, "must be true or false");
            return -1;
        }
        m->list = json_object_get_boolean(v);
        return 1;
    }
    if (strcmp(key, "aliases") == 0) {
        size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
        if (!json_object_is_type(v, json_type_array) || n > ARS_CAP_PRICING_ALIASES) {
            *err = bad(c, "", key, "must be an array of at most 64 model ids");
            return -1;
        }
        if (n && !(m->aliases = calloc(n, sizeof(*m->aliases)))) {
            *err = ARS_ERR_NOMEM;
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            if (!(m->aliases[i] = dup_checked(c, key, json_object_array_get_idx(v, i),
                                              ARS_CAP_PRICING_ID, err)))
                return -1;
            m->n_aliases = i + 1;
            if (!valid_id(m->aliases[i])) {
                *err = bad(c, "", key, "ids are printable ASCII without spaces");
                return -1;
            }
        }
        return 1;
    }
    return 0;
}

static enum ars_err parse_model(const char *file, const char *id, struct json_object *obj,
                                struct ars_model_price *m, int is_default,
                                char *errbuf, size_t errlen)
{
    char what[ARS_CAP_PRICING_ID + 16];
    if (is_default)
        snprintf(what, sizeof(what), "default");
    else
        snprintf(what, sizeof(what), "model \"%.*s\"", ARS_CAP_PRICING_ID, id);
    struct ctx c = { file, what, errbuf, errlen };

    if (!is_default && !valid_id(id)) {
        set_err(errbuf, errlen, "%s: %s: model ids are 1 to %d printable ASCII bytes without spaces",
                file, what, ARS_CAP_PRICING_ID);
        return ARS_ERR_CONFIG;
    }
    if (!(m->id = strdup(is_default ? "default" : id)))
        return ARS_ERR_NOMEM;
    if (!json_object_is_type(obj, json_type_object)) {
        set_err(errbuf, errlen, "%s: %s: must be an object", file, what);
        return ARS_ERR_CONFIG;
    }
    struct model_arg a = { m, is_default, 0 };
    enum ars_err err = parse_set(&c, "", obj, &m->base, model_key, &a);
    if (err)
        return err;
    if (!is_default && !a.have_name)
        return bad(&c, "", "display_name", "missing");
    return ARS_OK;
}

/* Every id and alias names one model only. */
static enum ars_err check_unique(const char *file, const struct ars_pricing *p, char *errbuf, size_t errlen)
{
    for (size_t i = 0; i < p->n_models; i++) {
        const struct ars_model_price *m = &p->models[i];
        for (size_t a = 0; a < m->n_aliases; a++) {
            for (size_t j = 0; j < p->n_models; j++) {
                const struct ars_model_price *o = &p->models[j];
                int clash = strcmp(m->aliases[a], o->id) == 0;
                for (size_t b = 0; !clash && b < o->n_aliases; b++)
                    clash = (j != i || b != a) && strcmp(m->aliases[a], o->aliases[b]) == 0;
                if (clash) {
                    set_err(errbuf, errlen, "%s: model \"%s\": aliases: \"%s\" already names model \"%s\"",
                            file, m->id, m->aliases[a], o->id);
                    return ARS_ERR_CONFIG;
                }
            }
        }
    }
    return ARS_OK;
}

static size_t parse_end(struct json_tokener *tok)
{
#if defined(JSON_C_VERSION_NUM) && JSON_C_VERSION_NUM >= ((0 << 16) | (15 << 8))
    return json_tokener_get_parse_end(tok);
#else
    return (size_t)tok->char_offset;
#endif
}

enum ars_err ars_pricing_parse(const char *name, const char *text, size_t len,
                               struct ars_pricing **out, char *errbuf, size_t errlen)
{
    enum ars_err err = ARS_OK;
    struct ars_pricing *p = NULL;
    struct json_object *root = NULL;
    struct json_tokener *tok = NULL;

    *out = NULL;
    if (len > ARS_CAP_PRICING_FILE) {
        set_err(errbuf, errlen, "%s: larger than %d bytes", name, ARS_CAP_PRICING_FILE);
        return ARS_ERR_TOOBIG;
    }
    if (!(tok = json_tokener_new_ex(16)))
        return ARS_ERR_NOMEM;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    root = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    if (jerr == json_tokener_continue)
        jerr = json_tokener_error_parse_eof;
    if (jerr != json_tokener_success || !root) {
        set_err(errbuf, errlen, "%s: invalid JSON at byte %zu: %s", name, parse_end(tok),
                json_tokener_error_desc(jerr));
        err = ARS_ERR_CONFIG;
        goto out;
    }
    for (size_t i = parse_end(tok); i < len; i++) {
        if (text[i] != ' ' && text[i] != '\n' && text[i] != '\r' && text[i] != '\t') {
            set_err(errbuf, errlen, "%s: invalid JSON at byte %zu: text after the top-level object",
                    name, i);
            err = ARS_ERR_CONFIG;
            goto out;
        }
    }
    if (!json_object_is_type(root, json_type_object)) {
        set_err(errbuf, errlen, "%s: the top level must be an object", name);
        err = ARS_ERR_CONFIG;
        goto out;
    }
    if (!(p = calloc(1, sizeof(*p)))) {
        err = ARS_ERR_NOMEM;
        goto out;
    }

    struct json_object *models = NULL, *def = NULL;
    json_object_object_foreach(root, key, v) {
        if (key[0] == '_' || strcmp(key, "source") == 0)
            continue;
        if (strcmp(key, "models") == 0) {
            models = v;
        } else if (strcmp(key, "default") == 0) {
            def = v;
        } else if (strcmp(key, "checked") == 0) {
            if (!json_object_is_type(v, json_type_string)) {
                set_err(errbuf, errlen, "%s: checked: must be a date string", name);
                err = ARS_ERR_CONFIG;
                goto out;
            }
            free(p->checked);
            if (!(p->checked = strdup(json_object_get_string(v)))) {
                err = ARS_ERR_NOMEM;
                goto out;
            }
        } else if (strcmp(key, "unit") == 0) {
            if (!json_object_is_type(v, json_type_string)
                || strcmp(json_object_get_string(v), UNIT_TEXT) != 0) {
                set_err(errbuf, errlen, "%s: unit: must be \"" UNIT_TEXT "\"", name);
                err = ARS_ERR_CONFIG;
                goto out;
            }
        } else {
            set_err(errbuf, errlen, "%s: unknown top-level field \"%.64s\"", name, key);
            err = ARS_ERR_CONFIG;
            goto out;
        }
    }
    if (!def) {
        set_err(errbuf, errlen, "%s: default: missing (the rates for models not in the table)", name);
        err = ARS_ERR_CONFIG;
        goto out;
    }
    if ((err = parse_model(name, "default", def, &p->def, 1, errbuf, errlen)))
        goto out;
    if (!models || !json_object_is_type(models, json_type_object)
        || json_object_object_length(models) == 0) {
        set_err(errbuf, errlen, "%s: models: must be a non-empty object of model id -> prices", name);
        err = ARS_ERR_CONFIG;
        goto out;
    }
    size_t n = (size_t)json_object_object_length(models);
    if (n > ARS_CAP_PRICING_MODELS) {
        set_err(errbuf, errlen, "%s: models: more than %d models", name, ARS_CAP_PRICING_MODELS);
        err = ARS_ERR_TOOBIG;
        goto out;
    }
    if (!(p->models = calloc(n, sizeof(*p->models)))) {
        err = ARS_ERR_NOMEM;
        goto out;
    }
    json_object_object_foreach(models, id, mv) {
        /* Keys starting with '_' are comments here too. */
        if (id[0] == '_')
            continue;
        if ((err = parse_model(name, id, mv, &p->models[p->n_models++], 0, errbuf, errlen)))
            goto out;
    }
    if (p->n_models == 0) {
        set_err(errbuf, errlen, "%s: models: no models", name);
        err = ARS_ERR_CONFIG;
        goto out;
    }
    err = check_unique(name, p, errbuf, errlen);

out:
    if (err == ARS_ERR_NOMEM)
        set_err(errbuf, errlen, "%s: out of memory", name);
    if (err) {
        ars_pricing_free(p);
        p = NULL;
    }
    json_object_put(root);
    json_tokener_free(tok);
    *out = p;
    return err;
}

enum ars_err ars_pricing_load(const char *path, struct ars_pricing **out, char *errbuf, size_t errlen)
{
    enum ars_err err = ARS_OK;
    char *text = NULL;
    size_t len = 0;

    *out = NULL;
    if (!path || !*path) {
        set_err(errbuf, errlen, "no pricing file configured");
        return ARS_ERR_CONFIG;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(errbuf, errlen, "%s: %s", path, strerror(errno));
        return ARS_ERR_IO;
    }
    /* Read at most one byte past the cap, to tell "at the cap" from "over". */
    if (!(text = malloc(ARS_CAP_PRICING_FILE + 1))) {
        err = ARS_ERR_NOMEM;
        set_err(errbuf, errlen, "%s: out of memory", path);
        goto out;
    }
    len = fread(text, 1, ARS_CAP_PRICING_FILE + 1, f);
    if (ferror(f)) {
        set_err(errbuf, errlen, "%s: read failed", path);
        err = ARS_ERR_IO;
        goto out;
    }
    err = ars_pricing_parse(path, text, len, out, errbuf, errlen);
out:
    free(text);
    fclose(f);
    return err;
}

static void free_model(struct ars_model_price *m)
{
    free(m->id);
    free(m->display_name);
    for (size_t i = 0; i < m->n_aliases; i++)
        free(m->aliases[i]);
    free(m->aliases);
}

void ars_pricing_free(struct ars_pricing *p)
{
    if (!p)
        return;
    free_model(&p->def);
    for (size_t i = 0; i < p->n_models; i++)
        free_model(&p->models[i]);
    free(p->models);
    free(p->checked);
    free(p);
}

/* ---- current table ------------------------------------------------------- */

/* Same pattern as the config: readers take the pointer without a lock;
 * replaced tables are kept on a list until exit (reloads are rare and a
 * table is a few KB). */
static _Atomic(struct ars_pricing *) current;
static struct retired { struct retired *next; struct ars_pricing *p; } *retired_list;
static pthread_mutex_t retired_lock = PTHREAD_MUTEX_INITIALIZER;

const struct ars_pricing *ars_pricing_current(void)
{
    return atomic_load(&current);
}

void ars_pricing_install(struct ars_pricing *p)
{
    struct ars_pricing *old = atomic_exchange(&current, p);
    if (!old)
        return;
    struct retired *r = malloc(sizeof(*r));
    pthread_mutex_lock(&retired_lock);
    if (r) {
        r->p = old;
        r->next = retired_list;
        retired_list = r;
    }
    /* Without memory for the record the old table leaks: safer than a free
     * under a reader. */
    pthread_mutex_unlock(&retired_lock);
}

void ars_pricing_release_all(void)
{
    pthread_mutex_lock(&retired_lock);
    while (retired_list) {
        struct retired *r = retired_list;
        retired_list = r->next;
        ars_pricing_free(r->p);
        free(r);
    }
    pthread_mutex_unlock(&retired_lock);
    ars_pricing_free(atomic_exchange(&current, NULL));
}

/* ---- lookup -------------------------------------------------------------- */

/* Unknown model names already logged. Clients choose the names, so both
 * the count and the stored length are bounded. */
static struct {
    pthread_mutex_t lock;
    size_t n;
    int full_noted;
    char names[ARS_PRICING_UNKNOWN_MEMORY][ARS_CAP_PRICING_ID + 1];
} unknown = { PTHREAD_MUTEX_INITIALIZER, 0, 0, { { 0 } } };

static void note_unknown(const char *model)
{
    size_t n = strnlen(model, ARS_CAP_PRICING_ID);
    int log_it = 0, log_full = 0;

    pthread_mutex_lock(&unknown.lock);
    size_t i;
    for (i = 0; i < unknown.n; i++)
        if (strncmp(unknown.names[i], model, n) == 0 && unknown.names[i][n] == '\0')
            break;
    if (i == unknown.n) {
        if (unknown.n < ARS_PRICING_UNKNOWN_MEMORY) {
            memcpy(unknown.names[unknown.n], model, n);
            unknown.names[unknown.n][n] = '\0';
            unknown.n++;
            log_it = 1;
        } else if (!unknown.full_noted) {
            unknown.full_noted = 1;
            log_full = 1;
        }
    }
    pthread_mutex_unlock(&unknown.lock);

    if (!log_it && !log_full)
        return;
    struct ars_logline l;
    ars_log_begin(&l, ARS_LOG_WARN, NULL, "pricing_unknown_model");
    ars_log_strn(&l, "model", model, n);
    ars_log_str(&l, "billed_as", "default");
    if (log_full)
        ars_log_str(&l, "note", "256 unknown models logged; further ones are billed at the "
                    "default without a log line");
    ars_log_end(&l);
}

enum ars_price_match ars_model_id_match(const char *id, const char *model)
{
    size_t n = strlen(id);
    if (strncasecmp(model, id, n) != 0)
        return ARS_PRICE_DEFAULT;
    if (model[n] == '\0')
        return ARS_PRICE_EXACT;
    return model[n] == '-' && model[n + 1] != '\0' ? ARS_PRICE_PREFIX : ARS_PRICE_DEFAULT;
}

/* The table entry of a model id, NULL for none (nothing logged). */
static const struct ars_model_price *find(const struct ars_pricing *p, const char *model,
                                          enum ars_price_match *how)
{
    const struct ars_model_price *best = NULL;
    size_t best_len = 0;
    /* Ids and aliases are unique across the table, so the first exact or
     * alias hit is the only one; prefixes need the whole scan. */
    for (size_t i = 0; i < p->n_models; i++) {
        const struct ars_model_price *m = &p->models[i];
        enum ars_price_match r = ars_model_id_match(m->id, model);
        if (r == ARS_PRICE_EXACT) {
            *how = ARS_PRICE_EXACT;
            return m;
        }
        if (r == ARS_PRICE_PREFIX && strlen(m->id) > best_len) {
            best = m;
            best_len = strlen(m->id);
        }
        for (size_t a = 0; a < m->n_aliases; a++) {
            if (ars_model_id_match(m->aliases[a], model) == ARS_PRICE_EXACT) {
                *how = ARS_PRICE_ALIAS;
                return m;
            }
        }
    }
    *how = best ? ARS_PRICE_PREFIX : ARS_PRICE_DEFAULT;
    return best;
}

const struct ars_model_price *ars_pricing_lookup(const struct ars_pricing *p, const char *model,
                                                 enum ars_price_match *how)
{
    enum ars_price_match h;
    if (!p)
        return NULL;
    if (!model)
        model = "";
    const struct ars_model_price *m = find(p, model, &h);
    if (!m) {
        note_unknown(model);
        m = &p->def;
    }
    if (how)
        *how = h;
    return m;
}

int ars_pricing_model_blocks(const struct ars_pricing *p, const char *blocked, const char *model)
{
    if (!blocked || !model)
        return 0;
    enum ars_price_match r = ars_model_id_match(blocked, model);
    if (r == ARS_PRICE_EXACT)
        return 1;
    enum ars_price_match how_b = ARS_PRICE_DEFAULT, how_m;
    const struct ars_model_price *eb = p ? find(p, blocked, &how_b) : NULL;
    if (eb && (how_b == ARS_PRICE_EXACT || how_b == ARS_PRICE_ALIAS))
        return find(p, model, &how_m) == eb;   /* the model itself, its aliases and dated ids */
    return r == ARS_PRICE_PREFIX;              /* a name the table does not know: a family prefix */
}

/* ---- cost ---------------------------------------------------------------- */

static i128 nonneg(long long v)
{
    return v > 0 ? (i128)v : 0;
}

const struct ars_rates *ars_pricing_rates_for(const struct ars_model_price *m,
                                              const struct ars_usage *u)
{
    if (u->fast && m->has_fast)
        return &m->fast;
    if (m->has_long_context) {
        i128 prompt = nonneg(u->input) + nonneg(u->cache_read) + nonneg(u->cache_write_5m)
                      + nonneg(u->cache_write_1h);
        if (prompt > (i128)m->long_context_threshold)
            return &m->long_context;
    }
    return &m->base;
}

long long ars_cost_micros(const struct ars_model_price *m, const struct ars_usage *u)
{
    if (!m || !u)
        return 0;
    const struct ars_rates *r = ars_pricing_rates_for(m, u);
    /* Each product is below 2^63 * 10^11 and the sum of five below 2^100:
     * no overflow in 128 bits. One rounding, at the end. */
    i128 sum = nonneg(u->input) * r->input
             + nonneg(u->output) * r->output
             + nonneg(u->cache_write_5m) * r->cache_write_5m
             + nonneg(u->cache_write_1h) * r->cache_write_1h
             + nonneg(u->cache_read) * r->cache_read;
    i128 micros = (sum + MICROS / 2) / MICROS;
    return micros > (i128)LLONG_MAX ? LLONG_MAX : (long long)micros;
}

/* ---- model list ---------------------------------------------------------- */

enum ars_err ars_pricing_models_json(const struct ars_pricing *p, struct json_object **list)
{
    *list = NULL;
    if (!p)
        return ARS_ERR_INVALID;
    struct json_object *arr = json_object_new_array();
    if (!arr)
        return ARS_ERR_NOMEM;
    for (size_t i = 0; i < p->n_models; i++) {
        const struct ars_model_price *m = &p->models[i];
        if (!m->list)
            continue;
        struct json_object *o = json_object_new_object();
        if (!o || json_object_array_add(arr, o)) {
            json_object_put(o);
            json_object_put(arr);
            return ARS_ERR_NOMEM;
        }
        /* o now belongs to arr; a value that fails to go in is ours. */
        struct json_object *id = json_object_new_string(m->id);
        if (!id || json_object_object_add(o, "id", id)) {
            json_object_put(id);
            json_object_put(arr);
            return ARS_ERR_NOMEM;
        }
        struct json_object *name = json_object_new_string(m->display_name);
        if (!name || json_object_object_add(o, "display_name", name)) {
            json_object_put(name);
            json_object_put(arr);
            return ARS_ERR_NOMEM;
        }
    }
    *list = arr;
    return ARS_OK;
}
