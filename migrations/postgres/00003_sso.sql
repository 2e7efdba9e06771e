-- +goose Up
-- Single sign-on. Text ids throughout, as for instances: the platform's ids are UUIDs, and
-- a malformed id then simply matches nothing instead of failing to parse.

-- Every ATReK (single-use retrieval key) we were handed, as the hex SHA-256 of the key, never
-- the key: a reloaded or shared link finds its key here and is refused before any platform
-- call. Kept until expires_at (the key's lifetime plus a margin), then pruned.
CREATE TABLE retrieval_keys (
    key_hash   TEXT        PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX retrieval_keys_expires_at ON retrieval_keys (expires_at);

-- Local accounts of an instance. platform_user_id is NULL for accounts that did not come
-- from the platform's SSO (local e-mail and password users); NULLs are distinct in a unique
-- index, so only platform users are unique per instance.
CREATE TABLE accounts (
    id               TEXT        PRIMARY KEY,
    instance_id      TEXT        NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    platform_user_id TEXT,
    email            TEXT        NOT NULL DEFAULT '',
    name             TEXT        NOT NULL DEFAULT '',
    role             TEXT        NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    -- The target of the sessions' composite reference: a session's account is always one
    -- of its instance's.
    UNIQUE (id, instance_id)
);
CREATE UNIQUE INDEX accounts_instance_platform_user ON accounts (instance_id, platform_user_id);

-- Platform user tokens, sealed and bound to (instance, user), with a lease so that one
-- replica at a time refreshes them (the refresh token rotates on every refresh). The key
-- starts with instance_id so that deleting an instance's tokens uses it.
CREATE TABLE user_tokens (
    instance_id      TEXT        NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    platform_user_id TEXT        NOT NULL,
    sealed_token     TEXT        NOT NULL,
    sealed_refresh   TEXT        NOT NULL DEFAULT '',
    expires_at       TIMESTAMPTZ NOT NULL,
    lease_owner      TEXT        NOT NULL DEFAULT '',
    lease_until      TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (instance_id, platform_user_id)
);

-- Server-side sessions: the cookie holds a random 256-bit id, the table only its SHA-256.
-- platform_user_id is '' for a local account's session.
CREATE TABLE sessions (
    id_hash          TEXT        PRIMARY KEY,
    account_id       TEXT        NOT NULL,
    instance_id      TEXT        NOT NULL,
    platform_user_id TEXT        NOT NULL DEFAULT '',
    created_at       TIMESTAMPTZ NOT NULL,
    last_seen_at     TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    FOREIGN KEY (account_id, instance_id) REFERENCES accounts (id, instance_id) ON DELETE CASCADE
);
CREATE INDEX sessions_instance ON sessions (instance_id);
CREATE INDEX sessions_account ON sessions (account_id, instance_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- +goose Down
DROP TABLE sessions;
DROP TABLE user_tokens;
DROP TABLE accounts;
DROP TABLE retrieval_keys;
