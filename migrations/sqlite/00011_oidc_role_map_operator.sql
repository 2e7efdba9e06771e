-- +goose Up
-- A provider's group → role map: a JSON array of {"group": G, "role": R} with R member
-- or admin. Empty: accounts made through the provider get its default_role and later
-- sign-ins leave roles alone. Not empty: the role is derived from the groups claim at
-- provisioning and re-derived at every sign-in through the provider (the highest role of
-- the matching groups, else default_role); an owner's role is never changed.
ALTER TABLE oidc_providers ADD COLUMN role_map TEXT NOT NULL DEFAULT '[]';

-- A custom provider's own endpoints and extra authorization parameters, a JSON object
-- {"authorization": URL, "token": URL, "userinfo": URL, "extra_params": {name: value}};
-- each set one overrides what discovery found (the issuer and its keys still come from
-- discovery). '{}' for every other template.
ALTER TABLE oidc_providers ADD COLUMN endpoints TEXT NOT NULL DEFAULT '{}';

-- Identities at the operator's providers (EXT_OIDC_PROVIDERS_FILE) are linked like those
-- at an instance's own, but their provider is no row: its id is derived from the file's
-- key and the instance (extension.OperatorProviderID). So provider_id no longer refers
-- to oidc_providers; deleting an instance's provider deletes its identities explicitly
-- (DeleteOIDCProvider), as it did already.
CREATE TABLE oidc_identities_new (
    id          TEXT     PRIMARY KEY,
    instance_id TEXT     NOT NULL,
    account_id  TEXT     NOT NULL,
    provider_id TEXT     NOT NULL,
    subject     TEXT     NOT NULL,
    email       TEXT     NOT NULL DEFAULT '',
    created_at  DATETIME NOT NULL,
    last_used_at DATETIME,
    UNIQUE (provider_id, subject),
    FOREIGN KEY (account_id, instance_id) REFERENCES accounts (id, instance_id) ON DELETE CASCADE
);
INSERT INTO oidc_identities_new (id, instance_id, account_id, provider_id, subject, email, created_at, last_used_at)
    SELECT id, instance_id, account_id, provider_id, subject, email, created_at, last_used_at FROM oidc_identities;
DROP TABLE oidc_identities;
ALTER TABLE oidc_identities_new RENAME TO oidc_identities;
CREATE INDEX oidc_identities_account ON oidc_identities (account_id);
CREATE INDEX oidc_identities_instance_account ON oidc_identities (instance_id, account_id);

-- +goose Down
DELETE FROM oidc_identities WHERE provider_id NOT IN (SELECT id FROM oidc_providers);
CREATE TABLE oidc_identities_old (
    id          TEXT     PRIMARY KEY,
    instance_id TEXT     NOT NULL,
    account_id  TEXT     NOT NULL,
    provider_id TEXT     NOT NULL,
    subject     TEXT     NOT NULL,
    email       TEXT     NOT NULL DEFAULT '',
    created_at  DATETIME NOT NULL,
    last_used_at DATETIME,
    UNIQUE (provider_id, subject),
    FOREIGN KEY (account_id, instance_id) REFERENCES accounts (id, instance_id) ON DELETE CASCADE,
    FOREIGN KEY (provider_id, instance_id) REFERENCES oidc_providers (id, instance_id) ON DELETE CASCADE
);
INSERT INTO oidc_identities_old SELECT id, instance_id, account_id, provider_id, subject, email, created_at, last_used_at FROM oidc_identities;
DROP TABLE oidc_identities;
ALTER TABLE oidc_identities_old RENAME TO oidc_identities;
CREATE INDEX oidc_identities_account ON oidc_identities (account_id);
CREATE INDEX oidc_identities_instance_account ON oidc_identities (instance_id, account_id);
ALTER TABLE oidc_providers DROP COLUMN endpoints;
ALTER TABLE oidc_providers DROP COLUMN role_map;
