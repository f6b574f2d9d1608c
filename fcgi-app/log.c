#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = ARS_LOG_INFO;
static atomic_int log_format = ARS_LOG_LOGFMT;
static atomic_int log_fd = 2;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void ars_log_setup(enum ars_log_level level, enum ars_log_format format)
{
    atomic_store(&log_level, (int)level);
    atomic_store(&log_format, (int)format);
}

void ars_log_set_fd(int fd)
{
    atomic_store(&log_fd, fd);
}

int ars_log_enabled(enum ars_log_level level)
{
    return (int)level >= atomic_load(&log_level);
}

static void put(struct ars_logline *l, const char *s, size_t n)
{
    /* Keep room for the truncation mark, closing brace and newline. */
    size_t room = sizeof(l->buf) - 24 - l->len;
    if (n > room) {
        n = room;
        l->truncated = 1;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void put_escaped(struct ars_logline *l, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n && !l->truncated; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char)c };
            put(l, e, 2);
        } else if (c == '\n') {
            put(l, "\\n", 2);
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            put(l, e, 6);
        } else {
            put(l, (const char *)&s[i], 1);
        }
    }
}

/* logfmt values need quotes only when they hold spaces, quotes or '='. */
static int needs_quotes(const char *s, size_t n)
{
    if (n == 0)
        return 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f)
            return 1;
    }
    return 0;
}

static void put_key(struct ars_logline *l, const char *key)
{
    if (l->format == ARS_LOG_JSON) {
        put(l, ",\"", 2);
        put_escaped(l, key, strlen(key));
        put(l, "\":", 2);
    } else {
        put(l, " ", 1);
        put(l, key, strlen(key));
        put(l, "=", 1);
    }
}

static void field_done(struct ars_logline *l)
{
    if (!l->truncated)
        l->field_end = l->len;
}

void ars_log_strn(struct ars_logline *l, const char *key, const char *value, size_t n)
{
    if (!l->active)
        return;
    put_key(l, key);
    if (!value) {
        put(l, l->format == ARS_LOG_JSON ? "null" : "\"\"", l->format == ARS_LOG_JSON ? 4 : 2);
    } else if (l->format == ARS_LOG_JSON || needs_quotes(value, n)) {
        put(l, "\"", 1);
        put_escaped(l, value, n);
        put(l, "\"", 1);
    } else {
        put(l, value, n);
    }
    field_done(l);
}

void ars_log_str(struct ars_logline *l, const char *key, const char *value)
{
    ars_log_strn(l, key, value, value ? strlen(value) : 0);
}

void ars_log_int(struct ars_logline *l, const char *key, long long value)
{
    if (!l->active)
        return;
    char num[32];
    int n = snprintf(num, sizeof(num), "%lld", value);
    put_key(l, key);
    put(l, num, (size_t)n);
    field_done(l);
}

void ars_log_double(struct ars_logline *l, const char *key, double value)
{
    if (!l->active)
        return;
    char num[48];
    int n = snprintf(num, sizeof(num), "%.3f", value);
    put_key(l, key);
    put(l, num, (size_t)n);
    field_done(l);
}

void ars_mask_secret(const char *value, char *out, size_t out_size)
{
    size_t n = value ? strlen(value) : 0;
    if (n == 0) {
        snprintf(out, out_size, "(unset)");
        return;
    }
    /* Short secrets show nothing; longer ones a 4-char prefix at most. */
    size_t show = n >= 16 ? 4 : 0;
    snprintf(out, out_size, "%.*s***(%zu chars)", (int)show, value, n);
}

void ars_log_secret(struct ars_logline *l, const char *key, const char *value)
{
    char masked[64];
    ars_mask_secret(value, masked, sizeof(masked));
    ars_log_str(l, key, masked);
}

void ars_log_begin(struct ars_logline *l, enum ars_log_level level,
                   const char *request_id, const char *event)
{
    l->len = 0;
    l->field_end = 0;
    l->truncated = 0;
    l->active = ars_log_enabled(level);
    if (!l->active)
        return;
    l->format = (enum ars_log_format)atomic_load(&log_format);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t wn = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + wn, sizeof(when) - wn, ".%03ldZ", ts.tv_nsec / 1000000);

    if (l->format == ARS_LOG_JSON) {
        put(l, "{\"time\":\"", 9);
        put(l, when, strlen(when));
        put(l, "\",\"level\":\"", 11);
        put(l, level_names[level], strlen(level_names[level]));
        put(l, "\"", 1);
    } else {
        put(l, "time=", 5);
        put(l, when, strlen(when));
        put(l, " level=", 7);
        put(l, level_names[level], strlen(level_names[level]));
    }
    if (request_id && *request_id)
        ars_log_str(l, "req_id", request_id);
    ars_log_str(l, "event", event);
}

void ars_log_end(struct ars_logline *l)
{
    if (!l->active)
        return;
    if (l->truncated) {
        /* Drop the field that did not fit whole, and say so. put() kept
         * room for the mark. */
        l->len = l->field_end;
        const char *mark = l->format == ARS_LOG_JSON ? ",\"truncated\":true" : " truncated=true";
        memcpy(l->buf + l->len, mark, strlen(mark));
        l->len += strlen(mark);
    }
    if (l->format == ARS_LOG_JSON)
        l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    ssize_t off = 0;
    int fd = atomic_load(&log_fd);
    while ((size_t)off < l->len) {
        ssize_t w = write(fd, l->buf + off, l->len - (size_t)off);
        if (w <= 0)
            break;
        off += w;
    }
}

void ars_log_msg(enum ars_log_level level, const char *request_id,
                 const char *event, const char *msg)
{
    struct ars_logline l;
    ars_log_begin(&l, level, request_id, event);
    if (msg)
        ars_log_str(&l, "msg", msg);
    ars_log_end(&l);
}
