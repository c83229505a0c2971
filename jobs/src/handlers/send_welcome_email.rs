//! SendWelcomeEmail: once per user, to a verified primary address. ProvisionUser enqueues it
//! with the write that first gives the row a verified address (the create, or the update that
//! verifies it). The send is claimed in `sent_emails` first, so duplicate jobs and retries
//! never send twice; a claim older than [`LEASE`] (a worker died between claim and send) is
//! taken over, so the mail is not lost either.

use crate::audit::{self, Origin};
use crate::clerk::ids::ClerkUserId;
use crate::context::JobContext;
use crate::error::{JobError, ResultExt};
use crate::mail::{Mail, MailError};
use crate::queue::Job;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::LazyLock;
use std::time::Duration;

/// How long a claim protects a send in progress: three times the SMTP timeout, so a live send
/// is never taken over, and short enough that a crashed worker's mail goes out within a minute.
pub const LEASE: Duration = Duration::from_secs(45);
const KIND: &str = "welcome";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendWelcomeEmail {
    pub clerk_user_id: ClerkUserId,
    pub origin: Origin,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The message for a user (`name` may be absent).
pub fn welcome(user_id: uuid::Uuid, to: &str, name: Option<&str>) -> Mail {
    let greeting = name.map_or_else(|| "Welcome!".to_owned(), |n| format!("Welcome, {n}!"));
    Mail {
        key: format!("{KIND}.{user_id}"),
        to: to.to_owned(),
        subject: "Welcome aboard".into(),
        text: format!("{greeting}\n\nYour account is ready. We are glad to have you.\n"),
        html: format!("<!doctype html><html><body><h1>{}</h1><p>Your account is ready. We are glad to have you.</p></body></html>", escape(&greeting)),
    }
}

impl Job for SendWelcomeEmail {
    /// Never rename: queued rows carry it.
    const QUEUE: &'static str = "authsync.send_welcome_email";
    const MAX_ATTEMPTS: u32 = 12;

    fn origin(&self) -> &Origin {
        &self.origin
    }

    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        let mailer = ctx
            .mailer
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no mailer configured"))
            .fatal()?;
        // The recipient and the claim (or the take-over of an expired claim) in one statement,
        // committed before sending. No row: deleted, or no verified address any more: nothing
        // to send now (the update that verifies an address enqueues this job again).
        let row: Option<(uuid::Uuid, String, Option<String>, Option<i32>)> = crate::db::query_as(
            "WITH u AS (SELECT id, email, first_name FROM users \
                        WHERE clerk_user_id = $1 AND deleted_at IS NULL AND email IS NOT NULL \
                          AND email_verified), \
             claim AS (INSERT INTO sent_emails (user_id, kind, recipient, status, claimed_at) \
                       SELECT id, $2, email, 'sending', now() FROM u \
                       ON CONFLICT (user_id, kind) DO UPDATE SET claimed_at = now(), \
                         claims = sent_emails.claims + 1, recipient = EXCLUDED.recipient \
                       WHERE sent_emails.status = 'sending' AND (sent_emails.claimed_at IS NULL \
                         OR sent_emails.claimed_at < now() - make_interval(secs => $3)) \
                       RETURNING claims) \
             SELECT id, email, first_name, (SELECT claims FROM claim) FROM u",
        )
        .bind(self.clerk_user_id.as_str())
        .bind(KIND)
        .bind(LEASE.as_secs_f64())
        .fetch_optional(crate::db::on(&ctx.pool))
        .await?;
        let Some((user_id, email, first_name, claimed)) = row else {
            return Ok(());
        };
        if claimed.is_none() {
            let (sent, lease_left): (bool, f64) = crate::db::query_as(
                "SELECT status = 'sent', \
                 GREATEST(extract(epoch from claimed_at + make_interval(secs => $3) - now()), 0)::float8 \
                 FROM sent_emails WHERE user_id = $1 AND kind = $2",
            )
            .bind(user_id)
            .bind(KIND)
            .bind(LEASE.as_secs_f64())
            .fetch_one(crate::db::on(&ctx.pool))
            .await?;
            if sent {
                return Ok(()); // already done
            }
            // Come back when the other claim expires (if its worker is alive, it sends).
            return Err(JobError::Retryable {
                source: anyhow::anyhow!("another worker is sending this email"),
                retry_after: Some(Duration::from_secs_f64(lease_left) + Duration::from_secs(1)),
            });
        }
        match mailer
            .send(welcome(user_id, &email, first_name.as_deref()))
            .await
        {
            Ok(()) => {
                // Marked sent and audited in one statement (one round trip, one commit).
                static MARK_SENT: LazyLock<String> = LazyLock::new(|| {
                    format!(
                        "WITH sent AS (UPDATE sent_emails SET status = 'sent', sent_at = now() \
                         WHERE user_id = $1 AND kind = $2) {}",
                        audit::insert_sql(3)
                    )
                });
                let query = crate::db::query(MARK_SENT.as_str())
                    .bind(user_id)
                    .bind(KIND);
                audit::bind(
                    query,
                    &self.origin,
                    "email.sent",
                    self.clerk_user_id.as_str(),
                    json!({"kind": KIND}),
                )
                .execute(crate::db::on(&ctx.pool))
                .await?;
                tracing::info!(clerk_user_id = %self.clerk_user_id, "welcome email sent");
                Ok(())
            }
            Err(e) => {
                // Release the claim so the retry can send at once.
                crate::db::query("UPDATE sent_emails SET claimed_at = NULL WHERE user_id = $1 AND kind = $2 AND status = 'sending'")
                    .bind(user_id)
                    .bind(KIND)
                    .execute(crate::db::on(&ctx.pool))
                    .await?;
                match e {
                    MailError::Transient(_) => Err(e).retryable(),
                    MailError::Permanent(_) => Err(e).fatal(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_greets_by_name_and_escapes_html() {
        let m = welcome(uuid::Uuid::nil(), "a@example.com", Some("<Al>"));
        assert!(m.text.starts_with("Welcome, <Al>!"));
        assert!(m.html.contains("Welcome, &lt;Al&gt;!"));
        assert!(welcome(uuid::Uuid::nil(), "a@example.com", None)
            .text
            .starts_with("Welcome!"));
        assert_eq!(m.key, "welcome.00000000-0000-0000-0000-000000000000");
    }
}
