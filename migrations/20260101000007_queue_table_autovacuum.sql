-- apalis.jobs is a queue: every job is inserted, updated three or four times and later deleted
-- by Retention. Fetching walks the partial index `idx_apalis_jobs_fetch_partial` from the
-- oldest due job, exactly where finished jobs leave dead index entries behind, so the default
-- autovacuum trigger (20 % of the table changed) lets fetches slow down as the table grows.
-- Vacuum it after 2 % (or 1,000 rows) instead, without cost-based throttling.
ALTER TABLE apalis.jobs SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);
