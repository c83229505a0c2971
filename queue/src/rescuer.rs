//! The rescuer: a worker process' presence in `apalis.workers` (registration, heartbeats,
//! marking this instance dead at shutdown) and the recovery of dead workers' jobs (apalis'
//! `reenqueue_orphaned` statement). Every statement is [bounded](crate::bounded): a hung beat
//! must not outlast `dead_after` unnoticed.

use crate::bounded::{bounded, HEARTBEAT};
use crate::runner::WorkerSettings;
use crate::status::Status;
use sqlx::{PgConnection, PgPool};
use std::sync::LazyLock;
use tokio::sync::watch;

pub(crate) fn worker_id(queue: &str, instance: &str) -> String {
    format!("{queue}@{instance}")
}

async fn upsert_worker(conn: &mut PgConnection, queue: &str, id: &str) -> Result<(), sqlx::Error> {
    crate::db::query(
        "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) \
         VALUES ($1, $2, 'authsync', '', now()) \
         ON CONFLICT (id) DO UPDATE SET last_seen = now()",
    )
    .bind(id)
    .bind(queue)
    .execute(conn)
    .await?;
    Ok(())
}

/// Registers worker `id` of `queue` (or says it is alive again).
pub(crate) async fn register(pool: &PgPool, queue: &str, id: &str) -> Result<(), sqlx::Error> {
    bounded(HEARTBEAT, async {
        let mut tx = crate::db::begin(pool, HEARTBEAT).await?;
        upsert_worker(&mut tx, queue, id).await?;
        tx.commit().await
    })
    .await
}

/// Sets `last_seen` of the workers `names`: now (a beat), or long ago (`dead`: at shutdown,
/// so live workers take over whatever is left at once).
pub(crate) async fn touch(pool: &PgPool, names: &[String], dead: bool) -> Result<(), sqlx::Error> {
    bounded(HEARTBEAT, async {
        let mut tx = crate::db::begin(pool, HEARTBEAT).await?;
        crate::db::query(
            "UPDATE apalis.workers SET last_seen = CASE WHEN $2 THEN 'epoch' ELSE now() END \
             WHERE id = ANY($1)",
        )
        .bind(names)
        .bind(dead)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    })
    .await
}

/// apalis-postgres' `reenqueue_orphaned` statement (1.0), verbatim but for the interval, sent
/// through [`crate::db::query`] (apalis' own call is a named prepared statement, which a
/// transaction pooler cannot keep).
static REENQUEUE_ORPHANED: LazyLock<String> = LazyLock::new(|| {
    use Status::*;
    format!(
        "WITH stale AS (\
         SELECT jobs.id FROM apalis.jobs INNER JOIN apalis.workers ON jobs.lock_by = workers.id \
         WHERE (jobs.status = '{Running}' OR jobs.status = '{Queued}') \
           AND now() - workers.last_seen >= make_interval(secs => $1) \
           AND workers.worker_type = $2 \
         FOR UPDATE OF jobs SKIP LOCKED) \
         UPDATE apalis.jobs SET status = '{Pending}', done_at = NULL, lock_by = NULL, lock_at = NULL, \
           attempts = attempts + 1, \
           last_result = '{{\"Err\": \"Re-enqueued due to worker heartbeat timeout.\"}}' \
         FROM stale WHERE apalis.jobs.id = stale.id"
    )
});

async fn recover(pool: &PgPool, queue: &str, dead_after_secs: u64) -> Result<u64, sqlx::Error> {
    bounded(HEARTBEAT, async {
        let mut tx = crate::db::begin(pool, HEARTBEAT).await?;
        let n = crate::db::query(REENQUEUE_ORPHANED.as_str())
            .bind(dead_after_secs as f64)
            .bind(queue)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            tracing::info!(queue, jobs = n, "re-enqueued the jobs of dead workers");
        }
        tx.commit().await?;
        Ok(n)
    })
    .await
}

/// Beats every `heartbeat_interval` until `stop` changes; after each beat, re-registers (a
/// retention job may have removed the rows while we were unreachable) and requeues the jobs
/// of workers silent for `dead_after`.
pub(crate) async fn heartbeat(
    pool: PgPool,
    ids: Vec<(String, &'static str)>,
    settings: WorkerSettings,
    mut stop: watch::Receiver<bool>,
) {
    let names: Vec<String> = ids.iter().map(|(id, _)| id.clone()).collect();
    let mut tick = tokio::time::interval(settings.heartbeat_interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = touch(&pool, &names, false).await {
            tracing::warn!(error = %e, "heartbeat failed");
            continue;
        }
        for (id, queue) in &ids {
            let _ = register(&pool, queue, id).await;
            match recover(&pool, queue, settings.dead_after.as_secs()).await {
                Ok(n) if n > 0 => {
                    tracing::warn!(queue, recovered = n, "requeued jobs of dead workers")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(queue, error = %e, "orphan recovery failed"),
            }
        }
    }
}
