-- apalis-postgres' trigger sends one pg_notify per inserted job row, inside the inserting
-- transaction. A NOTIFY makes its transaction's commit take a cluster-wide lock, so every
-- webhook intake commit waited for every other one (BENCHMARKS.md: 0.17x of plain inserts).
-- We send one coalesced NOTIFY after commit instead (jobs::queue::Notifier), on the same
-- channel and with the same `job_type` field apalis' listeners read. The function stays so a
-- later apalis migration that drops it still applies.
DROP TRIGGER IF EXISTS notify_workers ON apalis.jobs;
