/* Configuration: one table (config.c) gives every key its type, default,
 * bounds and secret flag; loading, --check-config, --help and the sample
 * config all come from it. Values come from an env-style file, then the
 * process environment (which wins). A loaded config is immutable; SIGHUP
 * builds a new one and swaps the pointer. */
#ifndef ARS_CONFIG_H
#define ARS_CONFIG_H

#include <stdio.h>

#include "crypto.h"
#include "err.h"

enum ars_log_level_cfg { ARS_CFG_LOG_DEBUG, ARS_CFG_LOG_INFO, ARS_CFG_LOG_WARN, ARS_CFG_LOG_ERROR };

struct ars_config {
    long long port;

    char *redis_host;
    long long redis_port;
    char *redis_password;
    long long redis_db;
    int redis_enable_tls;
    char *redis_key_prefix;
    long long redis_connect_timeout_ms;
    long long redis_command_timeout_ms;

    char *pg_host;
    long long pg_port;
    char *pg_database;
    char *pg_user;
    char *pg_password;
    int pg_ssl;
    long long pg_pool_max;
    long long pg_idle_timeout_ms;
    int pg_list_api_keys;
    long long pg_connect_timeout_ms;
    long long pg_statement_timeout_ms;

    char *claude_api_url;
    char *claude_api_version;
    char *claude_beta_header;
    char *oauth_token_url;
    char *oauth_client_id;
    long long oauth_refresh_ahead_seconds;
    long long upstream_connect_timeout_ms;
    long long upstream_first_byte_timeout_ms;
    long long upstream_idle_timeout_ms;
    long long stream_ping_seconds;
    long long drain_max_seconds;
    long long drain_max_bytes;
    long long drain_max_concurrent;
    long long upstream_max_response_bytes;

    long long lease_ttl_seconds;
    long long sticky_ttl_seconds;
    long long account_cache_seconds;
    long long max_failover;
    long long rate_limit_cooldown_seconds;
    long long overload_cooldown_seconds;
    long long error_threshold;
    long long error_window_seconds;
    long long error_cooldown_seconds;
    long long error_marks_per_key_per_minute;
    long long transport_backoff_seconds;
    long long transport_backoff_max_seconds;
    long long cooldown_max_seconds;

    char *openai_model_map;          /* JSON object text: OpenAI model name -> Claude model */
    long long openai_default_max_tokens;
    int openai_show_thinking;

    long long request_log_max;
    char *usage_spool_file;

    char *jwt_secret;
    char *encryption_key;
    struct ars_crypto_keys keys;   /* derived from ENCRYPTION_KEY at load */

    char *pricing_file;

    long long key_cache_seconds;
    long long key_cache_max_entries;

    long long worker_threads;
    long long worker_reserve;
    char *listen_socket_group;
    long long worker_stack_kb;
    long long request_max_bytes;
    long long shutdown_grace_seconds;
    long long health_timeout_ms;
    int enable_cors;
    int enable_test_routes;
    int log_level;     /* enum ars_log_level */
    int log_format;    /* enum ars_log_format */
};

/* Loads defaults, then `file` (skipped when NULL; missing is an error only
 * when file_required), then `env` (NULL-terminated "KEY=VALUE" array, e.g.
 * environ). On failure *out is NULL and errbuf holds one line naming the
 * variable and what to do about it. */
ARS_MUST_USE enum ars_err ars_config_load(const char *file, int file_required, char *const *env,
                             struct ars_config **out, char *errbuf, size_t errlen);
void ars_config_free(struct ars_config *cfg);

/* Effective config, secrets masked, one KEY=VALUE per line. */
void ars_config_print(const struct ars_config *cfg, FILE *f);
/* Annotated sample config (the config manual) from the table. */
void ars_config_print_sample(FILE *f);
/* Lists keys with a one-line description, for --help. */
void ars_config_print_help(FILE *f);

/* Number of keys and their names, for tests. */
size_t ars_config_key_count(void);
const char *ars_config_key_name(size_t i);

/* Process-wide current config. Old configs are kept until exit, so a
 * pointer taken at the start of a request stays valid for all of it. */
const struct ars_config *ars_config_current(void);
void ars_config_install(struct ars_config *cfg);
void ars_config_release_all(void);

#endif
