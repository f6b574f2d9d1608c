/* Model prices and request cost (DESIGN §4 "Usage and cost").
 *
 * Prices come from conf/pricing.json (format in its "_comment"): per model
 * five explicit rates (input, output, 5-minute and 1-hour cache writes,
 * cache reads), optionally a long-context set that bills the whole request
 * when its prompt passes a threshold, and optionally a fast-mode set.
 * Rates are held as integer micro-dollars per million tokens, so a cost is
 * exact integer arithmetic with one rounding at the end, never a float.
 *
 * A loaded table is immutable. The process-wide current table is an atomic
 * pointer; SIGHUP loads a new table and installs it, old tables stay alive
 * until exit so a pointer taken at the start of a request is valid for all
 * of it (as fcgi-app/config.c does for the config). */
#ifndef ARS_PRICING_H
#define ARS_PRICING_H

#include <stddef.h>

#include "err.h"

struct json_object;

/* Caps on the pricing file (everything in it is operator-controlled, but a
 * wrong path or a runaway generator must fail cleanly). */
#define ARS_CAP_PRICING_FILE        (1024 * 1024)
#define ARS_CAP_PRICING_MODELS      1024
#define ARS_CAP_PRICING_ALIASES     64        /* per model */
#define ARS_CAP_PRICING_ID          128       /* bytes of a model id or alias */
/* Highest accepted rate: 100000 USD per million tokens. */
#define ARS_PRICING_MAX_RATE        100000000000LL   /* micro-USD per MTok */
/* Unknown model names remembered (each logged once); further ones are
 * billed at the default without a log line. */
#define ARS_PRICING_UNKNOWN_MEMORY  256

/* One rate set, micro-USD per million tokens (5 USD/MTok = 5000000). */
struct ars_rates {
    long long input;
    long long output;
    long long cache_write_5m;
    long long cache_write_1h;
    long long cache_read;
};

struct ars_model_price {
    char *id;                  /* "default" for the default entry */
    char *display_name;        /* NULL for the default entry */
    int list;                  /* shown by GET /v1/models */
    struct ars_rates base;
    int has_long_context;
    long long long_context_threshold;   /* tokens; the set applies above it */
    struct ars_rates long_context;
    int has_fast;
    struct ars_rates fast;
    char **aliases;
    size_t n_aliases;
};

struct ars_pricing {
    struct ars_model_price def;        /* for models not in the table */
    struct ars_model_price *models;    /* file order */
    size_t n_models;
    char *checked;                     /* "checked" date from the file, or NULL */
};

/* Token counts of one request, as the upstream reported them.
 * cache_write_5m / cache_write_1h are the ephemeral_5m_input_tokens /
 * ephemeral_1h_input_tokens split of usage.cache_creation. An upstream that
 * reports only cache_creation_input_tokens, without the split, is billed as
 * all 5-minute writes: the caller puts the whole count in cache_write_5m.
 * Callers cap each count at 10^9; negative counts are treated as 0. */
struct ars_usage {
    long long input;
    long long output;
    long long cache_write_5m;
    long long cache_write_1h;
    long long cache_read;
    int fast;                  /* usage.speed == "fast" */
};

enum ars_price_match {
    ARS_PRICE_EXACT,           /* the id itself */
    ARS_PRICE_ALIAS,           /* one of a model's "aliases" */
    ARS_PRICE_PREFIX,          /* family prefix, e.g. a dated id */
    ARS_PRICE_DEFAULT          /* unknown model: the default rates */
};

/* Reads and validates a pricing file. On failure *out is NULL and errbuf
 * holds one line naming the file and, for a bad rate, the model and field
 * ("model \"claude-opus-5\": cache_read: ..."). */
ARS_MUST_USE enum ars_err ars_pricing_load(const char *path, struct ars_pricing **out,
                              char *errbuf, size_t errlen);
/* Same, from JSON text already in memory (tests, ai-relayctl). `name`
 * stands for the file in error messages. */
ARS_MUST_USE enum ars_err ars_pricing_parse(const char *name, const char *text, size_t len,
                               struct ars_pricing **out, char *errbuf, size_t errlen);
void ars_pricing_free(struct ars_pricing *p);

/* Process-wide current table (NULL until the first install). */
const struct ars_pricing *ars_pricing_current(void);
/* Makes p current; the table it replaces is kept until release_all. */
void ars_pricing_install(struct ars_pricing *p);
/* Frees the current and every replaced table: only at exit. */
void ars_pricing_release_all(void);

/* The one model-id matcher, shared by the price lookup and the keys'
 * model blacklist (ars_pricing_model_blocks): ASCII case-insensitive;
 * ARS_PRICE_EXACT when `model` is `id`, ARS_PRICE_PREFIX when it is `id`
 * followed by '-' and more (a dated id of the family: "claude-haiku-4-5"
 * and "claude-haiku-4-5-20251001", but not "claude-opus-5" and
 * "claude-opus-50"), else ARS_PRICE_DEFAULT (no match). */
enum ars_price_match ars_model_id_match(const char *id, const char *model);

/* Price of a model id, with ars_model_id_match: exact id, then aliases,
 * then the longest id that is a prefix of `model` followed by '-', else
 * the default. An unknown model is logged once per name (event
 * pricing_unknown_model). Never NULL for a loaded table; `how` may be NULL.
 * Lock-free except on the unknown-model path. */
const struct ars_model_price *ars_pricing_lookup(const struct ars_pricing *p, const char *model,
                                                 enum ars_price_match *how);

/* 1 when a key's blacklist entry `blocked` blocks `model`, with the
 * table's matching: the same name (any case); when `blocked` is a priced
 * model's id or alias, every name the table resolves to that model (its
 * aliases and dated ids, so "claude-opus-4-1" blocks
 * "claude-opus-4-1-20250805" but not "claude-opus-4-5", a model of its
 * own); when the table does not know `blocked` (p NULL, an unknown name or
 * one dated id), `blocked` followed by '-' and more. Nothing logged. */
int ars_pricing_model_blocks(const struct ars_pricing *p, const char *blocked, const char *model);

/* The rate set one request is billed at: fast when u->fast and the model
 * has a fast set; else long_context when input + cache_read + both cache
 * writes is greater than its threshold; else the base set. */
const struct ars_rates *ars_pricing_rates_for(const struct ars_model_price *m,
                                              const struct ars_usage *u);

/* Cost of one request in micro-USD: sum over token kinds of tokens * rate,
 * divided by 10^6 once, rounding half up. Exact; saturates at LLONG_MAX
 * instead of wrapping. 0 when m or u is NULL. */
long long ars_cost_micros(const struct ars_model_price *m, const struct ars_usage *u);

/* New JSON array of the listable models, file order:
 * [{"id": ..., "display_name": ...}, ...]. The caller puts it. */
ARS_MUST_USE enum ars_err ars_pricing_models_json(const struct ars_pricing *p, struct json_object **list);

#endif
