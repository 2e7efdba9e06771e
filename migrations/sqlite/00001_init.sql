-- +goose Up
CREATE TABLE instances (
    id               TEXT    PRIMARY KEY,
    context_kind     TEXT    NOT NULL DEFAULT '',
    context_id       TEXT    NOT NULL DEFAULT '',
    consented_scopes TEXT    NOT NULL DEFAULT '[]',
    enabled          BOOLEAN NOT NULL DEFAULT 1,
    variant_key      TEXT    NOT NULL DEFAULT '',
    sealed_secret    TEXT    NOT NULL DEFAULT '',
    last_event_kind  TEXT    NOT NULL DEFAULT '',
    last_event_ns    INTEGER NOT NULL DEFAULT 0,
    removed_at       DATETIME,
    created_at       DATETIME NOT NULL,
    updated_at       DATETIME NOT NULL
);

CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY,
    request_id       TEXT    NOT NULL DEFAULT '',
    kind             TEXT    NOT NULL DEFAULT '',
    instance_id      TEXT    NOT NULL DEFAULT '',
    event_created_at DATETIME,
    received_at      DATETIME NOT NULL,
    outcome          TEXT    NOT NULL,
    reason           TEXT    NOT NULL DEFAULT ''
);
-- Only a time index: it grows at its right edge, so a delivery dirties one more page,
-- not a random one (random-key indexes cost SQLite throughput on every commit).
CREATE INDEX webhook_deliveries_received_at ON webhook_deliveries (received_at);

-- +goose Down
DROP TABLE webhook_deliveries;
DROP TABLE instances;
