-- +goose Up
-- Domain actions: work on the platform that a user of the extension's pages started, run
-- as a job with the instance's token. A row says who started what and how it went, for
-- the page that shows progress and result; the audit log records the start as well.
-- outcome is a fixed word (ok, missing_scope, not_a_project, platform_error), never a
-- text the platform answered.
CREATE TABLE actions (
    id          TEXT     PRIMARY KEY,
    instance_id TEXT     NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    account_id  TEXT     NOT NULL,
    kind        TEXT     NOT NULL,
    input       TEXT     NOT NULL DEFAULT '',
    state       TEXT     NOT NULL,
    outcome     TEXT     NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX actions_instance_created ON actions (instance_id, created_at);

-- +goose Down
DROP TABLE actions;
