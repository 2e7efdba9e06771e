-- +goose Up
CREATE TABLE instances (
    id               TEXT        PRIMARY KEY,
    context_kind     TEXT        NOT NULL DEFAULT '',
    context_id       TEXT        NOT NULL DEFAULT '',
    consented_scopes TEXT        NOT NULL DEFAULT '[]',
    enabled          BOOLEAN     NOT NULL DEFAULT TRUE,
    variant_key      TEXT        NOT NULL DEFAULT '',
    sealed_secret    TEXT        NOT NULL DEFAULT '',
    last_event_kind  TEXT    NOT NULL DEFAULT '',
    last_event_ns    BIGINT      NOT NULL DEFAULT 0,
    removed_at       TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);

CREATE TABLE webhook_deliveries (
    id               BIGSERIAL   PRIMARY KEY,
    request_id       TEXT        NOT NULL DEFAULT '',
    kind             TEXT        NOT NULL DEFAULT '',
    instance_id      TEXT        NOT NULL DEFAULT '',
    event_created_at TIMESTAMPTZ,
    received_at      TIMESTAMPTZ NOT NULL,
    outcome          TEXT        NOT NULL,
    reason           TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX webhook_deliveries_received_at ON webhook_deliveries (received_at);

-- +goose Down
DROP TABLE webhook_deliveries;
DROP TABLE instances;
