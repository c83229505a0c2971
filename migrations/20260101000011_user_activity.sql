-- The activity log: one row per session event Clerk sends (session.created, .ended, .removed,
-- .revoked), with the client's IP and user agent from the event's
-- `event_attributes.http_request`. Kept under the same retention as webhook_events.
-- A user reads only their own rows (GET /v1/me/activity, row-level security as in
-- 20260101000004_row_level_security.sql).
CREATE TABLE IF NOT EXISTS user_activity (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    clerk_user_id text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('session.created', 'session.ended', 'session.removed', 'session.revoked')),
    session_id    text NOT NULL,
    -- When it happened at Clerk: the event's `timestamp` (Unix ms).
    occurred_at   timestamptz NOT NULL,
    client_ip     text,
    user_agent    text,
    -- The delivery it came from: a redelivered event records nothing twice.
    svix_id       text NOT NULL UNIQUE,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS user_activity_user_idx ON user_activity (clerk_user_id, occurred_at DESC);
CREATE INDEX IF NOT EXISTS user_activity_recorded_idx ON user_activity (recorded_at);

GRANT SELECT ON user_activity TO authsync_user;
ALTER TABLE user_activity ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS user_activity_own ON user_activity;
CREATE POLICY user_activity_own ON user_activity TO authsync_user
    USING (clerk_user_id = current_setting('authsync.clerk_user_id', true));
