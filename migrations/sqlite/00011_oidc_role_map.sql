-- +goose Up
-- A provider's group → role map: a JSON array of {"group": G, "role": R} with R member
-- or admin. Empty: accounts made through the provider get its default_role and later
-- sign-ins leave roles alone. Not empty: the role is derived from the groups claim at
-- provisioning and re-derived at every sign-in through the provider (the highest role of
-- the matching groups, else default_role); an owner's role is never changed.
ALTER TABLE oidc_providers ADD COLUMN role_map TEXT NOT NULL DEFAULT '[]';

-- +goose Down
ALTER TABLE oidc_providers DROP COLUMN role_map;
