/* One line per event to stderr, JSON or logfmt: level, time, request id,
 * event name, then fields. Lines are built in a fixed buffer and written
 * with one write(2), so lines from different threads never interleave.
 * Secrets go through ars_log_secret, which masks them. */
#ifndef ARS_LOG_H
#define ARS_LOG_H

#include <stddef.h>

#include "caps.h"

enum ars_log_level { ARS_LOG_DEBUG, ARS_LOG_INFO, ARS_LOG_WARN, ARS_LOG_ERROR };
enum ars_log_format { ARS_LOG_LOGFMT, ARS_LOG_JSON };

void ars_log_setup(enum ars_log_level level, enum ars_log_format format);
int ars_log_enabled(enum ars_log_level level);
/* Optional fd (default 2); the tests point it at a pipe. */
void ars_log_set_fd(int fd);

struct ars_logline {
    char buf[ARS_CAP_LOG_LINE];
    size_t len;
    size_t field_end;    /* length after the last complete field */
    int truncated;
    int active;          /* 0 when the level is filtered out */
    enum ars_log_format format;
};

void ars_log_begin(struct ars_logline *l, enum ars_log_level level,
                   const char *request_id, const char *event);
void ars_log_str(struct ars_logline *l, const char *key, const char *value);
void ars_log_strn(struct ars_logline *l, const char *key, const char *value, size_t n);
void ars_log_int(struct ars_logline *l, const char *key, long long value);
void ars_log_double(struct ars_logline *l, const char *key, double value);
/* Logs only a short prefix and the length: "cr_1a2b…(67)". */
void ars_log_secret(struct ars_logline *l, const char *key, const char *value);
void ars_log_end(struct ars_logline *l);

/* Shorthand for a line with just a message. */
void ars_log_msg(enum ars_log_level level, const char *request_id,
                 const char *event, const char *msg);

/* Masks a secret into out (at most 4 visible characters). */
void ars_mask_secret(const char *value, char *out, size_t out_size);

#endif
