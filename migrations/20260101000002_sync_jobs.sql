-- Dashboard-fallback jobs by the user who asked: who may read a job, and the one outstanding
-- urgent job per user.
CREATE TABLE IF NOT EXISTS sync_jobs (
    job_id        text PRIMARY KEY,
    clerk_user_id text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS sync_jobs_user_idx ON sync_jobs (clerk_user_id, created_at DESC);
