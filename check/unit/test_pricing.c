/* Pricing table and request cost: the shipped conf/pricing.json, model
 * matching, exact integer cost, long-context and fast sets, bad files. */
#include <check.h>
#include "plan.h"
#include <json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "keys.h"
#include "pricing.h"

static char err[512];

/* The shipped file: $ARS_PRICING_FILE, else $top_srcdir/conf/pricing.json,
 * else conf/pricing.json (run from the source tree). */
static const char *real_path(void)
{
    static char path[4096];
    const char *f = getenv("ARS_PRICING_FILE");
    if (f && *f)
        return f;
    const char *top = getenv("top_srcdir");
    if (top && *top) {
        snprintf(path, sizeof(path), "%s/conf/pricing.json", top);
        return path;
    }
    return "conf/pricing.json";
}

static struct ars_pricing *load_real(void)
{
    struct ars_pricing *p = NULL;
    err[0] = '\0';
    enum ars_err rc = ars_pricing_load(real_path(), &p, err, sizeof(err));
    ck_assert_msg(rc == ARS_OK, "%s does not load: %s", real_path(), err);
    return p;
}

static struct ars_pricing *parse(const char *text, enum ars_err *rc)
{
    struct ars_pricing *p = NULL;
    err[0] = '\0';
    *rc = ars_pricing_parse("test.json", text, strlen(text), &p, err, sizeof(err));
    return p;
}

static struct ars_pricing *parse_ok(const char *text)
{
    enum ars_err rc;
    struct ars_pricing *p = parse(text, &rc);
    ck_assert_msg(rc == ARS_OK && p, "rejected: %s", err);
    return p;
}

/* Asserts that `text` is rejected and the message names everything in `needles`. */
static void assert_rejected(const char *text, const char *const *needles)
{
    enum ars_err rc;
    struct ars_pricing *p = parse(text, &rc);
    ck_assert_ptr_null(p);
    ck_assert_int_ne(rc, ARS_OK);
    for (; *needles; needles++)
        ck_assert_msg(strstr(err, *needles), "error \"%s\" does not mention \"%s\"", err, *needles);
}

static char *write_temp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/ars-test-pricing-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static const struct ars_model_price *must_find(const struct ars_pricing *p, const char *id)
{
    enum ars_price_match how;
    const struct ars_model_price *m = ars_pricing_lookup(p, id, &how);
    ck_assert_msg(how == ARS_PRICE_EXACT, "%s is not in the table", id);
    return m;
}

static long long cost(const struct ars_model_price *m, long long in, long long out, long long w5,
                      long long w1, long long rd, int fast)
{
    struct ars_usage u = { in, out, w5, w1, rd, fast };
    return ars_cost_micros(m, &u);
}

/* Runs fn with the log going to a pipe; returns what was logged. */
static char logbuf[65536];
static const char *capture_log(void (*fn)(void *), void *arg)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    ars_log_set_fd(fds[1]);
    ars_log_setup(ARS_LOG_INFO, ARS_LOG_LOGFMT);
    fn(arg);
    close(fds[1]);
    ars_log_set_fd(2);
    ars_log_setup(ARS_LOG_ERROR, ARS_LOG_LOGFMT);
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(logbuf) - 1 && (n = read(fds[0], logbuf + len, sizeof(logbuf) - 1 - len)) > 0)
        len += (size_t)n;
    close(fds[0]);
    logbuf[len] = '\0';
    return logbuf;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *s = hay; (s = strstr(s, needle)); s += strlen(needle))
        n++;
    return n;
}

#define RATES(i, o, w5, w1, r) \
    "\"input\":" i ",\"output\":" o ",\"cache_write_5m\":" w5 ",\"cache_write_1h\":" w1 \
    ",\"cache_read\":" r
#define DEFAULT_SET "\"default\":{" RATES("15", "75", "18.75", "30", "1.5") "}"

/* ---- the shipped file ---------------------------------------------------- */

static void assert_set_positive(const char *id, const char *which, const struct ars_rates *r)
{
    ck_assert_msg(r->input > 0 && r->output > 0 && r->cache_write_5m > 0 && r->cache_write_1h > 0
                  && r->cache_read > 0, "%s: %s set has a zero rate", id, which);
}

START_TEST(shipped_file_loads_and_every_model_has_all_five_rates)
{
    struct ars_pricing *p = load_real();
    ck_assert_uint_ge(p->n_models, 10);
    ck_assert_ptr_nonnull(p->checked);
    ck_assert_str_eq(p->checked, "2026-11-26");
    for (size_t i = 0; i < p->n_models; i++) {
        const struct ars_model_price *m = &p->models[i];
        ck_assert_ptr_nonnull(m->display_name);
        assert_set_positive(m->id, "base", &m->base);
        if (m->has_long_context) {
            ck_assert_int_gt(m->long_context_threshold, 0);
            assert_set_positive(m->id, "long_context", &m->long_context);
        }
        if (m->has_fast)
            assert_set_positive(m->id, "fast", &m->fast);
    }
    ars_pricing_free(p);
}
END_TEST

static void assert_covers(const struct ars_rates *def, const struct ars_rates *r, const char *id)
{
    ck_assert_msg(def->input >= r->input && def->output >= r->output
                  && def->cache_write_5m >= r->cache_write_5m && def->cache_write_1h >= r->cache_write_1h
                  && def->cache_read >= r->cache_read,
                  "default is cheaper than %s in some field", id);
}

