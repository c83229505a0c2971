//! The claim: taking due jobs of one queue for a worker, in one bounded statement.

use crate::bounded::{bounded, CLAIM};
use crate::status::{Predicate, Status};
use sqlx::postgres::types::PgHstore;
use sqlx::PgPool;
use std::sync::LazyLock;

/// A job claimed by this worker: what running and recording it needs.
#[derive(sqlx::FromRow)]
pub(crate) struct Claimed {
    pub(crate) id: String,
    /// The encoded job.
    #[sqlx(rename = "job")]
    pub(crate) args: Vec<u8>,
    /// Runs so far (`apalis.jobs.attempts`).
    pub(crate) attempts: i32,
    pub(crate) max_attempts: i32,
    pub(crate) metadata: Option<PgHstore>,
}

/// Claims up to `n` due jobs of `queue` for `worker` and marks them running, in ONE prepared
/// statement: the rows apalis' `get_jobs` would pick (same predicate and order, so its partial
/// index `idx_apalis_jobs_fetch_partial` serves it), set `Running` as its `lock_tasks` would.
/// `get_jobs` is a SQL function, planned again on every call: with `lock_tasks` after it, the
/// pair cost about 2.7 ms of database time per fetch, the drain's largest cost
/// (BENCHMARKS.md). One statement is also atomic: no job is ever left claimed but not running.
/// It runs in a transaction of its own bounded by [`CLAIM`] (BEGIN and its limits are one
/// round trip), so a claim stuck on a table lock or a dead socket ends with an error.
pub(crate) async fn fetch(
    pool: &PgPool,
    queue: &str,
    worker: &str,
    n: usize,
) -> Result<Vec<Claimed>, sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE apalis.jobs AS j SET status = '{}', lock_by = $1, lock_at = now() \
             FROM (SELECT id FROM apalis.jobs \
                   WHERE job_type = $2 AND {} AND run_at < now() \
                   ORDER BY priority DESC, run_at ASC LIMIT $3 FOR UPDATE SKIP LOCKED) AS due \
             WHERE j.id = due.id \
             RETURNING j.id, j.job, j.attempts, j.max_attempts, j.metadata",
            Status::Running,
            Predicate::Runnable
        )
    });
    let claim = crate::db::query_as(SQL.as_str())
        .bind(worker)
        .bind(queue)
        .bind(n.max(1) as i64);
    bounded(CLAIM, async {
        let mut tx = crate::db::begin(pool, CLAIM).await?;
        let claimed = claim.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(claimed)
    })
    .await
}
