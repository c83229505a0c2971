-- authsync app schema: users, the durable webhook event log and the audit trail.
-- Forward-only; every statement is safe to run twice.

CREATE TABLE IF NOT EXISTS users (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    clerk_user_id    text UNIQUE,
    email            text,
    email_verified   boolean NOT NULL DEFAULT false,
    first_name       text,
    last_name        text,
    username         text,
    image_url        text,
    role             text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    -- Clerk's `updated_at` (Unix ms) of the snapshot the row reflects: the version guard.
    clerk_updated_at bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- Soft delete. A row that only has clerk_user_id and deleted_at is a tombstone:
    -- the delete arrived before anything else, and no late create may resurrect it.
    deleted_at       timestamptz
);

-- The primary email is unique among live rows only: a deleted user frees its address.
CREATE UNIQUE INDEX IF NOT EXISTS users_email_live_key ON users (email) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS webhook_events (
    svix_id      text PRIMARY KEY,
    event_type   text NOT NULL,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    status       text NOT NULL CHECK (status IN ('queued', 'processed', 'failed', 'ignored', 'rejected')),
    -- Jobs planned from this event that have not finished yet; the event is processed at 0.
    pending_jobs integer NOT NULL DEFAULT 0,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    processed_at timestamptz
);

CREATE INDEX IF NOT EXISTS webhook_events_received_at_idx ON webhook_events (received_at);
CREATE INDEX IF NOT EXISTS webhook_events_status_idx ON webhook_events (status, received_at);

CREATE TABLE IF NOT EXISTS audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    subject     text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    client_ip   text,
    user_agent  text
);

CREATE INDEX IF NOT EXISTS audit_log_subject_idx ON audit_log (subject, at);
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON audit_log (at);
