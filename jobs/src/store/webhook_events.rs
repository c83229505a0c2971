//! `webhook_events`: the durable log of deliveries, written by intake, retention and the
//! operator routes, and kept up to date as their jobs finish by the queue runtime's completion
//! hook ([`WebhookEventProgress`]), whose CTEs run in the same statement that writes the jobs'
//! results (see `authsync_queue::CompletionHook` for what `done` holds).
//!
//! The operator's reads (search, a user's events, stats per time bucket) go through
//! `webhook_event_subject(payload)`, the migration's indexed function naming the Clerk id an
//! event is about.

use crate::db;
use crate::queue;
use authsync_queue::CompletionHook;
use sqlx::{FromRow, PgConnection, PgPool, Row};
use std::sync::LazyLock;

/// Keeps each finished job's webhook event (its `svix_id` metadata) up to date. Several
/// results of one event are summed: attempts, finished jobs; any final failure marks the event
/// failed, and its error is the one kept. Event rows are locked in svix-id order first, so two
/// processes writing results of the same events wait for each other instead of deadlocking.
pub struct WebhookEventProgress;

impl CompletionHook for WebhookEventProgress {
    fn ctes(&self) -> &'static str {
        ", per_event AS (\
           SELECT metadata -> 'svix_id' AS svix_id, count(*)::int AS runs, \
                  count(*) FILTER (WHERE outcome = 'succeeded')::int AS ok, \
                  bool_or(outcome IN ('exhausted', 'killed')) AS failed, \
                  (array_agg(error ORDER BY outcome IN ('exhausted', 'killed') DESC) \
                     FILTER (WHERE error IS NOT NULL))[1] AS error \
           FROM done WHERE metadata -> 'svix_id' IS NOT NULL GROUP BY 1), \
         locked AS MATERIALIZED (\
           SELECT w.svix_id FROM webhook_events AS w JOIN per_event USING (svix_id) \
           ORDER BY w.svix_id FOR NO KEY UPDATE OF w), \
         events AS (\
           UPDATE webhook_events AS w SET attempts = w.attempts + e.runs, \
             pending_jobs = GREATEST(w.pending_jobs - e.ok, 0), \
             last_error = CASE WHEN w.status = 'failed' AND NOT e.failed THEN w.last_error \
                               ELSE COALESCE(e.error, w.last_error) END, \
             status = CASE WHEN e.failed THEN 'failed' \
                           WHEN e.ok > 0 AND w.status = 'queued' AND w.pending_jobs <= e.ok THEN 'processed' \
                           ELSE w.status END, \
             processed_at = CASE WHEN NOT e.failed AND e.ok > 0 AND w.status = 'queued' \
                                      AND w.pending_jobs <= e.ok THEN now() \
                                 ELSE w.processed_at END \
           FROM per_event AS e JOIN locked USING (svix_id) WHERE w.svix_id = e.svix_id)"
    }
}

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

type Time = chrono::DateTime<chrono::Utc>;

/// An event as the admin list shows it.
#[derive(Debug, Clone, FromRow)]
pub struct EventSummary {
    pub svix_id: String,
    pub event_type: String,
    pub status: String,
    pub received_at: Time,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub processed_at: Option<Time>,
}

/// Which events [`list`] returns: every filter is optional; `after` is the cursor (the last
/// row of the previous page), in the list's order.
#[derive(Debug, Clone, Default)]
pub struct EventFilter<'a> {
    pub event_type: Option<&'a str>,
    pub status: Option<&'a str>,
    pub since: Option<Time>,
    pub until: Option<Time>,
    pub after: Option<(Time, &'a str)>,
    pub ascending: bool,
    pub limit: i64,
}

/// One page of events, by `received_at` then `svix_id`.
pub async fn list(pool: &PgPool, f: &EventFilter<'_>) -> Result<Vec<EventSummary>, sqlx::Error> {
    sqlx::query_as!(
        EventSummary,
        "SELECT svix_id, event_type, status, received_at, attempts, last_error, processed_at FROM webhook_events \
         WHERE ($1::text IS NULL OR event_type = $1) AND ($2::text IS NULL OR status = $2) \
           AND ($3::timestamptz IS NULL OR received_at >= $3) AND ($4::timestamptz IS NULL OR received_at < $4) \
           AND ($5::timestamptz IS NULL OR (CASE WHEN $7::bool THEN (received_at, svix_id) > ($5, $6::text) \
                                                 ELSE (received_at, svix_id) < ($5, $6::text) END)) \
         ORDER BY CASE WHEN $7 THEN received_at END ASC, CASE WHEN $7 THEN svix_id END ASC, \
                  CASE WHEN NOT $7 THEN received_at END DESC, CASE WHEN NOT $7 THEN svix_id END DESC \
         LIMIT $8",
        f.event_type,
        f.status,
        f.since,
        f.until,
        f.after.map(|a| a.0),
        f.after.map(|a| a.1),
        f.ascending,
        f.limit,
    )
    .fetch_all(db::on(pool))
    .await
}

