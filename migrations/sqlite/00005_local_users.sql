-- +goose Up
-- Local users: accounts that sign in with an e-mail address and a password, invitations,
-- one-time password resets, per-instance sign-in settings and the audit log. Tokens of
-- invitations and resets are stored as the hex SHA-256 of their 32 random bytes, never the
-- token: nothing here needs sealing, so rekey has nothing new to do.
--
-- Instances are never deleted (a removal leaves a tombstone), so ON DELETE CASCADE from
-- instances below only matters to an operator who deletes rows by hand; the erasure of a
-- removed instance's personal data is its own job.

-- A local account is one whose platform_user_id is NULL. email_normalized is the address
-- as extension.NormalizeEmail returns it (trimmed, NFC, lower-case, IDN domain in ASCII);
-- it is unique per instance among local accounts only. A platform user keeps '' there and
-- is unique by platform_user_id: a platform user and a local account with the same
-- address are two accounts, each marked by how it signs in, and are never linked by the
-- address (the platform's address is not ours to trust as proof of a local identity).
-- password_hash is a PHC string (argon2id), '' for platform users. failed_logins and
-- locked_until carry the lock-out across replicas.
ALTER TABLE accounts ADD COLUMN email_normalized TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN password_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN language TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN locked_until DATETIME;
CREATE UNIQUE INDEX accounts_instance_local_email ON accounts (instance_id, email_normalized)
    WHERE platform_user_id IS NULL;
-- Role checks count an instance's owners.
CREATE INDEX accounts_instance_role ON accounts (instance_id, role);

-- Sign-in settings of an instance; no row means the defaults (extension.InstanceSettings).
-- allowed_domains is a JSON array of ASCII domains; empty means any.
CREATE TABLE instance_settings (
    instance_id     TEXT     PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    default_role    TEXT     NOT NULL,
    allowed_domains TEXT     NOT NULL DEFAULT '[]',
    password_login  BOOLEAN  NOT NULL,
    updated_at      DATETIME NOT NULL
) WITHOUT ROWID;

-- Invitations of an e-mail address to an instance at a role. An invitation is open until
-- it is used or revoked; at most one is open per address and instance (expired ones are
-- revoked by the next invitation of the address), so two admins inviting one address at
-- once make one invitation. inviter_name keeps who invited for the accept page even after
-- that account is gone.
CREATE TABLE invitations (
    id               TEXT     PRIMARY KEY,
    token_hash       TEXT     NOT NULL UNIQUE,
    instance_id      TEXT     NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    email            TEXT     NOT NULL,
    email_normalized TEXT     NOT NULL,
    role             TEXT     NOT NULL,
    invited_by       TEXT     REFERENCES accounts (id) ON DELETE SET NULL,
    inviter_name     TEXT     NOT NULL DEFAULT '',
    created_at       DATETIME NOT NULL,
    expires_at       DATETIME NOT NULL,
    used_at          DATETIME,
    revoked_at       DATETIME,
    accepted_account TEXT     REFERENCES accounts (id) ON DELETE SET NULL
);
CREATE UNIQUE INDEX invitations_open ON invitations (instance_id, email_normalized)
    WHERE used_at IS NULL AND revoked_at IS NULL;
CREATE INDEX invitations_instance ON invitations (instance_id, created_at);

-- One-time password-reset links of local accounts. created_by is the issuing account, NULL
-- when the operator issued it (the accounts subcommand); no reference, like the audit log.
CREATE TABLE password_resets (
    token_hash  TEXT     PRIMARY KEY,
    account_id  TEXT     NOT NULL,
    instance_id TEXT     NOT NULL,
    created_by  TEXT,
    created_at  DATETIME NOT NULL,
    expires_at  DATETIME NOT NULL,
    used_at     DATETIME,
    FOREIGN KEY (account_id, instance_id) REFERENCES accounts (id, instance_id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX password_resets_account ON password_resets (account_id, instance_id);
CREATE INDEX password_resets_expires_at ON password_resets (expires_at);

-- The audit log: who (account_id, NULL for the platform or the operator; actor_name as it
-- was) did what (kind, and a small JSON object of details that never holds a secret) in
-- which instance and when. No reference to accounts: an entry outlives its account. Kept
-- one year (extension.AuditRetention), then pruned by created_at.
CREATE TABLE audit_events (
    id          INTEGER  PRIMARY KEY,
    instance_id TEXT     NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    account_id  TEXT,
    actor_name  TEXT     NOT NULL DEFAULT '',
    kind        TEXT     NOT NULL,
    detail      TEXT     NOT NULL DEFAULT '{}',
    created_at  DATETIME NOT NULL
);
CREATE INDEX audit_events_instance_created ON audit_events (instance_id, created_at, id);
CREATE INDEX audit_events_instance_account ON audit_events (instance_id, account_id, created_at, id);
CREATE INDEX audit_events_created ON audit_events (created_at);

-- +goose Down
DROP TABLE audit_events;
DROP TABLE password_resets;
DROP TABLE invitations;
DROP TABLE instance_settings;
DROP INDEX accounts_instance_role;
DROP INDEX accounts_instance_local_email;
ALTER TABLE accounts DROP COLUMN locked_until;
ALTER TABLE accounts DROP COLUMN failed_logins;
ALTER TABLE accounts DROP COLUMN language;
ALTER TABLE accounts DROP COLUMN password_hash;
ALTER TABLE accounts DROP COLUMN email_normalized;
