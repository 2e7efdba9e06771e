-- +goose Up
-- What the reconciliation with the platform found (extension/mstudio.Reconciler): one
-- row per kind and instance. kind is lost_install (the platform has the instance, we
-- never received its install), missed_removal (we hold it, the platform no longer has
-- it), halted or failed (the instance's webhook execution at the platform). A run
-- refreshes last_seen of what it finds again and sets resolved_at of what it no longer
-- finds; a finding that comes back opens again. detail never holds a secret.
CREATE TABLE reconcile_findings (
    kind        TEXT     NOT NULL,
    instance_id TEXT     NOT NULL,
    detail      TEXT     NOT NULL DEFAULT '',
    first_seen  TIMESTAMPTZ NOT NULL,
    last_seen   TIMESTAMPTZ NOT NULL,
    resolved_at TIMESTAMPTZ,
    PRIMARY KEY (kind, instance_id)
);
CREATE INDEX reconcile_findings_open ON reconcile_findings (resolved_at, kind);

-- +goose Down
DROP TABLE reconcile_findings;
