//! `user_activity`: the activity log, one row per session event. A delivery records at most one
//! row (`svix_id` is unique), so a redelivered or replayed event changes nothing.

use crate::db;
use sqlx::{FromRow, PgConnection, PgPool};

type Time = chrono::DateTime<chrono::Utc>;

/// One entry, as its user and the console read it.
#[derive(Debug, Clone, FromRow)]
pub struct Activity {
    /// Clerk's event type: `session.created`, `.ended`, `.removed` or `.revoked`.
    pub kind: String,
    pub session_id: String,
    pub occurred_at: Time,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The delivery it came from.
    pub svix_id: String,
}

/// An entry to record.
#[derive(Debug, Clone, Copy)]
pub struct NewActivity<'a> {
    pub clerk_user_id: &'a str,
    pub kind: &'a str,
    pub session_id: &'a str,
    /// Clerk's event timestamp (Unix ms).
    pub occurred_at_ms: i64,
    pub client_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub svix_id: &'a str,
}

/// Records one entry in the caller's transaction. `false`: this delivery is recorded already.
pub async fn record(conn: &mut PgConnection, a: NewActivity<'_>) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "INSERT INTO user_activity \
           (clerk_user_id, kind, session_id, occurred_at, client_ip, user_agent, svix_id) \
         VALUES ($1, $2, $3, to_timestamp($4::bigint / 1000.0), $5, $6, $7) \
         ON CONFLICT (svix_id) DO NOTHING",
        a.clerk_user_id,
        a.kind,
        a.session_id,
        a.occurred_at_ms,
        a.client_ip,
        a.user_agent,
        a.svix_id,
    )
    .execute(db::tx(conn))
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The newest `limit` entries row-level security lets this transaction see (call as
/// `authsync_user`, with `authsync.clerk_user_id` set), newest first.
pub async fn visible(conn: &mut PgConnection, limit: i64) -> Result<Vec<Activity>, sqlx::Error> {
    sqlx::query_as!(
        Activity,
        "SELECT kind, session_id, occurred_at, client_ip, user_agent, svix_id FROM user_activity \
         ORDER BY occurred_at DESC, id DESC LIMIT $1",
        limit,
    )
    .fetch_all(db::tx(conn))
    .await
}

/// The newest `limit` entries of Clerk user `cid`, for operators (the service's own role).
pub async fn of_user(pool: &PgPool, cid: &str, limit: i64) -> Result<Vec<Activity>, sqlx::Error> {
    sqlx::query_as!(
        Activity,
        "SELECT kind, session_id, occurred_at, client_ip, user_agent, svix_id FROM user_activity \
         WHERE clerk_user_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT $2",
        cid,
        limit,
    )
    .fetch_all(db::on(pool))
    .await
}

/// Deletes up to `limit` entries recorded more than `age_secs` ago (retention: the same age
/// as processed webhook events).
pub async fn delete_older(
    conn: &mut PgConnection,
    age_secs: i64,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM user_activity WHERE id IN (SELECT id FROM user_activity \
         WHERE recorded_at < now() - make_interval(secs => $1::bigint) LIMIT $2)",
        age_secs,
        limit,
    )
    .execute(db::tx(conn))
    .await?;
    Ok(done.rows_affected())
}
