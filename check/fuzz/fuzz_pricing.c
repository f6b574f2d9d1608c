/* libFuzzer target for the pricing table loader and lookups
 * (handlers/relay/pricing.c: ars_pricing_parse, ars_pricing_lookup,
 * ars_cost_micros, ars_pricing_models_json). Build and run:
 * check/fuzz/README.md, scripts/fuzz.
 *
 * Input: the pricing JSON up to the first NUL byte; after it, model names
 * to look up, one per line (the first 40 bytes after the NUL are also
 * read as five token counts). Checked against pricing.h:
 * - the result is OK, CONFIG or NOMEM; a failure leaves *out NULL and one
 *   non-empty line in errbuf that names the file; parsing twice agrees;
 * - a loaded table stays within its caps (models, aliases, id bytes) with
 *   every rate in 0..ARS_PRICING_MAX_RATE;
 * - every id is found as itself (EXACT, or an ALIAS an earlier model
 *   claims), every alias as EXACT or ALIAS, every "<id>-20250101" never
 *   falls back to the default; any name gets a price;
 * - costs are never negative, zero tokens cost nothing, and the model
 *   list has one entry per listed model.
 * A broken invariant aborts with __builtin_trap. */
#include <fcntl.h>
#include <json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "pricing.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_LOOKUPS 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Unknown models are logged (once each): formatted, not shown. */
    int devnull = open("/dev/null", O_WRONLY);
    CHECK(devnull >= 0);
    ars_log_set_fd(devnull);
    ars_log_setup(ARS_LOG_DEBUG, ARS_LOG_JSON);
    return 0;
}

static void check_rates(const struct ars_rates *r)
{
    const long long v[5] = { r->input, r->output, r->cache_write_5m, r->cache_write_1h, r->cache_read };
    for (int i = 0; i < 5; i++)
        CHECK(v[i] >= 0 && v[i] <= ARS_PRICING_MAX_RATE);
}

static void check_model(const struct ars_model_price *m)
{
    CHECK(m->id && strlen(m->id) <= ARS_CAP_PRICING_ID);
    check_rates(&m->base);
    if (m->has_long_context) {
        check_rates(&m->long_context);
        CHECK(m->long_context_threshold >= 0);
    }
    if (m->has_fast)
        check_rates(&m->fast);
    CHECK(m->n_aliases <= ARS_CAP_PRICING_ALIASES);
    for (size_t a = 0; a < m->n_aliases; a++)
        CHECK(m->aliases[a] && strlen(m->aliases[a]) <= ARS_CAP_PRICING_ID);
}

static void check_cost(const struct ars_model_price *m, const struct ars_usage *u)
{
    CHECK(ars_pricing_rates_for(m, u) != NULL);
    CHECK(ars_cost_micros(m, u) >= 0);
    struct ars_usage zero = { 0, 0, 0, 0, 0, u->fast };
    CHECK(ars_cost_micros(m, &zero) == 0);
}

static int in_table(const struct ars_pricing *p, const struct ars_model_price *m)
{
    if (m == &p->def)
        return 1;
    return m >= p->models && m < p->models + p->n_models;
}

static void check_table(const struct ars_pricing *p, const char *names, size_t nlen, const struct ars_usage *u)
{
    CHECK(p->n_models >= 1 && p->n_models <= ARS_CAP_PRICING_MODELS);
    check_rates(&p->def.base);
    size_t listed = 0;
    for (size_t i = 0; i < p->n_models; i++) {
        const struct ars_model_price *m = &p->models[i];
        check_model(m);
        listed += m->list != 0;
        enum ars_price_match how;
        const struct ars_model_price *found = ars_pricing_lookup(p, m->id, &how);
        CHECK(found == m ? how == ARS_PRICE_EXACT : how == ARS_PRICE_ALIAS || how == ARS_PRICE_EXACT);
        for (size_t a = 0; a < m->n_aliases; a++) {
            found = ars_pricing_lookup(p, m->aliases[a], &how);
            CHECK(in_table(p, found) && (how == ARS_PRICE_EXACT || how == ARS_PRICE_ALIAS));
        }
        char dated[ARS_CAP_PRICING_ID + 16];
        snprintf(dated, sizeof(dated), "%s-20250101", m->id);
        found = ars_pricing_lookup(p, dated, &how);
        CHECK(how != ARS_PRICE_DEFAULT && found != &p->def);
        check_cost(m, u);
    }
    check_cost(&p->def, u);

    /* Names from the input, one per line. */
    char name[512];
    size_t looked = 0;
    for (size_t i = 0; i < nlen && looked < MAX_LOOKUPS;) {
        const char *nl = memchr(names + i, '\n', nlen - i);
        size_t len = nl ? (size_t)(nl - (names + i)) : nlen - i;
        if (len < sizeof(name) && !memchr(names + i, '\0', len)) {
            memcpy(name, names + i, len);
            name[len] = '\0';
            enum ars_price_match how;
            const struct ars_model_price *found = ars_pricing_lookup(p, name, &how);
            CHECK(found && in_table(p, found));
            CHECK((how == ARS_PRICE_DEFAULT) == (found == &p->def));
            check_cost(found, u);
            looked++;
        }
        i += len + 1;
    }

    struct json_object *list = NULL;
    CHECK(ars_pricing_models_json(p, &list) == ARS_OK && list);
    CHECK(json_object_is_type(list, json_type_array) && json_object_array_length(list) == listed);
    json_object_put(list);
}

static long long read_i64(const unsigned char *p)
{
    unsigned long long v = 0;
    for (int i = 0; i < 8; i++)
        v |= (unsigned long long)p[i] << (8 * i);
    return (long long)v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    size_t tlen = nul ? (size_t)(nul - text) : size;
    const char *names = nul ? nul + 1 : text + size;
    size_t nlen = nul ? size - tlen - 1 : 0;

    struct ars_usage u = { 1000, 500, 200, 100, 3000, 0 };
    if (nlen >= 40) {
        const unsigned char *b = (const unsigned char *)names;
        u = (struct ars_usage){ read_i64(b), read_i64(b + 8), read_i64(b + 16), read_i64(b + 24),
                                read_i64(b + 32), (int)(b[0] & 1) };
    }

    struct ars_pricing *p1 = (struct ars_pricing *)1, *p2 = (struct ars_pricing *)1;
    char err1[512], err2[512];
    err1[0] = err2[0] = '\0';
    enum ars_err e1 = ars_pricing_parse("fuzz.json", text, tlen, &p1, err1, sizeof(err1));
    enum ars_err e2 = ars_pricing_parse("fuzz.json", text, tlen, &p2, err2, sizeof(err2));
    CHECK(e1 == e2);
    if (e1 == ARS_OK) {
        CHECK(p1 && p1 != (struct ars_pricing *)1 && p2 && p2 != (struct ars_pricing *)1);
        CHECK(p1->n_models == p2->n_models);
        check_table(p1, names, nlen, &u);
    } else {
        CHECK(e1 == ARS_ERR_CONFIG || e1 == ARS_ERR_NOMEM);
        CHECK(p1 == NULL && p2 == NULL);
        CHECK(strcmp(err1, err2) == 0);
        if (e1 == ARS_ERR_CONFIG)
            CHECK(err1[0] && !strchr(err1, '\n') && strstr(err1, "fuzz.json"));
    }
    ars_pricing_free(p1 == (struct ars_pricing *)1 ? NULL : p1);
    ars_pricing_free(p2 == (struct ars_pricing *)1 ? NULL : p2);
    return 0;
}
