//! SoftDelete: mark a user deleted (or leave a tombstone when it was never seen).

use crate::audit::Origin;
use crate::clerk::ids::ClerkUserId;
use crate::context::JobContext;
use crate::error::JobError;
use crate::queue::Job;
use crate::users;
use serde::{Deserialize, Serialize};

/// Payload: whom, and when Clerk deleted it (the event timestamp, Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftDelete {
    pub clerk_user_id: ClerkUserId,
    pub deleted_at_ms: i64,
    pub origin: Origin,
}

impl Job for SoftDelete {
    type Context = JobContext;
    /// Never rename: queued rows carry it.
    const QUEUE: &'static str = "authsync.soft_delete";
    const MAX_ATTEMPTS: u32 = 12;

    fn metadata(&self) -> crate::queue::Metadata {
        self.origin.metadata()
    }

    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        let mut tx = ctx.begin().await?;
        let outcome = users::soft_delete_user(
            &mut tx,
            &self.clerk_user_id,
            self.deleted_at_ms,
            &self.origin,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(clerk_user_id = %self.clerk_user_id, ?outcome, "user soft-deleted");
        Ok(())
    }
}
