-- +goose Up
-- Sign-in with an instance's own OpenID Connect providers. A provider row holds only the
-- instance's own values; what its template (extension.OIDCTemplates: Google, Microsoft
-- Entra, GitLab, Keycloak, IServ, custom) knows, such as whether its e-mail claim can be
-- trusted, lives in code, so an update improves templates without touching anyone's
-- settings. sealed_client_secret is sealed like an instance's secret (associated data
-- "oidc-client-secret:" || id) and re-sealed by rekey; '' for a public client. scopes,
-- allowed_domains and required_values are JSON arrays.
CREATE TABLE oidc_providers (
    id                   TEXT     PRIMARY KEY,
    instance_id          TEXT     NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    template             TEXT     NOT NULL,
    name                 TEXT     NOT NULL,
    issuer               TEXT     NOT NULL,
    client_id            TEXT     NOT NULL,
    sealed_client_secret TEXT     NOT NULL DEFAULT '',
    scopes               TEXT     NOT NULL DEFAULT '["openid","email","profile"]',
    allowed_domains      TEXT     NOT NULL DEFAULT '[]',
    required_claim       TEXT     NOT NULL DEFAULT '',
    required_values      TEXT     NOT NULL DEFAULT '[]',
    default_role         TEXT     NOT NULL,
    auto_provision       BOOLEAN  NOT NULL DEFAULT FALSE,
    enabled              BOOLEAN  NOT NULL DEFAULT TRUE,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    UNIQUE (id, instance_id)
);
CREATE INDEX oidc_providers_instance ON oidc_providers (instance_id, name);

-- An identity at a provider (its subject) linked to one account of the provider's
-- instance. One identity is one account's only: unique (provider_id, subject). email is
-- what the provider said at linking, for the account page only; it is never used to find
-- the account again.
CREATE TABLE oidc_identities (
    id          TEXT     PRIMARY KEY,
    instance_id TEXT     NOT NULL,
    account_id  TEXT     NOT NULL,
    provider_id TEXT     NOT NULL,
    subject     TEXT     NOT NULL,
    email       TEXT     NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    UNIQUE (provider_id, subject),
    FOREIGN KEY (account_id, instance_id) REFERENCES accounts (id, instance_id) ON DELETE CASCADE,
    FOREIGN KEY (provider_id, instance_id) REFERENCES oidc_providers (id, instance_id) ON DELETE CASCADE
);
CREATE INDEX oidc_identities_account ON oidc_identities (account_id);
-- The account page and the team page list identities by instance and account.
CREATE INDEX oidc_identities_instance_account ON oidc_identities (instance_id, account_id);

-- States of sign-ins that came back: a state is used once. Rows are kept until the state
-- would have expired anyway, then pruned.
CREATE TABLE oidc_used_states (
    state_hash TEXT     PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX oidc_used_states_expires ON oidc_used_states (expires_at);

-- +goose Down
DROP TABLE oidc_used_states;
DROP TABLE oidc_identities;
DROP TABLE oidc_providers;
