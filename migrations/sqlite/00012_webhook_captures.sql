-- +goose Up
-- Captured deliveries, for developers (dev always; serve with EXT_CAPTURE_DELIVERIES):
-- the exact URL, headers and body of a delivery that reached the webhook handler, sealed
-- with the store's keys (they carry instance secrets), bound to id and instance_id. The
-- plain columns say only which delivery it was and what became of it. instance_id is ''
-- for a delivery whose signature did not verify (its body is nobody's word). Rows are
-- pruned past the retention and erased with their instance (DELETE ... WHERE instance_id).
CREATE TABLE webhook_captures (
    id          TEXT     PRIMARY KEY,
    instance_id TEXT     NOT NULL DEFAULT '',
    request_id  TEXT     NOT NULL DEFAULT '',
    kind        TEXT     NOT NULL DEFAULT '',
    received_at DATETIME NOT NULL,
    verified    BOOLEAN  NOT NULL DEFAULT FALSE,
    status      INTEGER  NOT NULL DEFAULT 0,
    outcome     TEXT     NOT NULL DEFAULT '',
    size        INTEGER  NOT NULL DEFAULT 0,
    sealed      TEXT     NOT NULL
);
CREATE INDEX webhook_captures_received ON webhook_captures (received_at);
CREATE INDEX webhook_captures_instance ON webhook_captures (instance_id);
CREATE INDEX webhook_captures_request ON webhook_captures (request_id);

-- +goose Down
DROP TABLE webhook_captures;
