-- Deletions a Reconcile run held back because there were more than RECONCILE_MAX_DELETIONS of
-- them (a key of another Clerk instance, an API that lists nobody): kept until an operator
-- confirms them (`POST /admin/api/reconcile/{job_id}/confirm`), which marks them confirmed and
-- enqueues their SoftDelete jobs in one transaction, so confirming twice applies them once.
-- A later run that completes supersedes the holds nobody confirmed: it saw Clerk afresh (and
-- holds again if the problem persists), so an old hold can never be confirmed by mistake.
CREATE TABLE IF NOT EXISTS reconcile_held_deletions (
    job_id        text NOT NULL,
    clerk_user_id text NOT NULL,
    -- When the run saw the user gone (Unix ms): the deletion time SoftDelete records.
    deleted_at_ms bigint NOT NULL,
    held_at       timestamptz NOT NULL DEFAULT now(),
    confirmed_at  timestamptz,
    confirmed_by  text,
    -- The later run that replaced this unconfirmed hold.
    superseded_by text,
    PRIMARY KEY (job_id, clerk_user_id)
);
