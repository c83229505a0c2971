//! SyncMembership: apply an `organizationMembership.created/updated/deleted` snapshot.

use crate::audit::Origin;
use crate::clerk::MembershipSnapshot;
use crate::context::JobContext;
use crate::error::JobError;
use crate::queue::Job;
use crate::tenancy;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMembership {
    pub membership: MembershipSnapshot,
    /// `organizationMembership.deleted`.
    pub deleted: bool,
    pub origin: Origin,
}

impl Job for SyncMembership {
    type Context = JobContext;
    /// Never rename: queued rows carry it.
    const QUEUE: &'static str = "authsync.sync_membership";
    const MAX_ATTEMPTS: u32 = 12;

    fn metadata(&self) -> crate::queue::Metadata {
        self.origin.metadata()
    }

    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        let mut tx = ctx.begin().await?;
        let change =
            tenancy::upsert_membership(&mut tx, &self.membership, self.deleted, &self.origin)
                .await?;
        tx.commit().await?;
        tracing::info!(clerk_user_id = %self.membership.clerk_user_id, ?change, "membership synced");
        Ok(())
    }
}
