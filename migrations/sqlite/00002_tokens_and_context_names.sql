-- +goose Up
-- The name of the instance's project or customer, fetched by the post-install job.
ALTER TABLE instances ADD COLUMN context_name TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN context_name_at DATETIME;

-- Instance tokens shared by the replicas: the token sealed (bound to its instance), and a
-- lease so that only one replica mints a new token for an instance at a time.
CREATE TABLE instance_tokens (
    instance_id  TEXT    PRIMARY KEY,
    sealed_token TEXT    NOT NULL DEFAULT '',
    expires_at   DATETIME,
    lease_owner  TEXT    NOT NULL DEFAULT '',
    lease_until  DATETIME,
    updated_at   DATETIME NOT NULL
);

-- +goose Down
DROP TABLE instance_tokens;
ALTER TABLE instances DROP COLUMN context_name_at;
ALTER TABLE instances DROP COLUMN context_name;
