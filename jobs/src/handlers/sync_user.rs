//! SyncUser: the dashboard fallback's urgent ProvisionUser. The signed-in user's snapshot comes
//! from the Backend API (the webhook may not have arrived yet) and goes through the same
//! [`crate::handlers::provision_user::apply`] as webhooks, so a racing webhook yields one row.
//! It runs on its own queue, with concurrency reserved in every worker process.

use crate::audit::Origin;
use crate::clerk::ids::ClerkUserId;
use crate::context::JobContext;
use crate::error::{JobError, ResultExt};
use crate::handlers::provision_user;
use crate::queue::Job;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncUser {
    pub clerk_user_id: ClerkUserId,
    pub origin: Origin,
}

impl Job for SyncUser {
    type Context = JobContext;
    /// Never rename: queued rows carry it.
    const QUEUE: &'static str = "authsync.provision_user.urgent";
    /// The setup page shows "Attempt X/10".
    const MAX_ATTEMPTS: u32 = 10;
    const URGENT: bool = true;
    /// A user is waiting: an attempt stuck on Clerk or a lock gives way to the retry sooner
    /// than the default (the Backend API call alone is capped at 10 s).
    const DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

    fn metadata(&self) -> crate::queue::Metadata {
        self.origin.metadata()
    }

    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        let clerk = ctx.clerk_api()?;
        let Some(user) = clerk.get_user(&self.clerk_user_id).await? else {
            return Err(anyhow::anyhow!("Clerk has no user {}", self.clerk_user_id)).fatal();
        };
        let snapshot = user.into_snapshot().fatal()?;
        if snapshot.clerk_user_id != self.clerk_user_id {
            return Err(anyhow::anyhow!("Clerk answered for another user")).fatal();
        }
        provision_user::apply(ctx, &snapshot, &self.origin).await?;
        Ok(())
    }
}