START_TEST(shipped_default_is_the_most_expensive_rate_so_unknown_models_are_never_under_billed)
{
    struct ars_pricing *p = load_real();
    long long max_input = 0;
    ck_assert(p->def.has_fast);
    for (size_t i = 0; i < p->n_models; i++) {
        const struct ars_model_price *m = &p->models[i];
        if (m->base.input > max_input)
            max_input = m->base.input;
        assert_covers(&p->def.base, &m->base, m->id);
        if (m->has_long_context)
            assert_covers(&p->def.base, &m->long_context, m->id);
        if (m->has_fast)
            assert_covers(&p->def.fast, &m->fast, m->id);
    }
    ck_assert_int_eq(p->def.base.input, max_input);   /* the most expensive input rate */
    ars_pricing_free(p);
}
END_TEST

START_TEST(shipped_rates_are_the_published_per_model_numbers_in_micro_dollars)
{
    struct ars_pricing *p = load_real();
    const struct ars_model_price *m = must_find(p, "claude-opus-5");
    ck_assert_int_eq(m->base.input, 5000000);
    ck_assert_int_eq(m->base.output, 25000000);
    ck_assert_int_eq(m->base.cache_write_5m, 6250000);
    ck_assert_int_eq(m->base.cache_write_1h, 10000000);
    ck_assert_int_eq(m->base.cache_read, 500000);
    /* Cache-read ratios differ between models: 0.05x and 0.025x here. */
    ck_assert_int_eq(must_find(p, "claude-opus-5-5")->base.cache_read, 200000);
    ck_assert_int_eq(must_find(p, "claude-fable-5-1")->base.cache_read, 250000);
    m = must_find(p, "claude-haiku-5-5");
    ck_assert_int_eq(m->base.input, 100000);
    ck_assert_int_eq(m->base.cache_write_5m, 125000);
    ck_assert_int_eq(m->base.cache_read, 10000);
    ck_assert(m->has_long_context);
    ck_assert_int_eq(m->long_context_threshold, 100000);
    ck_assert_int_eq(m->long_context.input, 500000);
    ars_pricing_free(p);
}
END_TEST

START_TEST(shipped_model_list_holds_current_models_in_file_order_and_hides_retired_ones)
{
    struct ars_pricing *p = load_real();
    json_object *list = NULL;
    ck_assert_int_eq(ars_pricing_models_json(p, &list), ARS_OK);
    size_t n = json_object_array_length(list), next = 0;
    int saw_opus55 = 0;
    ck_assert_uint_gt(n, 0);
    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(list, i), *id, *name;
        ck_assert(json_object_object_get_ex(o, "id", &id));
        ck_assert(json_object_object_get_ex(o, "display_name", &name));
        ck_assert_uint_eq(json_object_object_length(o), 2);
        const char *s = json_object_get_string(id);
        ck_assert_str_ne(s, "claude-opus-4-1");
        ck_assert_str_ne(s, "claude-3-5-haiku");
        saw_opus55 |= strcmp(s, "claude-opus-5-5") == 0;
        /* file order: the next listed model in the table */
        while (next < p->n_models && !p->models[next].list)
            next++;
        ck_assert_uint_lt(next, p->n_models);
        ck_assert_str_eq(s, p->models[next].id);
        ck_assert_str_eq(json_object_get_string(name), p->models[next].display_name);
        next++;
    }
    ck_assert(saw_opus55);
    json_object_put(list);
    ars_pricing_free(p);
}
END_TEST

/* ---- matching ------------------------------------------------------------ */

static const char matching_file[] =
    "{\"unit\":\"USD per million tokens\"," DEFAULT_SET ",\"models\":{"
    "\"claude-opus-4\":{\"display_name\":\"O4\",\"list\":false," RATES("15", "75", "18.75", "30", "1.5") "},"
    "\"claude-opus-4-5\":{\"display_name\":\"O45\",\"list\":true," RATES("5", "25", "6.25", "10", "0.5") "},"
    "\"claude-opus-5\":{\"display_name\":\"O5\",\"list\":true," RATES("5", "25", "6.25", "10", "0.5") "},"
    "\"claude-opus-5-5\":{\"display_name\":\"O55\",\"list\":true," RATES("4", "20", "5", "8", "0.2") "},"
    "\"claude-sonnet-4-0\":{\"display_name\":\"S4\",\"list\":false,\"aliases\":[\"claude-sonnet-4-20250514\"],"
    RATES("3", "15", "3.75", "6", "0.3") "}}}";

START_TEST(exact_id_wins_over_a_shorter_family_prefix)
{
    struct ars_pricing *p = parse_ok(matching_file);
    enum ars_price_match how;
    const struct ars_model_price *m = ars_pricing_lookup(p, "claude-opus-5-5", &how);
    ck_assert_int_eq(how, ARS_PRICE_EXACT);
    ck_assert_str_eq(m->id, "claude-opus-5-5");
    m = ars_pricing_lookup(p, "claude-opus-5", &how);
    ck_assert_int_eq(how, ARS_PRICE_EXACT);
    ck_assert_str_eq(m->id, "claude-opus-5");
    ars_pricing_free(p);
}
END_TEST

