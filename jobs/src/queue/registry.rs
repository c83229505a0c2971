//! Every job type, registered in one function ([`registry`]) that the worker and the tests use.

use super::Job;
use crate::audit::Origin;
use crate::context::JobContext;
use crate::error::JobError;
use futures::future::BoxFuture;
use serde::Deserialize;
use std::sync::Arc;

/// What running one task produced, with the origin needed for bookkeeping.
pub struct Executed {
    pub origin: Option<Origin>,
    pub result: Result<(), JobError>,
}

type Exec = Arc<dyn Fn(JobContext, Vec<u8>) -> BoxFuture<'static, Executed> + Send + Sync>;

/// One registered queue.
#[derive(Clone)]
pub struct Entry {
    pub queue: &'static str,
    pub max_attempts: u32,
    pub urgent: bool,
    /// [`Job::DEADLINE`].
    pub deadline: std::time::Duration,
    /// [`Job::DB_LIMITS`].
    pub limits: crate::db::TxLimits,
    exec: Exec,
}

impl Entry {
    /// Decodes and runs one task payload, its transactions bounded by the job's limits.
    pub fn run(&self, ctx: JobContext, payload: Vec<u8>) -> BoxFuture<'static, Executed> {
        (self.exec)(ctx.with_limits(self.limits), payload)
    }
}

/// The set of queues a worker serves.
#[derive(Clone, Default)]
pub struct Registry {
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct OriginOnly {
    origin: Origin,
}

impl Registry {
    /// Adds a job type. A payload that does not decode fails fatally: retrying cannot fix it.
    pub fn register<J: Job>(&mut self) -> &mut Self {
        assert!(
            self.entries.iter().all(|e| e.queue != J::QUEUE),
            "queue {} registered twice",
            J::QUEUE
        );
        let exec: Exec = Arc::new(|ctx, payload| {
            Box::pin(async move {
                match crate::json_error::from_slice::<J>(&payload) {
                    Ok(job) => {
                        let origin = Some(job.origin().clone());
                        Executed {
                            origin,
                            result: job.handle(&ctx).await,
                        }
                    }
                    Err(e) => Executed {
                        origin: serde_json::from_slice::<OriginOnly>(&payload)
                            .ok()
                            .map(|o| o.origin),
                        result: Err(JobError::Fatal(anyhow::anyhow!(
                            "job payload does not decode: {e}"
                        ))),
                    },
                }
            })
        });
        self.entries.push(Entry {
            queue: J::QUEUE,
            max_attempts: J::MAX_ATTEMPTS,
            urgent: J::URGENT,
            deadline: J::DEADLINE,
            limits: J::DB_LIMITS,
            exec,
        });
        self
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn queues(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.queue).collect()
    }
}

/// The one function that registers every job.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    r.register::<crate::handlers::provision_user::ProvisionUser>()
        .register::<crate::handlers::soft_delete::SoftDelete>()
        .register::<crate::handlers::sync_metadata::SyncMetadata>()
        .register::<crate::handlers::sync_user::SyncUser>()
        .register::<crate::handlers::sync_organization::SyncOrganization>()
        .register::<crate::handlers::sync_membership::SyncMembership>()
        .register::<crate::handlers::send_welcome_email::SendWelcomeEmail>()
        .register::<crate::handlers::retention::Retention>()
        .register::<crate::handlers::reconcile::Reconcile>();
    r
}
