//! `apalis.jobs` as operators read it: by state, by event (the `svix_id` metadata the
//! completion hook reads too, indexed by migration `…0012`), by user, by id, and retries over
//! time. The queue crate owns the table; states are spelled only through its [`Predicate`],
//! so the statements are composed at run time and checked at run time.

use crate::db;
use crate::queue::Predicate;
use sqlx::{FromRow, PgPool};
use std::sync::LazyLock;

type Time = chrono::DateTime<chrono::Utc>;

/// A job as the operator routes show it.
#[derive(Debug, Clone, FromRow)]
pub struct JobRow {
    pub id: String,
    pub queue: String,
    /// apalis' status (see [`crate::queue::status::state`]).
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    /// The last failure's error, kept until the job succeeds.
    pub last_error: Option<String>,
    pub run_at: Time,
    /// When its last run ended.
    pub done_at: Option<Time>,
    /// The webhook delivery that caused it.
    pub svix_id: Option<String>,
}

/// A succeeded job's `last_result` holds `Ok`, so its `Err` is null.
const COLUMNS: &str = "id, job_type AS queue, status, attempts, max_attempts, \
    last_result ->> 'Err' AS last_error, run_at, done_at, metadata -> 'svix_id' AS svix_id";

/// Jobs matching `which` (optionally of one queue), the latest finished first.
pub async fn by_state(
    pool: &PgPool,
    which: Predicate,
    queue: Option<&str>,
    limit: i64,
) -> Result<Vec<JobRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM apalis.jobs WHERE {which} AND ($1::text IS NULL OR job_type = $1) \
         ORDER BY done_at DESC NULLS LAST LIMIT $2"
    );
    db::query_as(sqlx::AssertSqlSafe(sql))
        .bind(queue)
        .bind(limit)
        .fetch_all(db::on(pool))
        .await
}

/// The jobs of the webhook deliveries `svix_ids`, and the dashboard-fallback jobs Clerk user
/// `cid` asked for (`sync_jobs`), the latest first.
pub async fn of_events_or_user(
    pool: &PgPool,
    svix_ids: &[String],
    cid: Option<&str>,
    limit: i64,
) -> Result<Vec<JobRow>, sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT * FROM ( \
               SELECT {COLUMNS} FROM apalis.jobs WHERE (metadata -> 'svix_id') = ANY($1::text[]) \
               UNION ALL \
               SELECT {COLUMNS} FROM apalis.jobs \
               WHERE id IN (SELECT job_id FROM sync_jobs WHERE clerk_user_id = $2) \
                 AND NOT (metadata ? 'svix_id')) AS j \
             ORDER BY COALESCE(done_at, run_at) DESC, id DESC LIMIT $3"
        )
    });
    db::query_as(SQL.as_str())
        .bind(svix_ids)
        .bind(cid)
        .bind(limit)
        .fetch_all(db::on(pool))
        .await
}

/// The job `q`, or the jobs of the delivery `q`.
pub async fn search(pool: &PgPool, q: &str, limit: i64) -> Result<Vec<JobRow>, sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {COLUMNS} FROM apalis.jobs WHERE id = $1 OR (metadata -> 'svix_id') = $1 \
             ORDER BY id DESC LIMIT $2"
        )
    });
    db::query_as(SQL.as_str())
        .bind(q)
        .bind(limit)
        .fetch_all(db::on(pool))
        .await
}

/// Per bucket of `step_secs` seconds since `since`: the jobs whose latest run, ending in that
/// bucket, was a retry (more than one attempt). Only jobs created after `created_after` are
/// read: job ids are ULIDs, which sort by creation time, so the primary key bounds the scan.
pub async fn retries(
    pool: &PgPool,
    step_secs: i32,
    since: Time,
    created_after: Time,
) -> Result<Vec<(Time, i64)>, sqlx::Error> {
    let floor = ulid::Ulid::from_parts(created_after.timestamp_millis().max(0) as u64, 0);
    db::query_as(
        "SELECT date_bin(make_interval(secs => $1::int), done_at, timestamptz '2000-01-01'), count(*) \
         FROM apalis.jobs WHERE id >= $2 AND done_at >= $3 \
           AND attempts > 1 GROUP BY 1",
    )
    .bind(step_secs)
    .bind(floor.to_string())
    .bind(since)
    .fetch_all(db::on(pool))
    .await
}