START_TEST(alias_matches_exactly)
{
    struct ars_pricing *p = parse_ok(matching_file);
    enum ars_price_match how;
    const struct ars_model_price *m = ars_pricing_lookup(p, "claude-sonnet-4-20250514", &how);
    ck_assert_int_eq(how, ARS_PRICE_ALIAS);
    ck_assert_str_eq(m->id, "claude-sonnet-4-0");
    ars_pricing_free(p);
}
END_TEST

START_TEST(dated_id_matches_the_longest_family_prefix)
{
    struct ars_pricing *p = parse_ok(matching_file);
    enum ars_price_match how;
    const struct ars_model_price *m = ars_pricing_lookup(p, "claude-opus-4-5-20251101", &how);
    ck_assert_int_eq(how, ARS_PRICE_PREFIX);
    ck_assert_str_eq(m->id, "claude-opus-4-5");   /* not the $15 claude-opus-4 */
    m = ars_pricing_lookup(p, "claude-opus-4-20250514", &how);
    ck_assert_int_eq(how, ARS_PRICE_PREFIX);
    ck_assert_str_eq(m->id, "claude-opus-4");
    ars_pricing_free(p);

    p = load_real();
    m = ars_pricing_lookup(p, "claude-haiku-4-5-20251001", &how);
    ck_assert_int_eq(how, ARS_PRICE_PREFIX);
    ck_assert_str_eq(m->id, "claude-haiku-4-5");
    ck_assert_int_eq(m->base.input, 1000000);
    m = ars_pricing_lookup(p, "claude-sonnet-4-5-20250929", &how);
    ck_assert_int_eq(how, ARS_PRICE_PREFIX);
    ck_assert_str_eq(m->id, "claude-sonnet-4-5");
    ars_pricing_free(p);
}
END_TEST

START_TEST(prefix_not_at_a_dash_boundary_does_not_match)
{
    struct ars_pricing *p = parse_ok(matching_file);
    enum ars_price_match how;
    const char *const names[] = { "claude-opus-50", "claude-opus-5x", "claude-opus-5_5", "claude-opus",
                                  "claude-opus-5-", "", NULL };
    for (const char *const *n = names; *n; n++) {
        const struct ars_model_price *m = ars_pricing_lookup(p, *n, &how);
        ck_assert_msg(how == ARS_PRICE_DEFAULT, "\"%s\" matched %s", *n, m->id);
        ck_assert_ptr_eq(m, &p->def);
    }
    ars_pricing_free(p);
}
END_TEST

START_TEST(matching_ignores_case_as_the_blacklist_does)
{
    struct ars_pricing *p = parse_ok(matching_file);
    enum ars_price_match how;
    const struct ars_model_price *m = ars_pricing_lookup(p, "Claude-Opus-5", &how);
    ck_assert_int_eq(how, ARS_PRICE_EXACT);
    ck_assert_str_eq(m->id, "claude-opus-5");
    m = ars_pricing_lookup(p, "CLAUDE-SONNET-4-20250514", &how);
    ck_assert_int_eq(how, ARS_PRICE_ALIAS);
    m = ars_pricing_lookup(p, "claude-OPUS-5-5-20990101", &how);
    ck_assert_int_eq(how, ARS_PRICE_PREFIX);
    ck_assert_str_eq(m->id, "claude-opus-5-5");
    ars_pricing_free(p);
}
END_TEST

START_TEST(blacklist_entry_blocks_the_model_its_dated_ids_and_aliases_in_any_case)
{
    struct ars_pricing *p = load_real();
    /* a priced model: itself, dated ids, any case */
    ck_assert(ars_pricing_model_blocks(p, "claude-opus-4-1", "claude-opus-4-1"));
    ck_assert(ars_pricing_model_blocks(p, "claude-opus-4-1", "claude-opus-4-1-20250805"));
    ck_assert(ars_pricing_model_blocks(p, "claude-opus-4-1", "Claude-Opus-4-1-20250805"));
    ck_assert(ars_pricing_model_blocks(p, "CLAUDE-OPUS-4-1", "claude-opus-4-1-20250805"));
    /* aliases, both ways */
    ck_assert(ars_pricing_model_blocks(p, "claude-opus-4-0", "claude-opus-4-20250514"));
    ck_assert(ars_pricing_model_blocks(p, "claude-opus-4-20250514", "claude-opus-4-0"));
    ck_assert(ars_pricing_model_blocks(p, "claude-3-5-haiku", "claude-3-5-haiku-latest"));
    /* other models stay allowed, even when their id starts with the blocked one */
    ck_assert(!ars_pricing_model_blocks(p, "claude-opus-4-1", "claude-opus-4-5"));
    ck_assert(!ars_pricing_model_blocks(p, "claude-opus-4-1", "claude-opus-4-5-20251101"));
    ck_assert(!ars_pricing_model_blocks(p, "claude-opus-4-1", "claude-haiku-4-5"));
    ck_assert(!ars_pricing_model_blocks(p, "claude-opus-4-1", "claude-opus-4-10"));
    ck_assert(!ars_pricing_model_blocks(p, "claude-haiku-4-5", "claude-opus-4-1"));
    /* a name the table does not know blocks itself and its dash-suffixed family */
    ck_assert(ars_pricing_model_blocks(p, "gpt-relay-test-x", "GPT-relay-test-x"));
    ck_assert(ars_pricing_model_blocks(p, "gpt-relay-test-x", "gpt-relay-test-x-2025"));
    ck_assert(!ars_pricing_model_blocks(p, "gpt-relay-test-x", "gpt-relay-test-xy"));
    /* one dated id blocks that snapshot, not the model's alias */
    ck_assert(ars_pricing_model_blocks(p, "claude-opus-4-1-20250805", "claude-opus-4-1-20250805"));
    ck_assert(!ars_pricing_model_blocks(p, "claude-opus-4-1-20250805", "claude-opus-4-1"));
    /* without a table: the same matcher, names only */
    ck_assert(ars_pricing_model_blocks(NULL, "claude-opus-4-1", "claude-opus-4-1-20250805"));
    ck_assert(!ars_pricing_model_blocks(NULL, "claude-opus-4-1", "claude-opus-4-10"));
    ars_pricing_free(p);
}
END_TEST

