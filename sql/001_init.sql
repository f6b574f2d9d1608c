-- ai-relay schema, version 1. Applied by `ai-relayctl db init` inside a
-- transaction and recorded in schema_migrations. Timestamps are
-- timestamptz; money is integer micro-dollars; lists are jsonb arrays.
-- Every record row carries `version`, a counter kept in Redis: the
-- double-write path only lets a newer version replace an older one, so a
-- retried (outbox) write can never undo a later change.

CREATE TABLE IF NOT EXISTS api_keys (
    id                      text PRIMARY KEY,
    version                 bigint NOT NULL DEFAULT 0,
    name                    text NOT NULL,
    description             text NOT NULL DEFAULT '',
    key_hash                text NOT NULL UNIQUE,
    key_prefix              text NOT NULL DEFAULT '',
    key_last4               text NOT NULL DEFAULT '',
    enabled                 boolean NOT NULL DEFAULT true,
    expiration_mode         text NOT NULL DEFAULT 'fixed' CHECK (expiration_mode IN ('fixed', 'activation')),
    expires_at              timestamptz,
    activation_amount       integer NOT NULL DEFAULT 0,
    activation_unit         text NOT NULL DEFAULT 'days' CHECK (activation_unit IN ('days', 'hours')),
    activated_at            timestamptz,
    permissions             jsonb NOT NULL DEFAULT '[]',
    restricted_models       jsonb NOT NULL DEFAULT '[]',
    allowed_clients         jsonb NOT NULL DEFAULT '[]',
    concurrency_limit       integer NOT NULL DEFAULT 0,
    rate_limit_window_min   integer NOT NULL DEFAULT 0,
    rate_limit_requests     bigint NOT NULL DEFAULT 0,
    rate_limit_tokens       bigint NOT NULL DEFAULT 0,
    rate_limit_cost_micros  bigint NOT NULL DEFAULT 0,
    daily_cost_limit_micros bigint NOT NULL DEFAULT 0,
    weekly_cost_limit_micros bigint NOT NULL DEFAULT 0,
    weekly_reset_day        smallint NOT NULL DEFAULT 1 CHECK (weekly_reset_day BETWEEN 1 AND 7),
    weekly_reset_hour       smallint NOT NULL DEFAULT 0 CHECK (weekly_reset_hour BETWEEN 0 AND 23),
    total_cost_limit_micros bigint NOT NULL DEFAULT 0,
    account_binding         text NOT NULL DEFAULT '',
    tags                    jsonb NOT NULL DEFAULT '[]',
    owner                   text NOT NULL DEFAULT '',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    last_used_at            timestamptz,
    deleted                 boolean NOT NULL DEFAULT false,
    deleted_at              timestamptz,
    deleted_by              text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS api_keys_created_idx ON api_keys (created_at DESC);
CREATE INDEX IF NOT EXISTS api_keys_name_idx ON api_keys (lower(name));
CREATE INDEX IF NOT EXISTS api_keys_tags_idx ON api_keys USING gin (tags);
CREATE INDEX IF NOT EXISTS api_keys_live_idx ON api_keys (deleted, enabled);

CREATE TABLE IF NOT EXISTS account_groups (
    id          text PRIMARY KEY,
    version     bigint NOT NULL DEFAULT 0,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    members     jsonb NOT NULL DEFAULT '[]',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS accounts (
    id                text PRIMARY KEY,
    version           bigint NOT NULL DEFAULT 0,
    type              text NOT NULL CHECK (type IN ('claude-oauth', 'claude-console')),
    name              text NOT NULL,
    description       text NOT NULL DEFAULT '',
    status            text NOT NULL DEFAULT 'active',
    priority          integer NOT NULL DEFAULT 50,
    schedulable       boolean NOT NULL DEFAULT true,
    concurrency_limit integer NOT NULL DEFAULT 0,
    groups            jsonb NOT NULL DEFAULT '[]',
    base_url          text NOT NULL DEFAULT '',
    model_mapping     jsonb NOT NULL DEFAULT '{}',
    proxy             text NOT NULL DEFAULT '',
    credentials       text NOT NULL DEFAULT '',
    expires_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted           boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS accounts_type_idx ON accounts (type, status);
CREATE INDEX IF NOT EXISTS accounts_groups_idx ON accounts USING gin (groups);

CREATE TABLE IF NOT EXISTS settings (
    key        text PRIMARY KEY,
    version    bigint NOT NULL DEFAULT 0,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS admin_users (
    username      text PRIMARY KEY,
    version       bigint NOT NULL DEFAULT 0,
    password_hash text NOT NULL,
    role          text NOT NULL DEFAULT 'viewer' CHECK (role IN ('admin', 'operator', 'viewer')),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);

CREATE TABLE IF NOT EXISTS audit_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL,
    target     text NOT NULL DEFAULT '',
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON audit_log (at DESC);
CREATE INDEX IF NOT EXISTS audit_log_target_idx ON audit_log (target);
