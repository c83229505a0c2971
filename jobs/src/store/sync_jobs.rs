//! `sync_jobs`: the dashboard-fallback jobs by the user who asked for them (who may read a
//! job, and the one outstanding urgent job per user).

use crate::db;
use crate::queue::Predicate;
use sqlx::{PgConnection, PgPool};
use std::sync::LazyLock;

/// The user's urgent job that is still queued, running or retrying, if any (the newest).
pub async fn outstanding(
    conn: &mut PgConnection,
    cid: &str,
) -> Result<Option<String>, sqlx::Error> {
    // Runtime-checked: the open states are the queue crate's, spelled once there.
    static OPEN: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT s.job_id FROM sync_jobs s JOIN apalis.jobs j ON j.id = s.job_id \
             WHERE s.clerk_user_id = $1 AND {} ORDER BY s.created_at DESC LIMIT 1",
            Predicate::Open.of("j")
        )
    });
    db::query_scalar(OPEN.as_str())
        .bind(cid)
        .fetch_optional(db::tx(conn))
        .await
}

/// Records that `cid` asked for job `job_id`.
pub async fn insert(conn: &mut PgConnection, job_id: &str, cid: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO sync_jobs (job_id, clerk_user_id) VALUES ($1, $2)",
        job_id,
        cid,
    )
    .execute(db::tx(conn))
    .await?;
    Ok(())
}

/// Whether `cid` asked for job `job_id`.
pub async fn is_owner(pool: &PgPool, job_id: &str, cid: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM sync_jobs WHERE job_id = $1 AND clerk_user_id = $2) AS "owned!""#,
        job_id,
        cid,
    )
    .fetch_one(db::on(pool))
    .await
}