START_TEST(key_blacklist_uses_the_pricing_match)
{
    ars_pricing_install(load_real());
    char *models[] = { "claude-opus-4-1", NULL };
    struct ars_key k;
    memset(&k, 0, sizeof(k));
    k.restricted_models = models;
    ck_assert(ars_key_model_blocked(&k, "claude-opus-4-1-20250805"));
    ck_assert(ars_key_model_blocked(&k, "CLAUDE-OPUS-4-1"));
    ck_assert(!ars_key_model_blocked(&k, "claude-haiku-4-5"));
    ck_assert(!ars_key_model_blocked(&k, "claude-opus-4-5"));
    ars_pricing_release_all();
}
END_TEST

static void lookup_unknown_twice(void *arg)
{
    const struct ars_pricing *p = arg;
    enum ars_price_match how;
    ars_pricing_lookup(p, "gpt-relay-test-unknown-1", &how);
    ars_pricing_lookup(p, "gpt-relay-test-unknown-1", &how);
    ars_pricing_lookup(p, "claude-opus-5-20990101", &how);   /* known by prefix: no log */
}

START_TEST(unknown_model_is_billed_at_the_default_and_logged_once)
{
    struct ars_pricing *p = parse_ok(matching_file);
    enum ars_price_match how;
    ck_assert_ptr_eq(ars_pricing_lookup(p, "gpt-relay-test-unknown-0", &how), &p->def);
    ck_assert_int_eq(how, ARS_PRICE_DEFAULT);
    const char *log = capture_log(lookup_unknown_twice, p);
    ck_assert_uint_eq(count(log, "event=pricing_unknown_model"), 1);
    ck_assert_uint_eq(count(log, "model=gpt-relay-test-unknown-1"), 1);
    ck_assert_ptr_null(strstr(log, "claude-opus-5-20990101"));
    ars_pricing_free(p);
}
END_TEST

static void lookup_many_unknown(void *arg)
{
    const struct ars_pricing *p = arg;
    char name[64];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < ARS_PRICING_UNKNOWN_MEMORY + 44; i++) {
            snprintf(name, sizeof(name), "bounded-test-model-%d", i);
            ck_assert_ptr_eq(ars_pricing_lookup(p, name, NULL), &p->def);
        }
    }
}

START_TEST(unknown_model_memory_is_bounded_and_each_name_is_logged_at_most_once)
{
    struct ars_pricing *p = parse_ok(matching_file);
    const char *log = capture_log(lookup_many_unknown, p);
    size_t lines = count(log, "event=pricing_unknown_model");
    ck_assert_uint_le(lines, ARS_PRICING_UNKNOWN_MEMORY + 1);
    ck_assert_uint_ge(lines, 2);
    ck_assert_uint_eq(count(log, "model=bounded-test-model-0 "), 1);   /* not again in round 2 */
    ck_assert_uint_eq(count(log, "further ones are billed at the default"), 1);
    ars_pricing_free(p);
}
END_TEST

START_TEST(lookup_without_a_table_returns_null)
{
    enum ars_price_match how = ARS_PRICE_EXACT;
    ck_assert_ptr_null(ars_pricing_lookup(NULL, "claude-opus-5", &how));
    ck_assert_int_eq(ars_cost_micros(NULL, NULL), 0);
}
END_TEST

/* ---- cost ---------------------------------------------------------------- */

START_TEST(a_million_input_tokens_at_5_usd_cost_5_million_micros)
{
    struct ars_pricing *p = load_real();
    const struct ars_model_price *m = must_find(p, "claude-opus-5");
    ck_assert_int_eq(cost(m, 1000000, 0, 0, 0, 0, 0), 5000000);
    ck_assert_int_eq(cost(m, 0, 1000000, 0, 0, 0, 0), 25000000);
    /* 1234 in, 567 out: 1234*5 + 567*25 = 6170 + 14175 = 20345 micros */
    ck_assert_int_eq(cost(m, 1234, 567, 0, 0, 0, 0), 20345);
    ars_pricing_free(p);
}
END_TEST

static const char rounding_file[] =
    "{" DEFAULT_SET ",\"models\":{"
    "\"m\":{\"display_name\":\"M\"," RATES("0.5", "0.4", "0.2", "0.3", "0.5") "}}}";

