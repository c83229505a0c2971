//! SendWelcomeEmail: once per user, to a verified primary address. ProvisionUser enqueues it
//! with the write that first gives the row a verified address (the create, or the update that
//! verifies it). The send is claimed in `sent_emails` first, so duplicate jobs and retries
//! never send twice; a claim older than [`LEASE`] (a worker died between claim and send) is
//! taken over, so the mail is not lost either.

use crate::audit::Origin;
use crate::clerk::ids::ClerkUserId;
use crate::context::JobContext;
use crate::error::{JobError, ResultExt};
use crate::mail::welcome::{welcome, KIND};
use crate::mail::MailError;
use crate::queue::Job;
use crate::store::sent_emails;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a claim protects a send in progress: three times the SMTP timeout, so a live send
/// is never taken over, and short enough that a crashed worker's mail goes out within a minute.
pub const LEASE: Duration = Duration::from_secs(45);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendWelcomeEmail {
    pub clerk_user_id: ClerkUserId,
    pub origin: Origin,
}

impl Job for SendWelcomeEmail {
    type Context = JobContext;
    /// Never rename: queued rows carry it.
    const QUEUE: &'static str = "authsync.send_welcome_email";
    const MAX_ATTEMPTS: u32 = 12;

    fn metadata(&self) -> crate::queue::Metadata {
        self.origin.metadata()
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
        let Some(to) =
            sent_emails::claim(&ctx.pool, self.clerk_user_id.as_str(), KIND, LEASE).await?
        else {
            return Ok(());
        };
        if to.claims.is_none() {
            let other = sent_emails::state(&ctx.pool, to.user_id, KIND, LEASE).await?;
            if other.sent {
                return Ok(()); // already done
            }
            // Come back when the other claim expires (if its worker is alive, it sends).
            return Err(JobError::Retryable {
                source: anyhow::anyhow!("another worker is sending this email"),
                retry_after: Some(
                    Duration::from_secs_f64(other.lease_left) + Duration::from_secs(1),
                ),
            });
        }
        match mailer
            .send(welcome(to.user_id, &to.email, to.first_name.as_deref()))
            .await
        {
            Ok(()) => {
                // Marked sent and audited in one statement (one round trip, one commit).
                sent_emails::mark_sent(
                    &ctx.pool,
                    to.user_id,
                    KIND,
                    &self.origin,
                    "email.sent",
                    self.clerk_user_id.as_str(),
                )
                .await?;
                tracing::info!(clerk_user_id = %self.clerk_user_id, "welcome email sent");
                Ok(())
            }
            Err(e) => {
                // Release the claim so the retry can send at once.
                sent_emails::release(&ctx.pool, to.user_id, KIND).await?;
                match e {
                    MailError::Transient(_) => Err(e).retryable(),
                    MailError::Permanent(_) => Err(e).fatal(),
                }
            }
        }
    }
}
