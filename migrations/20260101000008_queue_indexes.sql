-- apalis.jobs carried two of its indexes twice: apalis' first migration created
-- `unique_job_id` (id) and `lidx` (lock_by); later ones added the primary key on id and
-- `idx_apalis_jobs_lock_by`, and dropped the other early indexes but not these two. A job row
-- is inserted once and updated twice (claimed, then finished), and neither update can be HOT
-- (status and lock_by are indexed), so every index costs an entry on each of the three writes.
DROP INDEX IF EXISTS apalis.unique_job_id;
DROP INDEX IF EXISTS apalis.lidx;

-- Only jobs that are running have a lock_by, and only those are ever looked up by it (orphan
-- recovery, the result's "still ours" check goes through the primary key). A partial index
-- holds just them, so finishing a job adds no entry.
CREATE INDEX IF NOT EXISTS authsync_jobs_locked ON apalis.jobs (lock_by) WHERE lock_by IS NOT NULL;
DROP INDEX IF EXISTS apalis.idx_apalis_jobs_lock_by;

-- Only scheduled runs carry an idempotency key (jobs::queue::enqueue_unique): index those rows
-- alone. Rows without a key never conflicted (NULLs are distinct), so uniqueness is unchanged.
CREATE UNIQUE INDEX IF NOT EXISTS authsync_jobs_idempotency_key ON apalis.jobs (job_type, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
DROP INDEX IF EXISTS apalis.idx_jobs_idempotency_key;