START_TEST(cost_rounds_once_at_the_end_not_per_token_kind)
{
    struct ars_pricing *p = parse_ok(rounding_file);
    const struct ars_model_price *m = must_find(p, "m");
    /* 1 cache read + 1 input at 0.50/MTok = 1.0 micro */
    ck_assert_int_eq(cost(m, 1, 0, 0, 0, 1, 0), 1);
    /* 1 output at 0.40 + 1 five-minute write at 0.20 = 0.6 micro -> 1 (each alone rounds to 0) */
    ck_assert_int_eq(cost(m, 0, 1, 1, 0, 0, 0), 1);
    ck_assert_int_eq(cost(m, 0, 1, 0, 0, 0, 0), 0);
    ck_assert_int_eq(cost(m, 0, 0, 1, 0, 0, 0), 0);
    /* half a micro rounds up; just under half rounds down */
    ck_assert_int_eq(cost(m, 1, 0, 0, 0, 0, 0), 1);
    ck_assert_int_eq(cost(m, 0, 0, 1, 0, 0, 0) + cost(m, 0, 0, 0, 1, 0, 0), 0);
    ck_assert_int_eq(cost(m, 0, 0, 1, 1, 0, 0), 1);
    ars_pricing_free(p);
}
END_TEST

START_TEST(five_minute_and_one_hour_cache_writes_are_priced_differently)
{
    struct ars_pricing *p = load_real();
    const struct ars_model_price *m = must_find(p, "claude-opus-5");
    ck_assert_int_eq(cost(m, 0, 0, 1000000, 0, 0, 0), 6250000);
    ck_assert_int_eq(cost(m, 0, 0, 0, 1000000, 0, 0), 10000000);
    ck_assert_int_eq(cost(m, 0, 0, 0, 0, 1000000, 0), 500000);
    m = must_find(p, "claude-haiku-4-5");
    ck_assert_int_eq(cost(m, 0, 0, 1000, 1000, 0, 0), 1250 + 2000);
    ars_pricing_free(p);
}
END_TEST

static const char long_context_file[] =
    "{" DEFAULT_SET ",\"models\":{"
    "\"lc\":{\"display_name\":\"LC\"," RATES("1", "5", "1.25", "2", "0.1") ","
    "\"long_context\":{\"threshold_tokens\":1000," RATES("2", "10", "2.5", "4", "0.2") "}}}}";

START_TEST(long_context_rates_apply_to_the_whole_request_only_above_the_threshold)
{
    char *path = write_temp(long_context_file);
    struct ars_pricing *p = NULL;
    ck_assert_msg(ars_pricing_load(path, &p, err, sizeof(err)) == ARS_OK, "%s", err);
    unlink(path);
    const struct ars_model_price *m = must_find(p, "lc");
    /* prompt = 600 input + 200 read + 100 + 100 writes = 1000: at the threshold, base rates */
    /* 600*1 + 200*0.1 + 100*1.25 + 100*2 + 50*5 = 600 + 20 + 125 + 200 + 250 */
    ck_assert_int_eq(cost(m, 600, 50, 100, 100, 200, 0), 1195);
    /* one more input token: every kind, output included, at the long-context set */
    /* 601*2 + 200*0.2 + 100*2.5 + 100*4 + 50*10 = 1202 + 40 + 250 + 400 + 500 */
    ck_assert_int_eq(cost(m, 601, 50, 100, 100, 200, 0), 2392);
    /* output does not count toward the threshold */
    ck_assert_int_eq(cost(m, 1000, 100000, 0, 0, 0, 0), 1000 + 500000);
    ars_pricing_free(p);

    p = load_real();
    m = must_find(p, "claude-haiku-5-5");
    ck_assert_int_eq(cost(m, 100000, 0, 0, 0, 0, 0), 10000);          /* 100000 * 0.10 */
    ck_assert_int_eq(cost(m, 100001, 0, 0, 0, 0, 0), 50001);          /* 100001 * 0.50, rounded */
    /* 100000 cache reads + 1 input tip it over: 0.5 + 2500000 + 5000 micros, rounded up */
    ck_assert_int_eq(cost(m, 1, 1000000, 0, 0, 100000, 0), 2505001);
    ars_pricing_free(p);
}
END_TEST

static const char fast_file[] =
    "{" DEFAULT_SET ",\"models\":{"
    "\"f\":{\"display_name\":\"F\"," RATES("4", "20", "5", "8", "0.2") ","
    "\"fast\":{" RATES("8", "40", "10", "16", "0.4") "},"
    "\"long_context\":{\"threshold_tokens\":10," RATES("6", "30", "7.5", "12", "0.3") "}},"
    "\"nf\":{\"display_name\":\"NF\"," RATES("2", "10", "2.5", "4", "0.1") "}}}";

