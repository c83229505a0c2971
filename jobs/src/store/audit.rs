//! `audit_log`: appending entries. An entry commits with the change it describes: on the
//! caller's connection, or as part of the change's own statement ([`insert_sql`]).

use crate::audit::Origin;
use crate::db;
use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{FromRow, PgConnection, PgPool, Postgres};

/// Appends one entry, in the caller's transaction.
pub async fn record(
    conn: &mut PgConnection,
    origin: &Origin,
    action: &str,
    subject: &str,
    details: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO audit_log (actor, action, subject, details, client_ip, user_agent) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        origin.actor().to_string(),
        action,
        subject,
        details,
        origin.client_ip,
        origin.user_agent,
    )
    .execute(db::tx(conn))
    .await?;
    Ok(())
}

/// The insert of one entry reading parameters `$first` to `$first + 5`, bound by [`bind`]: for
/// a statement that makes a change and records it in one round trip (the change as a
/// data-modifying `WITH` before it). Such statements are composed at run time and checked at
/// run time.
pub(crate) fn insert_sql(first: usize) -> String {
    let p: Vec<String> = (first..first + 6).map(|n| format!("${n}")).collect();
    format!(
        "INSERT INTO audit_log (actor, action, subject, details, client_ip, user_agent) \
         VALUES ({})",
        p.join(", ")
    )
}

/// Binds the six parameters of [`insert_sql`], after whatever `query` has bound already.
pub(crate) fn bind<'q>(
    query: Query<'q, Postgres, PgArguments>,
    origin: &'q Origin,
    action: &'q str,
    subject: &'q str,
    details: Value,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(origin.actor().to_string())
        .bind(action)
        .bind(subject)
        .bind(details)
        .bind(&origin.client_ip)
        .bind(&origin.user_agent)
}

/// A Reconcile run's record.
#[derive(Debug, Clone, FromRow)]
pub struct ReconcileRun {
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    /// The run's counts, `job_id` and `error`.
    pub details: Value,
}

/// The 20 latest Reconcile runs, newest first.
pub async fn reconcile_runs(pool: &PgPool) -> Result<Vec<ReconcileRun>, sqlx::Error> {
    sqlx::query_as!(
        ReconcileRun,
        "SELECT at, actor, details FROM audit_log WHERE subject = 'system' AND action = 'reconcile.run' \
         ORDER BY at DESC, id DESC LIMIT 20",
    )
    .fetch_all(db::on(pool))
    .await
}

/// An audit entry as an operator's user timeline shows it.
#[derive(Debug, Clone, FromRow)]
pub struct Entry {
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub action: String,
    pub details: Value,
}

/// The entries about `subject` (a Clerk id), newest first.
pub async fn of_subject(
    pool: &PgPool,
    subject: &str,
    limit: i64,
) -> Result<Vec<Entry>, sqlx::Error> {
    sqlx::query_as!(
        Entry,
        "SELECT at, actor, action, details FROM audit_log WHERE subject = $1 \
         ORDER BY at DESC, id DESC LIMIT $2",
        subject,
        limit,
    )
    .fetch_all(db::on(pool))
    .await
}
