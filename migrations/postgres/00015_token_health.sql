-- +goose Up
-- How each instance's token mints went, for the ops console: when one last succeeded, and
-- the last failure as a fixed kind and the platform's status. It never holds a token, a
-- secret or the platform's answer. A row of its own, not columns of instance_tokens:
-- that row is deleted whenever the instance's token goes stale (a rotation, a disable),
-- and the last failure must outlive that.
CREATE TABLE instance_token_health (
    instance_id       TEXT     PRIMARY KEY,
    last_minted_at    TIMESTAMPTZ,
    last_error        TEXT     NOT NULL DEFAULT '',
    last_error_status INTEGER  NOT NULL DEFAULT 0,
    last_error_at     TIMESTAMPTZ
);

-- +goose Down
DROP TABLE instance_token_health;
