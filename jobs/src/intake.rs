//! Intake: a verified, parsed webhook becomes a `webhook_events` row and its jobs in ONE
//! transaction, so a 2xx is only ever sent for an event that is durable with its work.

use crate::clerk::ClerkEvent;
use crate::ids::SvixId;
use crate::planner;
use crate::queue::{self, EnqueueError};
use sqlx::{PgPool, Row};
use std::sync::LazyLock;
use ulid::Ulid;

/// What happened to a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeOutcome {
    /// New event; its jobs are queued.
    Accepted { job_ids: Vec<Ulid> },
    /// This svix-id was stored before: nothing was enqueued again.
    Duplicate,
    /// New event of a type we do not act on: stored as `ignored`.
    Ignored,
}

/// Storing failed; nothing was committed.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("database error during intake")]
    Database(#[from] sqlx::Error),
    #[error("enqueueing the event's jobs failed")]
    Enqueue(#[from] EnqueueError),
}

/// Records the event and enqueues its planned jobs atomically, then wakes the workers.
/// `body` is the verified raw body.
///
/// One statement, committed on its own: the event row and, only when that row is new, its job
/// rows. One round trip instead of four (BEGIN, two inserts, COMMIT) is what the api and the
/// database each spend most of their time on per delivery (BENCHMARKS.md).
pub async fn accept(
    pool: &PgPool,
    notifier: &queue::Notifier,
    svix_id: &SvixId,
    event: &ClerkEvent,
    body: &str,
    request_id: Option<&str>,
) -> Result<IntakeOutcome, IntakeError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH ev AS (\
               INSERT INTO webhook_events (svix_id, event_type, payload, status, pending_jobs, processed_at) \
               VALUES ($1, $2, $3::jsonb, $4, $5, CASE WHEN $4 = 'ignored' THEN now() END) \
               ON CONFLICT (svix_id) DO NOTHING RETURNING 1), \
             queued AS ({} WHERE EXISTS (SELECT FROM ev)) \
             SELECT EXISTS (SELECT FROM ev)",
            queue::insert_jobs_sql(6)
        )
    });
    let jobs = planner::plan(svix_id, event);
    let rows = queue::Rows::planned(&jobs, request_id)?;
    let status = if jobs.is_empty() { "ignored" } else { "queued" };
    let query = sqlx::query(SQL.as_str())
        .bind(svix_id.as_str())
        .bind(&event.event_type)
        .bind(body)
        .bind(status)
        .bind(jobs.len() as i32);
    let inserted: bool = rows.bind(query).fetch_one(pool).await?.get(0);
    if !inserted {
        return Ok(IntakeOutcome::Duplicate);
    }
    if jobs.is_empty() {
        return Ok(IntakeOutcome::Ignored);
    }
    notifier.wake_all(jobs.iter().map(|j| j.queue()));
    Ok(IntakeOutcome::Accepted {
        job_ids: rows.ids().to_vec(),
    })
}

/// Records a signed delivery whose body we could not parse, so nothing is dropped silently.
/// A repeat of the same svix-id keeps the first record. Returns whether it was new.
pub async fn reject(
    pool: &PgPool,
    svix_id: &SvixId,
    body: &[u8],
    reason: &str,
) -> Result<bool, sqlx::Error> {
    // The payload column is jsonb: keep valid JSON as is, wrap anything else as text. jsonb
    // cannot hold NUL: JSON with a \u0000 escape is kept as text (where the escape is just six
    // characters), and raw NUL bytes become U+FFFD.
    let parsed = if crate::clerk::has_nul_escape(body) {
        None
    } else {
        serde_json::from_slice::<serde_json::Value>(body).ok()
    };
    let payload = parsed.unwrap_or_else(
        || serde_json::json!({ "raw": String::from_utf8_lossy(body).replace('\0', "\u{FFFD}") }),
    );
    let event_type = payload
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("unknown")
        .chars()
        .filter(|&c| c != '\0')
        .take(200)
        .collect::<String>();
    let r = sqlx::query(
        "INSERT INTO webhook_events (svix_id, event_type, payload, status, last_error, processed_at) \
         VALUES ($1, $2, $3, 'rejected', $4, now()) ON CONFLICT (svix_id) DO NOTHING",
    )
    .bind(svix_id.as_str())
    .bind(event_type)
    .bind(payload)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}