/// An event with its payload, as the admin detail shows it.
#[derive(Debug, Clone, FromRow)]
pub struct EventDetail {
    pub event_type: String,
    pub status: String,
    pub payload: serde_json::Value,
    pub received_at: Time,
    pub attempts: i32,
    pub pending_jobs: i32,
    pub last_error: Option<String>,
}

/// [`EventDetail`] of `svix_id`.
pub async fn detail(pool: &PgPool, svix_id: &str) -> Result<Option<EventDetail>, sqlx::Error> {
    sqlx::query_as!(
        EventDetail,
        "SELECT event_type, status, payload, received_at, attempts, pending_jobs, last_error \
         FROM webhook_events WHERE svix_id = $1",
        svix_id,
    )
    .fetch_optional(db::on(pool))
    .await
}

/// The payload of `svix_id`, its row locked for the rest of the transaction.
pub async fn lock_payload(
    conn: &mut PgConnection,
    svix_id: &str,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT payload FROM webhook_events WHERE svix_id = $1 FOR UPDATE",
        svix_id,
    )
    .fetch_optional(db::tx(conn))
    .await
}

/// The event is `queued` again, with `jobs` more jobs pending (a replay).
pub async fn requeue(conn: &mut PgConnection, svix_id: &str, jobs: i32) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE webhook_events SET status = 'queued', pending_jobs = pending_jobs + $2, processed_at = NULL \
         WHERE svix_id = $1",
        svix_id,
        jobs,
    )
    .execute(db::tx(conn))
    .await?;
    Ok(())
}

/// A `failed` event is `queued` again (one of its jobs is retried).
pub async fn reopen_failed(conn: &mut PgConnection, svix_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE webhook_events SET status = 'queued', processed_at = NULL \
         WHERE svix_id = $1 AND status = 'failed'",
        svix_id,
    )
    .execute(db::tx(conn))
    .await?;
    Ok(())
}

/// Events whose svix id is `q`, or about the Clerk user or organization `q` (the migration's
/// `webhook_event_subject`, indexed), newest first.
pub async fn search(pool: &PgPool, q: &str, limit: i64) -> Result<Vec<EventSummary>, sqlx::Error> {
    sqlx::query_as!(
        EventSummary,
        "SELECT svix_id, event_type, status, received_at, attempts, last_error, processed_at \
         FROM webhook_events WHERE svix_id = $1 OR webhook_event_subject(payload) = $1 \
         ORDER BY received_at DESC, svix_id DESC LIMIT $2",
        q,
        limit,
    )
    .fetch_all(db::on(pool))
    .await
}

/// The events about Clerk user (or organization) `subject`, newest first.
pub async fn of_subject(
    pool: &PgPool,
    subject: &str,
    limit: i64,
) -> Result<Vec<EventSummary>, sqlx::Error> {
    sqlx::query_as!(
        EventSummary,
        "SELECT svix_id, event_type, status, received_at, attempts, last_error, processed_at \
         FROM webhook_events WHERE webhook_event_subject(payload) = $1 \
         ORDER BY received_at DESC, svix_id DESC LIMIT $2",
        subject,
        limit,
    )
    .fetch_all(db::on(pool))
    .await
}

/// The events received in one bucket of [`stats`].
#[derive(Debug, Clone, FromRow)]
pub struct Bucket {
    /// The bucket's start.
    pub at: Time,
    pub received: i64,
    /// Of those, processed by now.
    pub processed: i64,
    /// Of those, `failed` or `rejected`.
    pub failed: i64,
    /// Received to processed, in milliseconds, over the bucket's processed events.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

/// `buckets` consecutive buckets of `step_secs` seconds, the last one holding now, of the
/// events received in each (buckets align to multiples of the step since 2000-01-01 UTC).
pub async fn stats(
    pool: &PgPool,
    step_secs: i32,
    buckets: i32,
) -> Result<Vec<Bucket>, sqlx::Error> {
    sqlx::query_as!(
        Bucket,
        r#"WITH step AS (SELECT make_interval(secs => $1::int) AS step),
           buckets AS (
             SELECT generate_series(date_bin(step, now(), timestamptz '2000-01-01') - step * ($2::int - 1),
                                    date_bin(step, now(), timestamptz '2000-01-01'), step) AS at
             FROM step),
           per AS (
             SELECT date_bin(step, received_at, timestamptz '2000-01-01') AS at, count(*) AS received,
                    count(*) FILTER (WHERE status = 'processed') AS processed,
                    count(*) FILTER (WHERE status IN ('failed', 'rejected')) AS failed,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)::float8 * 1000)
                      FILTER (WHERE status = 'processed') AS p50,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)::float8 * 1000)
                      FILTER (WHERE status = 'processed') AS p95
             FROM webhook_events, step
             WHERE received_at >= (SELECT min(at) FROM buckets)
             GROUP BY 1)
           SELECT b.at AS "at!", COALESCE(p.received, 0) AS "received!", COALESCE(p.processed, 0) AS "processed!",
                  COALESCE(p.failed, 0) AS "failed!", p.p50 AS "p50_ms?", p.p95 AS "p95_ms?"
           FROM buckets AS b LEFT JOIN per AS p USING (at) ORDER BY b.at"#,
        step_secs,
        buckets,
    )
    .fetch_all(db::on(pool))
    .await
}
