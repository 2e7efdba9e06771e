-- +goose Up
-- Lifecycle state that converges in any order. Each group of an instance's fields keeps
-- the version of the event that last set it, and an event sets a group only if it is
-- newer (extension/lifecycle_groups.go). A version is a text that sorts as versions do:
-- request.createdAt in Unix nanoseconds as 20 digits with leading zeros, the kind's rank
-- (1 install, 2 update, 3 rotation, 4 removal), the request id. last_event_version is the
-- newest version applied, which last_event_ns and last_event_kind follow.
-- last_write_groups is what the latest write did, as bits; the write computes it from the
-- versions before it, which RETURNING cannot see.
ALTER TABLE instances ADD COLUMN last_event_version TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN enabled_version TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN scopes_version TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN variant_version TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN context_version TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN secret_version TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN removal_version TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN last_write_groups INTEGER NOT NULL DEFAULT 0;

-- Until now an instance kept only its last event, and an older event changed nothing. So
-- the groups that event sets take its version (with no request id, which sorts first:
-- that very event delivered again is a duplicate), and every other group the version of
-- the same time with rank 0: older than any event at that time, newer than any before.
-- Nothing older than the last event can change the instance, as before; an event of
-- another kind at the same time can, as before.
UPDATE instances SET last_event_version = printf('%020d', last_event_ns) ||
    CASE last_event_kind WHEN 'ExtensionAddedToContext' THEN '1' WHEN 'InstanceUpdated' THEN '2'
        WHEN 'SecretRotated' THEN '3' WHEN 'InstanceRemovedFromContext' THEN '4' ELSE '0' END
WHERE last_event_ns > 0;
UPDATE instances SET
    enabled_version = CASE WHEN last_event_kind IN ('ExtensionAddedToContext', 'InstanceUpdated', 'InstanceRemovedFromContext')
        THEN last_event_version ELSE printf('%020d0', last_event_ns) END,
    scopes_version = CASE WHEN last_event_kind IN ('ExtensionAddedToContext', 'InstanceUpdated', 'InstanceRemovedFromContext')
        THEN last_event_version ELSE printf('%020d0', last_event_ns) END,
    variant_version = CASE WHEN last_event_kind IN ('ExtensionAddedToContext', 'InstanceUpdated')
        THEN last_event_version ELSE printf('%020d0', last_event_ns) END,
    context_version = last_event_version,
    secret_version = CASE WHEN last_event_kind IN ('ExtensionAddedToContext', 'SecretRotated', 'InstanceRemovedFromContext')
        THEN last_event_version ELSE printf('%020d0', last_event_ns) END,
    removal_version = CASE WHEN last_event_kind IN ('ExtensionAddedToContext', 'InstanceRemovedFromContext')
        THEN last_event_version ELSE printf('%020d0', last_event_ns) END
WHERE last_event_ns > 0;

-- +goose Down
ALTER TABLE instances DROP COLUMN last_write_groups;
ALTER TABLE instances DROP COLUMN removal_version;
ALTER TABLE instances DROP COLUMN secret_version;
ALTER TABLE instances DROP COLUMN context_version;
ALTER TABLE instances DROP COLUMN variant_version;
ALTER TABLE instances DROP COLUMN scopes_version;
ALTER TABLE instances DROP COLUMN enabled_version;
ALTER TABLE instances DROP COLUMN last_event_version;