START_TEST(fast_rates_apply_only_to_fast_requests_on_models_that_publish_them)
{
    struct ars_pricing *p = parse_ok(fast_file);
    const struct ars_model_price *f = must_find(p, "f"), *nf = must_find(p, "nf");
    ck_assert_int_eq(cost(f, 5, 1000, 0, 0, 0, 0), 5 * 4 + 1000 * 20);
    ck_assert_int_eq(cost(f, 5, 1000, 0, 0, 0, 1), 5 * 8 + 1000 * 40);
    /* fast wins over long context */
    ck_assert_ptr_eq(ars_pricing_rates_for(f, &(struct ars_usage){ 100, 0, 0, 0, 0, 1 }), &f->fast);
    ck_assert_ptr_eq(ars_pricing_rates_for(f, &(struct ars_usage){ 100, 0, 0, 0, 0, 0 }), &f->long_context);
    /* no fast set: a fast request is billed at the model's own rates */
    ck_assert_int_eq(cost(nf, 1000, 0, 0, 0, 0, 1), 2000);
    ars_pricing_free(p);

    p = load_real();
    ck_assert_int_eq(cost(must_find(p, "claude-opus-5-5"), 1000000, 0, 0, 0, 0, 1), 8000000);
    ck_assert_int_eq(cost(must_find(p, "claude-sonnet-5-5"), 1000000, 0, 0, 0, 0, 1), 2000000);
    ars_pricing_free(p);
}
END_TEST

static const char max_rate_file[] =
    "{" DEFAULT_SET ",\"models\":{"
    "\"max\":{\"display_name\":\"Max\"," RATES("100000", "100000", "100000", "100000", "100000") "}}}";

START_TEST(cost_is_exact_at_the_caps_and_saturates_instead_of_wrapping)
{
    struct ars_pricing *p = parse_ok(max_rate_file);
    const struct ars_model_price *m = must_find(p, "max");
    ck_assert_int_eq(m->base.input, ARS_PRICING_MAX_RATE);
    long long g = 1000000000LL;   /* the callers' cap per kind */
    /* 5 kinds * 10^9 tokens * 10^11 micro/MTok / 10^6 = 5 * 10^14 */
    ck_assert_int_eq(cost(m, g, g, g, g, g, 0), 500000000000000LL);
    ck_assert_int_eq(cost(m, LLONG_MAX, LLONG_MAX, LLONG_MAX, LLONG_MAX, LLONG_MAX, 0), LLONG_MAX);
    ck_assert_int_eq(cost(m, -5, -1, LLONG_MIN, 0, 0, 0), 0);
    ars_pricing_free(p);
}
END_TEST

/* ---- parsing ------------------------------------------------------------- */

START_TEST(rates_are_parsed_exactly_to_the_nearest_micro_dollar)
{
    struct ars_pricing *p = parse_ok(
        "{" DEFAULT_SET ",\"models\":{"
        "\"a\":{\"display_name\":\"A\"," RATES("0.1", "6.25", "0.125", "1e-7", "0.0000005") "},"
        "\"b\":{\"display_name\":\"B\"," RATES("1.5e2", "0.1000004", "0.1000005", "100000", "0") "},"
        "\"c\":{\"display_name\":\"C\"," RATES("0.30000000000000000000001", "2E+1", "12.50", "0.0", "3") "}}}");
    const struct ars_model_price *a = must_find(p, "a"), *b = must_find(p, "b"), *c = must_find(p, "c");
    ck_assert_int_eq(a->base.input, 100000);
    ck_assert_int_eq(a->base.output, 6250000);
    ck_assert_int_eq(a->base.cache_write_5m, 125000);
    ck_assert_int_eq(a->base.cache_write_1h, 0);        /* 0.1 micro rounds down */
    ck_assert_int_eq(a->base.cache_read, 1);            /* 0.5 micro rounds up */
    ck_assert_int_eq(b->base.input, 150000000);
    ck_assert_int_eq(b->base.output, 100000);
    ck_assert_int_eq(b->base.cache_write_5m, 100001);
    ck_assert_int_eq(b->base.cache_write_1h, 100000000000LL);
    ck_assert_int_eq(b->base.cache_read, 0);
    ck_assert_int_eq(c->base.input, 300000);
    ck_assert_int_eq(c->base.output, 20000000);
    ck_assert_int_eq(c->base.cache_write_5m, 12500000);
    ck_assert_int_eq(c->base.cache_write_1h, 0);
    ars_pricing_free(p);
}
END_TEST

START_TEST(negative_rate_is_rejected_naming_model_and_field)
{
    const char *n[] = { "test.json", "model \"claude-x\"", "cache_read", "negative", NULL };
    assert_rejected("{" DEFAULT_SET ",\"models\":{\"claude-x\":{\"display_name\":\"X\","
                    RATES("1", "5", "1.25", "2", "-0.1") "}}}", n);
}
END_TEST

START_TEST(absurd_rate_is_rejected_naming_model_and_field)
{
    const char *n[] = { "model \"claude-x\"", "output", "absurd", NULL };
    assert_rejected("{" DEFAULT_SET ",\"models\":{\"claude-x\":{\"display_name\":\"X\","
                    RATES("1", "100000.000001", "1.25", "2", "0.1") "}}}", n);
    const char *n2[] = { "model \"claude-x\"", "long_context.input", "absurd", NULL };
    assert_rejected("{" DEFAULT_SET ",\"models\":{\"claude-x\":{\"display_name\":\"X\","
                    RATES("1", "5", "1.25", "2", "0.1") ",\"long_context\":{\"threshold_tokens\":5,"
                    RATES("1e9", "5", "1.25", "2", "0.1") "}}}}", n2);
}
END_TEST

