//! ProvisionUser: apply one Clerk user snapshot to `users` (create, link or update).

use crate::audit::Origin;
use crate::clerk::UserSnapshot;
use crate::context::JobContext;
use crate::error::{JobError, ResultExt};
use crate::handlers::send_welcome_email::SendWelcomeEmail;
use crate::handlers::sync_metadata::SyncMetadata;
use crate::queue::{self, Job};
use crate::store;
use crate::tenancy;
use crate::users::{self, UpsertOutcome};
use serde::{Deserialize, Serialize};

/// Payload: the normalised snapshot from the event, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionUser {
    pub user: UserSnapshot,
    pub origin: Origin,
}

impl Job for ProvisionUser {
    type Context = JobContext;
    /// Never rename: queued rows carry it.
    const QUEUE: &'static str = "authsync.provision_user";
    const MAX_ATTEMPTS: u32 = 12;

    fn metadata(&self) -> crate::queue::Metadata {
        self.origin.metadata()
    }

    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        apply(ctx, &self.user, &self.origin).await?;
        Ok(())
    }
}

/// Applies a snapshot and, in the same transaction, asks for the `{dbId, role}` write-back
/// when Clerk's `public_metadata` does not already say it (so our own write's echo stops
/// here). The one path from a snapshot to a row: webhooks and the dashboard fallback share it.
pub async fn apply(
    ctx: &JobContext,
    snap: &UserSnapshot,
    origin: &Origin,
) -> Result<UpsertOutcome, JobError> {
    let mut tx = ctx.begin().await?;
    let mut woken: Vec<&'static str> = Vec::new();
    let users::Upserted {
        outcome,
        newly_verified,
    } = users::upsert_user(&mut tx, snap, origin).await?;
    if ctx.clerk.is_some() && !matches!(outcome, UpsertOutcome::Stale(_)) {
        let store::users::LiveRole { live, role } =
            store::users::live_and_role(&mut tx, outcome.user_id()).await?;
        let db_id = outcome.user_id().to_string();
        let current = snap.metadata_db_id.as_deref() == Some(db_id.as_str())
            && snap.metadata_role.as_deref() == Some(role.as_str());
        if live && !current {
            let job = SyncMetadata {
                clerk_user_id: snap.clerk_user_id.clone(),
                origin: origin.clone(),
            };
            queue::enqueue_one(&mut tx, &job, None).await.retryable()?;
            woken.push(SyncMetadata::QUEUE);
        }
    }
    let new_user = matches!(
        outcome,
        UpsertOutcome::Created(_) | UpsertOutcome::Linked(_)
    );
    if new_user && ctx.personal_organizations {
        tenancy::create_personal_org(
            &mut tx,
            outcome.user_id(),
            snap.clerk_user_id.as_str(),
            snap.first_name.as_deref(),
            origin,
        )
        .await?;
    }
    // The welcome mail waits for a verified address: it goes with the write that first gives
    // the row one (the create, or the update that verifies it), whichever order they come in.
    if newly_verified && ctx.mailer.is_some() {
        let job = SendWelcomeEmail {
            clerk_user_id: snap.clerk_user_id.clone(),
            origin: origin.clone(),
        };
        queue::enqueue_one(&mut tx, &job, None).await.retryable()?;
        woken.push(SendWelcomeEmail::QUEUE);
    }
    tx.commit().await?;
    ctx.notifier.wake_all(woken);
    tracing::info!(clerk_user_id = %snap.clerk_user_id, ?outcome, "user provisioned");
    Ok(outcome)
}
