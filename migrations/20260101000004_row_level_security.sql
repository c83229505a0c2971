-- Row-level security for the role authsync_user (no login; the API, and any app, switches to
-- it with SET LOCAL ROLE): it sees only rows of the Clerk user id the transaction sets in
-- authsync.clerk_user_id (set_config(..., true)). Without the setting it sees nothing.
-- The service's own connection owns the tables and is not subject to these policies.

-- Roles are cluster-wide: several databases of one cluster may run this at once, so both
-- steps tolerate a concurrent twin.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authsync_user') THEN
        BEGIN
            CREATE ROLE authsync_user NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    -- The connecting user may switch to it (superusers always can).
    IF NOT pg_has_role(current_user, 'authsync_user', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT authsync_user TO %I', current_user);
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'granting authsync_user to % failed: %', current_user, SQLERRM;
        END;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO authsync_user;
GRANT SELECT ON users TO authsync_user;
-- Profile fields only: ids, email, role and versions stay Clerk's (a user must not make
-- itself an admin).
GRANT UPDATE (first_name, last_name, username, image_url) ON users TO authsync_user;
GRANT SELECT ON memberships, organizations TO authsync_user;

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS users_own_row ON users;
CREATE POLICY users_own_row ON users TO authsync_user
    USING (clerk_user_id = current_setting('authsync.clerk_user_id', true));

DROP POLICY IF EXISTS memberships_own ON memberships;
CREATE POLICY memberships_own ON memberships TO authsync_user
    USING (clerk_user_id = current_setting('authsync.clerk_user_id', true));

DROP POLICY IF EXISTS organizations_of_member ON organizations;
CREATE POLICY organizations_of_member ON organizations TO authsync_user
    USING (EXISTS (
        SELECT 1 FROM memberships m
        WHERE m.clerk_org_id = organizations.clerk_org_id
          AND m.clerk_user_id = current_setting('authsync.clerk_user_id', true)
          AND m.deleted_at IS NULL
    ));