START_TEST(missing_or_non_numeric_rate_is_rejected_naming_model_and_field)
{
    const char *n[] = { "model \"claude-x\"", "cache_write_1h", "missing", NULL };
    assert_rejected("{" DEFAULT_SET ",\"models\":{\"claude-x\":{\"display_name\":\"X\","
                    "\"input\":1,\"output\":5,\"cache_write_5m\":1.25,\"cache_read\":0.1}}}", n);
    const char *n2[] = { "model \"claude-x\"", "input", "must be a number", NULL };
    assert_rejected("{" DEFAULT_SET ",\"models\":{\"claude-x\":{\"display_name\":\"X\","
                    RATES("\"1\"", "5", "1.25", "2", "0.1") "}}}", n2);
    const char *n3[] = { "model \"claude-x\"", "fast.cache_read", "missing", NULL };
    assert_rejected("{" DEFAULT_SET ",\"models\":{\"claude-x\":{\"display_name\":\"X\","
                    RATES("1", "5", "1.25", "2", "0.1") ",\"fast\":{\"input\":2,\"output\":10,"
                    "\"cache_write_5m\":2.5,\"cache_write_1h\":4}}}}", n3);
    const char *n4[] = { "default", "cache_read", "missing", NULL };
    assert_rejected("{\"default\":{\"input\":1,\"output\":5,\"cache_write_5m\":1.25,\"cache_write_1h\":2},"
                    "\"models\":{\"claude-x\":{\"display_name\":\"X\"," RATES("1", "5", "1.25", "2", "0.1") "}}}", n4);
}
END_TEST

START_TEST(misspelt_field_and_bad_model_settings_are_rejected_by_name)
{
    const char *n[] = { "model \"claude-x\"", "cache_reads", "unknown field", NULL };
    assert_rejected("{" DEFAULT_SET ",\"models\":{\"claude-x\":{\"display_name\":\"X\","
                    RATES("1", "5", "1.25", "2", "0.1") ",\"cache_reads\":0.1}}}", n);
    const char *n2[] = { "model \"claude-x\"", "display_name", "missing", NULL };
    assert_rejected("{" DEFAULT_SET ",\"models\":{\"claude-x\":{" RATES("1", "5", "1.25", "2", "0.1") "}}}", n2);
    const char *n3[] = { "model \"claude-x\"", "list", "true or false", NULL };
    assert_rejected("{" DEFAULT_SET ",\"models\":{\"claude-x\":{\"display_name\":\"X\",\"list\":1,"
                    RATES("1", "5", "1.25", "2", "0.1") "}}}", n3);
    const char *n4[] = { "model \"claude-x\"", "threshold_tokens", NULL };
    assert_rejected("{" DEFAULT_SET ",\"models\":{\"claude-x\":{\"display_name\":\"X\","
                    RATES("1", "5", "1.25", "2", "0.1") ",\"long_context\":{\"threshold_tokens\":1.5,"
                    RATES("2", "10", "2.5", "4", "0.2") "}}}}", n4);
    assert_rejected("{" DEFAULT_SET ",\"models\":{\"claude-x\":{\"display_name\":\"X\","
                    RATES("1", "5", "1.25", "2", "0.1") ",\"long_context\":{"
                    RATES("2", "10", "2.5", "4", "0.2") "}}}}", n4);
    const char *n5[] = { "aliases", "\"claude-y\" already names model \"claude-y\"", NULL };
    assert_rejected("{" DEFAULT_SET ",\"models\":{"
                    "\"claude-x\":{\"display_name\":\"X\",\"aliases\":[\"claude-y\"]," RATES("1", "5", "1.25", "2", "0.1") "},"
                    "\"claude-y\":{\"display_name\":\"Y\"," RATES("1", "5", "1.25", "2", "0.1") "}}}", n5);
    const char *n6[] = { "model \"bad id\"", "printable ASCII", NULL };
    assert_rejected("{" DEFAULT_SET ",\"models\":{\"bad id\":{\"display_name\":\"X\","
                    RATES("1", "5", "1.25", "2", "0.1") "}}}", n6);
}
END_TEST

/* Found by check/fuzz/fuzz_pricing: a field name with an escaped newline
 * split the error message (and so the log line) in two. */
START_TEST(error_naming_a_field_with_control_characters_stays_one_line)
{
    const char *n[] = { "model \"claude-x\"", "long_context.thres?old_tokens", "unknown field", NULL };
    assert_rejected("{" DEFAULT_SET ",\"models\":{\"claude-x\":{\"display_name\":\"X\","
                    RATES("1", "5", "1.25", "2", "0.1") ",\"long_context\":{\"thres\\nold_tokens\":1,"
                    RATES("2", "10", "2.5", "4", "0.2") "}}}}", n);
    ck_assert_ptr_null(strchr(err, '\n'));
    const char *n2[] = { "unknown top-level field", "\"a?b\"", NULL };
    assert_rejected("{" DEFAULT_SET ",\"a\\u0001b\":1}", n2);
    ck_assert_ptr_null(strchr(err, '\x01'));
}
END_TEST

