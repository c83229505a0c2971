//! RecordActivity: one session event (`session.created`, `.ended`, `.removed`, `.revoked`)
//! into the activity log, with the client's IP and user agent Clerk reported. The user's row
//! need not exist yet: the log is keyed by the Clerk user id, so an event that overtakes
//! `user.created` is kept, not lost.

use crate::audit::Origin;
use crate::clerk::SessionActivity;
use crate::context::JobContext;
use crate::error::{JobError, ResultExt};
use crate::queue::Job;
use crate::store::user_activity::{self, NewActivity};
use serde::{Deserialize, Serialize};

/// Payload: the session event and when Clerk says it happened (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordActivity {
    pub activity: SessionActivity,
    pub occurred_at_ms: i64,
    /// The delivery (its svix id makes the entry unique) and the client it came from.
    pub origin: Origin,
}

impl Job for RecordActivity {
    type Context = JobContext;
    /// Never rename: queued rows carry it.
    const QUEUE: &'static str = "authsync.record_activity";
    const MAX_ATTEMPTS: u32 = 12;

    fn metadata(&self) -> crate::queue::Metadata {
        self.origin.metadata()
    }

    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        let svix_id = self.origin.svix_id.as_ref().ok_or(NoDelivery).fatal()?;
        let mut tx = ctx.begin().await?;
        let recorded = user_activity::record(
            &mut tx,
            NewActivity {
                clerk_user_id: self.activity.clerk_user_id.as_str(),
                kind: self.activity.change.as_str(),
                session_id: self.activity.session_id.as_str(),
                occurred_at_ms: self.occurred_at_ms,
                client_ip: self.origin.client_ip.as_deref(),
                user_agent: self.origin.user_agent.as_deref(),
                svix_id: svix_id.as_str(),
            },
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            clerk_user_id = %self.activity.clerk_user_id,
            kind = self.activity.change.as_str(),
            recorded,
            "activity recorded"
        );
        Ok(())
    }
}

/// Entries are unique per delivery; one without a delivery cannot be recorded exactly once.
#[derive(Debug, thiserror::Error)]
#[error("an activity entry needs the webhook delivery (svix id) it came from")]
struct NoDelivery;
