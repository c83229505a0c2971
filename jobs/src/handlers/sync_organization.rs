//! SyncOrganization: apply an `organization.created/updated` snapshot or an
//! `organization.deleted` (which also ends the organization's memberships).

use crate::audit::Origin;
use crate::clerk::ids::ClerkOrgId;
use crate::clerk::OrgSnapshot;
use crate::context::JobContext;
use crate::error::JobError;
use crate::queue::Job;
use crate::tenancy;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgChange {
    Upsert(OrgSnapshot),
    /// `at_ms`: the event's timestamp, so replays give the same row.
    Delete {
        clerk_org_id: ClerkOrgId,
        at_ms: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncOrganization {
    pub change: OrgChange,
    pub origin: Origin,
}

impl Job for SyncOrganization {
    type Context = JobContext;
    /// Never rename: queued rows carry it.
    const QUEUE: &'static str = "authsync.sync_organization";
    const MAX_ATTEMPTS: u32 = 12;

    fn metadata(&self) -> crate::queue::Metadata {
        self.origin.metadata()
    }

    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        let mut tx = ctx.begin().await?;
        let change = match &self.change {
            OrgChange::Upsert(snap) => tenancy::upsert_org(&mut tx, snap, &self.origin).await?,
            OrgChange::Delete {
                clerk_org_id,
                at_ms,
            } => tenancy::delete_org(&mut tx, clerk_org_id, *at_ms, &self.origin).await?,
        };
        tx.commit().await?;
        tracing::info!(?change, "organization synced");
        Ok(())
    }
}
