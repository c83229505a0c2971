//! What every job handler gets: the pool and the clients of the outside services, behind small
//! traits so tests swap in local fakes, and [`JobContext::begin`], the one way a handler opens
//! a transaction (bounded by its job's lock and statement timeouts).

use crate::clerk::api::ClerkApi;
use crate::db::TxLimits;
use crate::mail::Mailer;
use sqlx::{PgPool, Postgres, Transaction};
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
    pub reconcile: crate::handlers::reconcile::ReconcileSettings,
    /// Limits of the transactions [`JobContext::begin`] opens: the running job's
    /// [`crate::queue::Job::DB_LIMITS`] (set by the queue runtime for each attempt).
    limits: TxLimits,
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
            limits: TxLimits::JOB,
        }
    }

    /// Opens a transaction with this job's `lock_timeout` and `statement_timeout`, set with
    /// `SET LOCAL` (nothing is left on the pooled connection). A wait past them fails the
    /// statement with SQLSTATE 55P03 or 57014, which [`crate::error::JobError`] makes a
    /// retryable "lock timeout"/"statement timeout" failure instead of a hang.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        crate::db::begin(&self.pool, self.limits).await
    }

    /// The limits [`JobContext::begin`] applies.
    pub fn limits(&self) -> TxLimits {
        self.limits
    }

    /// This context for a job with other transaction limits.
    pub fn with_limits(mut self, limits: TxLimits) -> Self {
        self.limits = limits;
        self
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

/// What the queue runtime needs of the context: its pool, the running job's limits, and the
/// webhook events' bookkeeping on completion.
impl authsync_queue::Context for JobContext {
    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn with_limits(self, limits: TxLimits) -> Self {
        JobContext::with_limits(self, limits)
    }

    fn completion_hook(&self) -> Option<&'static dyn authsync_queue::CompletionHook> {
        Some(&crate::store::webhook_events::WebhookEventProgress)
    }
}
