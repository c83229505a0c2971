//! What every job handler gets: the pool and the clients of the outside services, behind small
//! traits so tests swap in local fakes.

use crate::clerk_api::ClerkApi;
use crate::mailer::Mailer;
use sqlx::PgPool;
use std::sync::Arc;

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    pub pool: PgPool,
    /// The Backend API; `None` when `CLERK_SECRET_KEY` is not set (write-back and the
    /// dashboard fallback are then off, and nothing enqueues jobs that need it).
    pub clerk: Option<Arc<dyn ClerkApi>>,
    /// Outgoing mail; `None` means no welcome emails are enqueued.
    pub mailer: Option<Arc<dyn Mailer>>,
    /// `PERSONAL_ORGANIZATIONS`: every new user gets an organization of its own, created in
    /// the same transaction as the user.
    pub personal_organizations: bool,
    /// Wakes the workers after a commit that enqueued jobs.
    pub notifier: crate::queue::Notifier,
    /// Reconcile's safety settings (`RECONCILE_MAX_DELETIONS`, `CLERK_JWKS_URL`).
    pub reconcile: crate::reconcile::ReconcileSettings,
}

impl JobContext {
    pub fn new(pool: PgPool) -> Self {
        Self {
            notifier: crate::queue::Notifier::new(pool.clone()),
            pool,
            clerk: None,
            mailer: None,
            personal_organizations: false,
            reconcile: Default::default(),
        }
    }

    /// The Backend API, or a fatal error for jobs that cannot run without it.
    pub fn clerk_api(&self) -> Result<&Arc<dyn ClerkApi>, crate::error::JobError> {
        self.clerk.as_ref().ok_or_else(|| {
            crate::error::JobError::Fatal(anyhow::anyhow!("CLERK_SECRET_KEY is not set"))
        })
    }

    pub fn with_mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    pub fn with_clerk(mut self, clerk: Arc<dyn ClerkApi>) -> Self {
        self.clerk = Some(clerk);
        self
    }
}
