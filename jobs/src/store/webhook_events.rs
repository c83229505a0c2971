//! `webhook_events`: the durable log of deliveries, written by intake and retention here (the
//! job runner's result statement keeps its bookkeeping in the queue module for now).

use crate::db;
use crate::queue;
use sqlx::{PgConnection, PgPool, Row};
use std::sync::LazyLock;

/// A verified delivery to store.
pub struct NewEvent<'a> {
    pub svix_id: &'a str,
    pub event_type: &'a str,
    /// The raw body (JSON).
    pub payload: &'a str,
    /// `queued` with jobs, `ignored` without.
    pub status: &'a str,
    pub pending_jobs: i32,
}

/// Stores `events` (sorted by svix-id, at most one per svix-id) and `jobs` in ONE statement:
/// each event row, and the job rows of exactly the events that were new (by their `svix_id`
/// metadata). Returns the svix-ids stored now; the others were stored before. An unnest batch
/// composed with the queue's insert at run time: runtime-checked.
pub(crate) async fn insert_with_jobs(
    pool: &PgPool,
    events: &[NewEvent<'_>],
    jobs: &queue::Rows,
) -> Result<Vec<String>, sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH ev AS (\
               INSERT INTO webhook_events (svix_id, event_type, payload, status, pending_jobs, processed_at) \
               SELECT e.svix_id, e.event_type, e.payload::jsonb, e.status, e.pending_jobs, \
                      CASE WHEN e.status = 'ignored' THEN now() END \
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::integer[]) \
                 AS e (svix_id, event_type, payload, status, pending_jobs) \
               ON CONFLICT (svix_id) DO NOTHING RETURNING svix_id), \
             queued AS ({} WHERE r.metadata -> 'svix_id' IN (SELECT svix_id FROM ev)) \
             SELECT svix_id FROM ev",
            queue::insert_jobs_sql(6)
        )
    });
    fn column<'a>(events: &[NewEvent<'a>], f: fn(&NewEvent<'a>) -> &'a str) -> Vec<&'a str> {
        events.iter().map(f).collect()
    }
    let query = db::query(SQL.as_str())
        .bind(column(events, |e| e.svix_id))
        .bind(column(events, |e| e.event_type))
        .bind(column(events, |e| e.payload))
        .bind(column(events, |e| e.status))
        .bind(events.iter().map(|e| e.pending_jobs).collect::<Vec<i32>>());
    let stored = jobs.bind(query).fetch_all(db::on(pool)).await?;
    stored.iter().map(|r| r.try_get(0)).collect()
}

/// Records a delivery we refused (`rejected`, with `reason`). A repeat of the same svix-id
/// keeps the first record. Returns whether it was new.
pub async fn insert_rejected(
    pool: &PgPool,
    svix_id: &str,
    event_type: &str,
    payload: serde_json::Value,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query!(
        "INSERT INTO webhook_events (svix_id, event_type, payload, status, last_error, processed_at) \
         VALUES ($1, $2, $3, 'rejected', $4, now()) ON CONFLICT (svix_id) DO NOTHING",
        svix_id,
        event_type,
        payload,
        reason,
    )
    .execute(db::on(pool))
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Deletes up to `limit` `processed` and `ignored` events received more than `age_secs`
/// seconds ago; how many it deleted.
pub async fn delete_finished(
    conn: &mut PgConnection,
    age_secs: i64,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM webhook_events WHERE svix_id IN (SELECT svix_id FROM webhook_events \
         WHERE status IN ('processed', 'ignored') AND received_at < now() - make_interval(secs => $1::bigint) LIMIT $2)",
        age_secs,
        limit,
    )
    .execute(db::tx(conn))
    .await?;
    Ok(done.rows_affected())
}
