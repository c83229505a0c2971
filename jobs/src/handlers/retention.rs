//! Retention: deletes what nobody needs any more — finished jobs, processed and ignored
//! webhook events past their age, activity-log entries past the same age, and rows of workers long dead with no job pointing at them.
//! Failed, dead and rejected items are never deleted: an operator has not resolved them.
//! The worker schedules it (every `RETENTION_INTERVAL_SECS`, one run per interval across all
//! processes, through apalis' idempotency key).

use crate::audit::Origin;
use crate::context::JobContext;
use crate::error::JobError;
use crate::queue::Job;
use crate::store::{audit, user_activity, webhook_events};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Finished (`Done`) jobs older than this many seconds go.
    pub jobs_older_than_secs: i64,
    /// `processed` and `ignored` webhook events older than this many seconds go, and so do
    /// activity-log entries recorded that long ago.
    pub events_older_than_secs: i64,
    pub origin: Origin,
}

/// What one run deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Deleted {
    pub jobs: u64,
    pub events: u64,
    pub activity: u64,
    pub workers: u64,
}

/// Rows deleted per statement, so a large backlog never holds long locks.
const BATCH: i64 = 5000;

impl Job for Retention {
    type Context = JobContext;
    /// Never rename: queued rows carry it.
    const QUEUE: &'static str = "authsync.retention";
    const MAX_ATTEMPTS: u32 = 5;
    /// A large backlog takes many batches; each commits on its own, so a run cut short
    /// leaves its progress for the next one.
    const DEADLINE: std::time::Duration = std::time::Duration::from_secs(15 * 60);
    /// A batch of 5,000 deletions may take a while on a busy table; a row lock held by a
    /// result writer is released in milliseconds.
    const DB_LIMITS: crate::db::TxLimits = crate::db::TxLimits::new(5_000, 60_000);

    fn metadata(&self) -> crate::queue::Metadata {
        self.origin.metadata()
    }

    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        let d = run(ctx, &self).await?;
        // A transaction of its own: one statement, but behind a transaction pooler every
        // statement must be in one (crate::db).
        let mut tx = ctx.pool.begin().await?;
        audit::record(&mut tx, &self.origin, "retention.run", "system", json!(d)).await?;
        tx.commit().await?;
        tracing::info!(
            jobs = d.jobs,
            events = d.events,
            activity = d.activity,
            workers = d.workers,
            "retention done"
        );
        Ok(())
    }
}

/// What [`batched`] deletes.
#[derive(Clone, Copy)]
enum Finished {
    Jobs,
    Events,
    Activity,
}

/// Finished jobs: the queue crate's statuses, so they are spelled once.
static JOBS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "DELETE FROM apalis.jobs WHERE id IN (SELECT id FROM apalis.jobs WHERE {} \
         AND done_at < now() - make_interval(secs => $1) LIMIT $2)",
        crate::queue::Predicate::Done
    )
});

/// Deletes up to `limit` of the finished items older than `age` seconds.
async fn delete_batch(
    conn: &mut PgConnection,
    what: Finished,
    age: i64,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    match what {
        Finished::Jobs => Ok(crate::db::query(JOBS.as_str())
            .bind(age)
            .bind(limit)
            .execute(conn)
            .await?
            .rows_affected()),
        Finished::Events => webhook_events::delete_finished(conn, age, limit).await,
        Finished::Activity => user_activity::delete_older(conn, age, limit).await,
    }
}

async fn batched(ctx: &JobContext, what: Finished, age: i64) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let mut tx = ctx.begin().await?;
        let n = delete_batch(&mut tx, what, age, BATCH).await?;
        tx.commit().await?;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Deletes in batches; returns the counts.
pub async fn run(ctx: &JobContext, r: &Retention) -> Result<Deleted, sqlx::Error> {
    let jobs = batched(ctx, Finished::Jobs, r.jobs_older_than_secs).await?;
    let events = batched(ctx, Finished::Events, r.events_older_than_secs).await?;
    let activity = batched(ctx, Finished::Activity, r.events_older_than_secs).await?;
    // Workers silent for a day with no job locked by them (apalis.jobs.lock_by references them).
    let mut tx = ctx.begin().await?;
    let workers = crate::db::query(
        "DELETE FROM apalis.workers w WHERE w.last_seen < now() - interval '1 day' \
         AND NOT EXISTS (SELECT 1 FROM apalis.jobs j WHERE j.lock_by = w.id)",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Deleted {
        jobs,
        events,
        activity,
        workers,
    })
}
