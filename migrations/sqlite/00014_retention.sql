-- +goose Up
-- Erasure of a removed instance's data after the grace period (EXT_RETENTION_AFTER_REMOVAL;
-- extension.EraseRemovedInstance). erased_removal_at is the removed_at of the removal
-- whose data was erased: NULL while nothing was erased. A re-install sets removed_at to
-- NULL and a later removal to a new time, so the instance is due again exactly when
-- removed_at is set and differs from it. The value is copied from removed_at in SQL, so
-- the two compare equal on both dialects, whatever clock either replica keeps.
ALTER TABLE instances ADD COLUMN erased_removal_at DATETIME;
-- The hourly search for removals past their grace reads only tombstones.
CREATE INDEX instances_removed_at ON instances (removed_at) WHERE removed_at IS NOT NULL;

-- +goose Down
DROP INDEX instances_removed_at;
ALTER TABLE instances DROP COLUMN erased_removal_at;
