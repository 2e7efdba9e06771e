-- +goose Up
-- Fewer session indexes, each of which every sign-in writes a page of (a session's entry
-- is a random place in each): one index of a session's instance and account in place of
-- two (instance; account and instance), through which every statement that looked
-- sessions up by either finds them (an instance's by its first column, an account's by
-- both, as the reference to accounts needs); and no index of the handle, which is only
-- ever looked up within an account's sessions (the account page's sign-out of one
-- session), through that same index. A handle is 16 random bytes: unique without an
-- index to say so.
DROP INDEX sessions_instance;
DROP INDEX sessions_account;
DROP INDEX sessions_handle;
CREATE INDEX sessions_instance_account ON sessions (instance_id, account_id);

-- +goose Down
DROP INDEX sessions_instance_account;
CREATE UNIQUE INDEX sessions_handle ON sessions (handle);
CREATE INDEX sessions_instance ON sessions (instance_id);
CREATE INDEX sessions_account ON sessions (account_id, instance_id);