START_TEST(malformed_files_are_rejected_with_a_reason)
{
    const char *n[] = { "test.json", "invalid JSON", NULL };
    assert_rejected("{\"default\":{\"input\":1,", n);
    assert_rejected("{\"default\":{}} trailing", n);
    assert_rejected("{\"default\":{},}", n);
    assert_rejected("", n);
    const char *n2[] = { "default", "missing", NULL };
    assert_rejected("{\"models\":{\"claude-x\":{\"display_name\":\"X\"," RATES("1", "5", "1.25", "2", "0.1") "}}}", n2);
    const char *n3[] = { "models", NULL };
    assert_rejected("{" DEFAULT_SET "}", n3);
    assert_rejected("{" DEFAULT_SET ",\"models\":{}}", n3);
    assert_rejected("{" DEFAULT_SET ",\"models\":[]}", n3);
    const char *n4[] = { "unknown top-level field \"model\"", NULL };
    assert_rejected("{" DEFAULT_SET ",\"model\":{}}", n4);
    const char *n5[] = { "unit", NULL };
    assert_rejected("{\"unit\":\"USD per token\"," DEFAULT_SET ",\"models\":{\"claude-x\":{\"display_name\":\"X\","
                    RATES("1", "5", "1.25", "2", "0.1") "}}}", n5);
    const char *n6[] = { "top level", NULL };
    assert_rejected("[1,2]", n6);
}
END_TEST

START_TEST(missing_file_is_an_error_naming_the_path)
{
    struct ars_pricing *p = (struct ars_pricing *)1;
    enum ars_err rc = ars_pricing_load("/nonexistent/pricing.json", &p, err, sizeof(err));
    ck_assert_int_eq(rc, ARS_ERR_IO);
    ck_assert_ptr_null(p);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/pricing.json"));
}
END_TEST

START_TEST(replaced_table_stays_readable_until_release_all)
{
    struct ars_pricing *a = parse_ok(matching_file), *b = load_real();
    ck_assert_ptr_null(ars_pricing_current());
    ars_pricing_install(a);
    const struct ars_pricing *held = ars_pricing_current();
    ck_assert_ptr_eq(held, a);
    ars_pricing_install(b);
    ck_assert_ptr_eq(ars_pricing_current(), b);
    /* a request that took the old table before the reload still prices with it */
    ck_assert_str_eq(ars_pricing_lookup(held, "claude-opus-4-5-20251101", NULL)->id, "claude-opus-4-5");
    ars_pricing_release_all();
    ck_assert_ptr_null(ars_pricing_current());
}
END_TEST

/* Test cases a full run makes (check/unit/plan.h). */
#define UNIT_TEST_PLAN 29

int main(void)
{
    ars_log_setup(ARS_LOG_ERROR, ARS_LOG_LOGFMT);   /* unknown-model warnings only when captured */
    Suite *s = suite_create("pricing");
    TCase *tc = tcase_create("pricing");
    tcase_add_test(tc, shipped_file_loads_and_every_model_has_all_five_rates);
    tcase_add_test(tc, shipped_default_is_the_most_expensive_rate_so_unknown_models_are_never_under_billed);
    tcase_add_test(tc, shipped_rates_are_the_published_per_model_numbers_in_micro_dollars);
    tcase_add_test(tc, shipped_model_list_holds_current_models_in_file_order_and_hides_retired_ones);
    tcase_add_test(tc, exact_id_wins_over_a_shorter_family_prefix);
    tcase_add_test(tc, alias_matches_exactly);
    tcase_add_test(tc, dated_id_matches_the_longest_family_prefix);
    tcase_add_test(tc, prefix_not_at_a_dash_boundary_does_not_match);
    tcase_add_test(tc, unknown_model_is_billed_at_the_default_and_logged_once);
    tcase_add_test(tc, unknown_model_memory_is_bounded_and_each_name_is_logged_at_most_once);
    tcase_add_test(tc, lookup_without_a_table_returns_null);
    tcase_add_test(tc, a_million_input_tokens_at_5_usd_cost_5_million_micros);
    tcase_add_test(tc, cost_rounds_once_at_the_end_not_per_token_kind);
    tcase_add_test(tc, five_minute_and_one_hour_cache_writes_are_priced_differently);
    tcase_add_test(tc, long_context_rates_apply_to_the_whole_request_only_above_the_threshold);
    tcase_add_test(tc, fast_rates_apply_only_to_fast_requests_on_models_that_publish_them);
    tcase_add_test(tc, cost_is_exact_at_the_caps_and_saturates_instead_of_wrapping);
    tcase_add_test(tc, rates_are_parsed_exactly_to_the_nearest_micro_dollar);
    tcase_add_test(tc, negative_rate_is_rejected_naming_model_and_field);
    tcase_add_test(tc, absurd_rate_is_rejected_naming_model_and_field);
    tcase_add_test(tc, missing_or_non_numeric_rate_is_rejected_naming_model_and_field);
    tcase_add_test(tc, misspelt_field_and_bad_model_settings_are_rejected_by_name);
    tcase_add_test(tc, error_naming_a_field_with_control_characters_stays_one_line);
    tcase_add_test(tc, malformed_files_are_rejected_with_a_reason);
    tcase_add_test(tc, missing_file_is_an_error_naming_the_path);
    tcase_add_test(tc, replaced_table_stays_readable_until_release_all);
    tcase_add_test(tc, matching_ignores_case_as_the_blacklist_does);
    tcase_add_test(tc, blacklist_entry_blocks_the_model_its_dated_ids_and_aliases_in_any_case);
    tcase_add_test(tc, key_blacklist_uses_the_pricing_match);
    suite_add_tcase(s, tc);
    return ars_check_run(s, UNIT_TEST_PLAN);
}
