//! `sent_emails`: one claim per (user, kind), taken before a mail is sent, so duplicate jobs
//! and retries never send twice; a claim older than its lease may be taken over.

use crate::audit::Origin;
use crate::db;
use crate::store::audit;
use sqlx::{FromRow, PgPool};
use std::sync::LazyLock;
use std::time::Duration;
use uuid::Uuid;

/// A live user with a verified address, and the claim this call took (if it took one).
#[derive(Debug, Clone, FromRow)]
pub struct Recipient {
    pub user_id: Uuid,
    pub email: String,
    pub first_name: Option<String>,
    /// The claim count after this call's claim; `None`: another claim holds the send, or it
    /// is sent.
    pub claims: Option<i32>,
}

/// The live user `clerk_user_id` with a verified address, and the claim of its `kind` mail
/// (or the take-over of a claim older than `lease`), in one statement. `None`: deleted, or no
/// verified address.
pub async fn claim(
    pool: &PgPool,
    clerk_user_id: &str,
    kind: &str,
    lease: Duration,
) -> Result<Option<Recipient>, sqlx::Error> {
    sqlx::query_as!(
        Recipient,
        r#"WITH u AS (SELECT id, email, first_name FROM users
                      WHERE clerk_user_id = $1 AND deleted_at IS NULL AND email IS NOT NULL
                        AND email_verified),
           claim AS (INSERT INTO sent_emails (user_id, kind, recipient, status, claimed_at)
                     SELECT id, $2, email, 'sending', now() FROM u
                     ON CONFLICT (user_id, kind) DO UPDATE SET claimed_at = now(),
                       claims = sent_emails.claims + 1, recipient = EXCLUDED.recipient
                     WHERE sent_emails.status = 'sending' AND (sent_emails.claimed_at IS NULL
                       OR sent_emails.claimed_at < now() - make_interval(secs => $3::float8))
                     RETURNING claims)
           SELECT id AS "user_id!", email AS "email!", first_name, (SELECT claims FROM claim) AS claims
           FROM u"#,
        clerk_user_id,
        kind,
        lease.as_secs_f64(),
    )
    .fetch_optional(db::on(pool))
    .await
}

/// Another claim's state.
#[derive(Debug, Clone, FromRow)]
pub struct ClaimState {
    pub sent: bool,
    /// Seconds until the claim may be taken over (0: now).
    pub lease_left: f64,
}

/// [`ClaimState`] of the `kind` mail of `user_id`, whose claim exists.
pub async fn state(
    pool: &PgPool,
    user_id: Uuid,
    kind: &str,
    lease: Duration,
) -> Result<ClaimState, sqlx::Error> {
    sqlx::query_as!(
        ClaimState,
        r#"SELECT status = 'sent' AS "sent!",
                  GREATEST(extract(epoch from claimed_at + make_interval(secs => $3::float8) - now()), 0)::float8 AS "lease_left!"
           FROM sent_emails WHERE user_id = $1 AND kind = $2"#,
        user_id,
        kind,
        lease.as_secs_f64(),
    )
    .fetch_one(db::on(pool))
    .await
}

/// Marks the mail sent and appends its audit entry (`action` on `subject`) in one statement
/// (one round trip, one commit). Composed with the audit insert at run time: runtime-checked.
pub async fn mark_sent(
    pool: &PgPool,
    user_id: Uuid,
    kind: &str,
    origin: &Origin,
    action: &str,
    subject: &str,
) -> Result<(), sqlx::Error> {
    static MARK_SENT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH sent AS (UPDATE sent_emails SET status = 'sent', sent_at = now() \
             WHERE user_id = $1 AND kind = $2) {}",
            audit::insert_sql(3)
        )
    });
    let query = db::query(MARK_SENT.as_str()).bind(user_id).bind(kind);
    audit::bind(
        query,
        origin,
        action,
        subject,
        serde_json::json!({ "kind": kind }),
    )
    .execute(db::on(pool))
    .await?;
    Ok(())
}

/// Releases an unsent claim, so a retry can send at once.
pub async fn release(pool: &PgPool, user_id: Uuid, kind: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE sent_emails SET claimed_at = NULL WHERE user_id = $1 AND kind = $2 AND status = 'sending'",
        user_id,
        kind,
    )
    .execute(db::on(pool))
    .await?;
    Ok(())
}
