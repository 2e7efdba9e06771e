-- +goose Up
-- One index of a session's instance and account in place of two (instance; account and
-- instance): every statement that looked sessions up by either finds them through it
-- (an instance's sessions by its first column, an account's by both, as the reference to
-- accounts needs), and a sign-in writes one index entry fewer. A session's entry in each
-- index is a random place in it, so each index is a page more that every sign-in writes.
DROP INDEX sessions_instance;
DROP INDEX sessions_account;
CREATE INDEX sessions_instance_account ON sessions (instance_id, account_id);

-- +goose Down
DROP INDEX sessions_instance_account;
CREATE INDEX sessions_instance ON sessions (instance_id);
CREATE INDEX sessions_account ON sessions (account_id, instance_id);
