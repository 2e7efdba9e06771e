-- +goose Up
-- What the account page shows of a session: a public handle and the browser it runs in.
-- handle is 16 random bytes in hex, made at creation: the page names a session by it to
-- sign it out. It is no credential (only the cookie's id is, and the table keeps only the
-- id's hash), is unrelated to the id, and a sign-out by handle is limited to the signed-in
-- account's own sessions. user_agent is the browser's User-Agent at sign-in, control
-- characters removed, at most 200 bytes (extension.CleanUserAgent); the page summarises it
-- ("Firefox on Linux"). Sessions that exist already get a handle and no user agent.
ALTER TABLE sessions ADD COLUMN handle TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
UPDATE sessions SET handle = replace(gen_random_uuid()::text, '-', '');
CREATE UNIQUE INDEX sessions_handle ON sessions (handle);

-- +goose Down
DROP INDEX sessions_handle;
ALTER TABLE sessions DROP COLUMN user_agent;
ALTER TABLE sessions DROP COLUMN handle;
