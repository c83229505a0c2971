-- The operator console's look-ups (GET /admin/api/search, /admin/api/users/{id},
-- /admin/api/events/{svix_id}): each one an index scan, so they stay fast however long the
-- event log and the queue grow.

-- The Clerk id an event is about: the user of user.*, session.* and email/sms events and of a
-- membership (its public_user_data), the organization of organization.*. The console's
-- queries call this function, so they match the index below exactly.
CREATE OR REPLACE FUNCTION webhook_event_subject(payload jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN payload ->> 'type' LIKE 'user.%' THEN payload -> 'data' ->> 'id'
        WHEN payload ->> 'type' LIKE 'organization.%' THEN payload -> 'data' ->> 'id'
        WHEN payload ->> 'type' LIKE 'organizationMembership.%'
            THEN payload -> 'data' -> 'public_user_data' ->> 'user_id'
        ELSE payload -> 'data' ->> 'user_id'
    END
$$;

-- Partial: rejected bodies and events about no one (an email to a new address) add nothing.
CREATE INDEX IF NOT EXISTS webhook_events_subject_idx ON webhook_events (webhook_event_subject(payload), received_at)
    WHERE webhook_event_subject(payload) IS NOT NULL;

-- The jobs of one event (its `svix_id` metadata, which the completion hook also reads).
-- Partial: scheduled and fallback jobs carry none.
CREATE INDEX IF NOT EXISTS authsync_jobs_svix_id ON apalis.jobs ((metadata -> 'svix_id'))
    WHERE (metadata -> 'svix_id') IS NOT NULL;

-- Search by the start of an address (`alice@` finds alice@example.com) whatever the
-- database's collation.
CREATE INDEX IF NOT EXISTS users_email_prefix_idx ON users (email text_pattern_ops);
