/* What the relay needs from a Messages request body, found without a full
 * JSON parse (a Claude Code body is ~75 KB; json-c would spend ~150 µs on
 * it, most of the relay's budget). The scanner walks the top-level object
 * once, skipping nested values by bracket depth, and keeps the spans of
 * the few members routing needs. The body itself goes upstream untouched
 * (unless an account maps the model name). Pure: no I/O. */
#ifndef ARS_RELAY_BODY_H
#define ARS_RELAY_BODY_H

#include <stddef.h>

#include "err.h"

#define ARS_BODY_MAX_DEPTH 128
#define ARS_BODY_MODEL_MAX 256
#define ARS_BODY_USER_ID_MAX 1024

struct ars_span {
    const char *p;   /* NULL: absent */
    size_t n;
};

struct ars_body_fields {
    char model[ARS_BODY_MODEL_MAX];
    struct ars_span model_value;    /* the string token, quotes included */
    int stream;                     /* "stream": true */
    char user_id[ARS_BODY_USER_ID_MAX];   /* metadata.user_id, "" when absent */
    struct ars_span system;         /* raw value */
    struct ars_span first_message;  /* raw first element of "messages" */
    size_t message_count;
};

/* ARS_ERR_INVALID with a client-facing message when the body is not a
 * JSON object, is malformed, or lacks a string "model" (required_model). */
enum ars_err ars_body_scan(const char *body, size_t len, int require_model, struct ars_body_fields *out,
                           char *errbuf, size_t errlen);

#endif
