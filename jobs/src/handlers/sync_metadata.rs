//! SyncMetadata: write `{dbId, role}` into the user's Clerk `public_metadata`, only when Clerk's
//! value differs — so the `user.updated` echo of our own write ends the chain, and Clerk's
//! per-user write limit is never spent on no-ops.

use crate::audit::Origin;
use crate::clerk::ids::ClerkUserId;
use crate::context::JobContext;
use crate::error::JobError;
use crate::queue::Job;
use crate::store::{audit, users};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMetadata {
    pub clerk_user_id: ClerkUserId,
    pub origin: Origin,
}

impl Job for SyncMetadata {
    type Context = JobContext;
    /// Never rename: queued rows carry it.
    const QUEUE: &'static str = "authsync.sync_metadata";
    const MAX_ATTEMPTS: u32 = 12;

    fn metadata(&self) -> crate::queue::Metadata {
        self.origin.metadata()
    }

    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        let clerk = ctx.clerk_api()?;
        let ours = users::live_id_and_role(&ctx.pool, &self.clerk_user_id).await?;
        let Some(users::IdRole { id: db_id, role }) = ours else {
            return Ok(()); // deleted meanwhile: nothing to write back
        };
        let Some(user) = clerk.get_user(&self.clerk_user_id).await? else {
            return Ok(()); // gone from Clerk
        };
        let wanted = json!({"dbId": db_id.to_string(), "role": role});
        if user.public_metadata.get("dbId") == Some(&wanted["dbId"])
            && user.public_metadata.get("role") == Some(&wanted["role"])
        {
            tracing::debug!(clerk_user_id = %self.clerk_user_id, "metadata already current");
            return Ok(());
        }
        if clerk
            .merge_public_metadata(&self.clerk_user_id, wanted.clone())
            .await?
            .is_none()
        {
            return Ok(());
        }
        // In a transaction, as every statement behind a transaction pooler (crate::db).
        let mut tx = ctx.pool.begin().await?;
        audit::record(
            &mut tx,
            &self.origin,
            "user.metadata_synced",
            self.clerk_user_id.as_str(),
            json!({"role": role}),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(clerk_user_id = %self.clerk_user_id, "metadata written back to Clerk");
        Ok(())
    }
}
