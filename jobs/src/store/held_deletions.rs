//! `reconcile_held_deletions`: the deletions a Reconcile run held back (more than
//! `RECONCILE_MAX_DELETIONS`) until an operator confirms them. Every statement on the table.

use crate::db;
use sqlx::{PgConnection, PgPool};

/// Holds `ids` for the run `job_id`; a retried run holds the same users once.
pub async fn hold(
    conn: &mut PgConnection,
    job_id: &str,
    ids: &[String],
    deleted_at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO reconcile_held_deletions (job_id, clerk_user_id, deleted_at_ms) \
         SELECT $1, id, $3 FROM unnest($2::text[]) AS id ON CONFLICT DO NOTHING",
        job_id,
        ids,
        deleted_at_ms,
    )
    .execute(db::tx(conn))
    .await?;
    Ok(())
}

/// Retires every unconfirmed hold of runs other than `job_id`: the run `job_id` has just looked
/// at Clerk afresh and holds (or applies) what it found itself. Returns how many it retired.
pub async fn supersede(conn: &mut PgConnection, job_id: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE reconcile_held_deletions SET superseded_by = $1 \
         WHERE job_id <> $1 AND confirmed_at IS NULL AND superseded_by IS NULL",
        job_id,
    )
    .execute(db::tx(conn))
    .await?;
    Ok(done.rows_affected())
}

/// A held deletion an operator confirmed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Confirmed {
    pub clerk_user_id: String,
    /// When the run saw the user gone (Unix ms).
    pub deleted_at_ms: i64,
}

/// Marks the run's unconfirmed deletions confirmed by `by` and returns them. A concurrent
/// second call waits for the first to commit and then finds nothing left.
pub async fn confirm(
    conn: &mut PgConnection,
    job_id: &str,
    by: &str,
) -> Result<Vec<Confirmed>, sqlx::Error> {
    sqlx::query_as!(
        Confirmed,
        "UPDATE reconcile_held_deletions SET confirmed_at = now(), confirmed_by = $2 \
         WHERE job_id = $1 AND confirmed_at IS NULL AND superseded_by IS NULL \
         RETURNING clerk_user_id, deleted_at_ms",
        job_id,
        by,
    )
    .fetch_all(db::tx(conn))
    .await
}

/// Whether `job_id` names a Reconcile run: one that held deletions, recorded its result, or
/// is still in the queue (`queue`: Reconcile's).
pub async fn is_run(
    conn: &mut PgConnection,
    job_id: &str,
    queue: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT (EXISTS (SELECT 1 FROM reconcile_held_deletions WHERE job_id = $1)
             OR EXISTS (SELECT 1 FROM audit_log WHERE action = 'reconcile.run' AND subject = 'system' AND details ->> 'job_id' = $1)
             OR EXISTS (SELECT 1 FROM apalis.jobs WHERE id = $1 AND job_type = $2)) AS "is_run!""#,
        job_id,
        queue,
    )
    .fetch_one(db::tx(conn))
    .await
}

/// A run's held deletions, counted.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HeldCounts {
    pub job_id: String,
    /// Still waiting for an operator. A held user deleted since (a webhook, an earlier
    /// confirmation) no longer counts, nor does a hold a later run superseded.
    pub held: i64,
    pub confirmed: i64,
}

/// [`HeldCounts`] of the runs `job_ids` that held deletions.
pub async fn counts(pool: &PgPool, job_ids: &[String]) -> Result<Vec<HeldCounts>, sqlx::Error> {
    sqlx::query_as!(
        HeldCounts,
        r#"SELECT h.job_id,
                count(*) FILTER (WHERE h.confirmed_at IS NULL AND h.superseded_by IS NULL AND u.deleted_at IS NULL AND u.id IS NOT NULL) AS "held!",
                count(*) FILTER (WHERE h.confirmed_at IS NOT NULL) AS "confirmed!"
         FROM reconcile_held_deletions h LEFT JOIN users u ON u.clerk_user_id = h.clerk_user_id
         WHERE h.job_id = ANY($1) GROUP BY h.job_id"#,
        job_ids,
    )
    .fetch_all(db::on(pool))
    .await
}
