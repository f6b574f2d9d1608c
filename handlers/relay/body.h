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
#define ARS_BODY_MODEL_MAX 256          /* a longer model name is refused (400) */
#define ARS_BODY_USER_ID_MAX 1024
/* Top-level members are compared after decoding escapes, so a repeated
 * member is refused however it is spelled (the relay and the upstream's
 * parser would read different values). The Messages API has ~25 top-level
 * parameters and OpenAI's Chat Completions ~35, the longest name 22 bytes:
 * 128 members of at most 64 bytes is room for both, 8 KiB on the stack. */
#define ARS_BODY_MAX_MEMBERS 128
#define ARS_BODY_MEMBER_NAME_MAX 64
/* max_tokens above this is refused (400): the largest output a Claude
 * model offers today is 128000 tokens (with the output-128k beta); 10^6
 * leaves room for new models and keeps 64-bit counts out of the relay. */
#define ARS_BODY_MAX_TOKENS_CAP 1000000LL

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
    long long max_tokens;           /* 0 when absent */
};

/* ARS_ERR_INVALID with a client-facing message when the body is not a
 * JSON object, is malformed (escapes included), repeats a top-level
 * member (names compared after decoding escapes; nested objects are not
 * checked, they are the upstream's business), has a "max_tokens" that is
 * not an integer from 1 to ARS_BODY_MAX_TOKENS_CAP, a "model" longer than
 * ARS_BODY_MODEL_MAX - 1 bytes or with control characters, or lacks a
 * string "model" (require_model). The OpenAI route runs it over the
 * client's body too (require_model 0), before converting it. */
ARS_MUST_USE enum ars_err ars_body_scan(const char *body, size_t len, int require_model, struct ars_body_fields *out,
                           char *errbuf, size_t errlen);

/* Only the top-level member rule of ars_body_scan (names decoded, each
 * at most once, at most ARS_BODY_MAX_MEMBERS of ARS_BODY_MEMBER_NAME_MAX
 * bytes) over any JSON object: the OpenAI route runs it over the client's
 * body, which json-c would otherwise read last-member-wins. */
ARS_MUST_USE enum ars_err ars_body_check_members(const char *body, size_t len, char *errbuf, size_t errlen);

#endif
