//! `user_activity`: the session events of each user (written from `session.*` webhooks), as
//! operators read them.

use crate::db;
use sqlx::{FromRow, PgPool};

/// One session event of a user.
#[derive(Debug, Clone, FromRow)]
pub struct Activity {
    /// `session.created`, `session.ended`, `session.removed` or `session.revoked`.
    pub kind: String,
    pub session_id: String,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub svix_id: String,
}

/// The activity of Clerk user `cid`, newest first.
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
