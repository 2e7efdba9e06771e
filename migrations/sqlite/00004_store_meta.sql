-- +goose Up
-- Facts about the database itself, one row per name. 'simulator_url' is written by `dev`
-- (and by `serve` or `token` at an API on this machine while the database is empty): the
-- instances here were installed by that platform simulator, so their secrets are the
-- simulator's and must never be sent to another API.
CREATE TABLE store_meta (
    name       TEXT     PRIMARY KEY,
    value      TEXT     NOT NULL,
    updated_at DATETIME NOT NULL
) WITHOUT ROWID;

-- +goose Down
DROP TABLE store_meta;
