//! Reconcile: repairs drift between Clerk and our `users` — webhooks lost beyond Svix' retries,
//! or an outage longer than its schedule. Pages through `GET /v1/users`, enqueues ProvisionUser
//! for users missing or older here, and SoftDelete for live rows whose user Clerk no longer
//! has (confirmed one by one with `GET /v1/users/{id}`). Paced well under Clerk's rate limits
//! (at most 4 requests a second, 40 per 10 s against 100 in development) and honouring 429.
//!
//! Two guards stand between a misconfiguration and the user base, because a key of another
//! Clerk instance (a dev/prod mix-up) lists none of our users and would delete them all:
//! - before any write, the Backend API's `GET /v1/jwks` must share a key id with the session
//!   keys at `CLERK_JWKS_URL` (when both are configured); otherwise the run fails
//!   `instance_mismatch`, fatally, having changed nothing;
//! - a run that would soft-delete more than `RECONCILE_MAX_DELETIONS` users holds every one of
//!   its deletions in `reconcile_held_deletions` (creates and updates still go ahead) until an
//!   operator confirms them (`POST /admin/api/reconcile/{job_id}/confirm`).

use crate::audit::Origin;
use crate::clerk::api::ClerkApiError;
use crate::clerk::ids::ClerkUserId;
use crate::clerk::ClerkUser;
use crate::context::JobContext;
use crate::error::{JobError, ResultExt};
use crate::handlers::provision_user::ProvisionUser;
use crate::handlers::soft_delete::SoftDelete;
use crate::planner::PlannedJob;
use crate::queue::{self, Job};
use crate::store::{audit, held_deletions, users};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

/// Users per page on scheduled and on-demand runs (Clerk's maximum).
pub const PAGE_SIZE: u32 = 500;
/// Pause between Backend API requests.
pub const PACE: Duration = Duration::from_millis(250);
/// 429s tolerated in a row before the run gives up (and retries later as a job).
const MAX_RATE_LIMITED: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconcile {
    /// Users per page (Clerk allows up to 500).
    pub page_size: u32,
    pub origin: Origin,
}

/// `RECONCILE_MAX_DELETIONS` when unset.
pub const DEFAULT_MAX_DELETIONS: u32 = 10;
/// The error code of a run whose secret key and session keys belong to different instances.
pub const INSTANCE_MISMATCH: &str = "instance_mismatch";

/// The worker's settings for Reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// `RECONCILE_MAX_DELETIONS`: a run that would soft-delete more users than this holds all
    /// of its deletions for an operator to confirm (0: every deletion waits).
    pub max_deletions: u32,
    /// `CLERK_JWKS_URL`: the session keys the Backend API's keys must overlap (unset: no check).
    pub session_jwks_url: Option<String>,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            max_deletions: DEFAULT_MAX_DELETIONS,
            session_jwks_url: None,
        }
    }
}

/// What one run found.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub scanned: u64,
    pub created: u64,
    pub updated: u64,
    /// Soft deletions enqueued by the run itself.
    pub deleted: u64,
    /// Soft deletions held back for an operator (more than `RECONCILE_MAX_DELETIONS`).
    pub held_deletions: u64,
}

/// The secret key and the session keys belong to different Clerk instances.
#[derive(Debug, thiserror::Error)]
#[error("instance_mismatch: CLERK_SECRET_KEY and CLERK_JWKS_URL belong to different Clerk instances (no key id in common: Backend API {backend:?}, sessions {session:?}); nothing was changed")]
pub struct InstanceMismatch {
    pub backend: Vec<String>,
    pub session: Vec<String>,
}

/// Compares the key ids of the Backend API's instance with the session keys; `Ok(None)` when
/// they overlap or `CLERK_JWKS_URL` is not configured.
async fn check_instance(
    clerk: &dyn crate::clerk::api::ClerkApi,
    settings: &ReconcileSettings,
) -> Result<Option<InstanceMismatch>, ClerkApiError> {
    let Some(url) = &settings.session_jwks_url else {
        tracing::debug!("CLERK_JWKS_URL not set: instance check skipped");
        return Ok(None);
    };
    let backend = patiently(|| clerk.instance_key_ids()).await?;
    let session = crate::clerk::api::session_key_ids(url).await?;
    if backend.iter().any(|k| session.contains(k)) {
        return Ok(None);
    }
    Ok(Some(InstanceMismatch { backend, session }))
}

/// Retries a call through 429s, waiting as Clerk asks.
async fn patiently<T, F, Fut>(mut call: F) -> Result<T, ClerkApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClerkApiError>>,
{
    let mut limited = 0;
    loop {
        match call().await {
            Err(ClerkApiError::RateLimited { retry_after }) if limited < MAX_RATE_LIMITED => {
                limited += 1;
                let wait = retry_after
                    .unwrap_or(Duration::from_secs(1))
                    .min(Duration::from_secs(60));
                tracing::info!(?wait, "Clerk rate limit: waiting");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

impl Job for Reconcile {
    type Context = JobContext;
    /// Never rename: queued rows carry it.
    const QUEUE: &'static str = "authsync.reconcile";
    const MAX_ATTEMPTS: u32 = 5;
    /// 30 minutes. A run lists users 500 a page and confirms each missing one alone, all at
    /// 4 requests a second, and may wait out up to five 429s of 60 s in a row: 100,000 users
    /// list in about 5 minutes (200 pages plus a lookup each here), leaving some 20 minutes
    /// for about 2,000 confirmations and rate-limit waits. It also ends a stuck run well before
    /// the next hourly one is scheduled (`RECONCILE_INTERVAL_SECS`).
    const DEADLINE: Duration = Duration::from_secs(30 * 60);

    fn metadata(&self) -> crate::queue::Metadata {
        self.origin.metadata()
    }

    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        let clerk = ctx.clerk_api()?.clone();
        // Operators confirm held deletions by the run's job id; a direct call gets its own id.
        let run_id = queue::current_job_id().unwrap_or_else(|| ulid::Ulid::generate().to_string());
        if let Some(mismatch) = check_instance(clerk.as_ref(), &ctx.reconcile).await? {
            let mut tx = ctx.pool.begin().await?;
            let details = json!({"job_id": run_id, "error": {"code": INSTANCE_MISMATCH, "message": mismatch.to_string()}});
            audit::record(&mut tx, &self.origin, "reconcile.run", "system", details).await?;
            tx.commit().await?;
            tracing::error!(error = %mismatch, "reconcile refused");
            return Err(JobError::Fatal(mismatch.into()));
        }
        let started: chrono::DateTime<chrono::Utc> = crate::db::query_scalar("SELECT now()")
            .fetch_one(crate::db::on(&ctx.pool))
            .await?;
        let mut counts = Counts::default();
        let mut seen = HashSet::new();
        let mut offset = 0;
        loop {
            let page: Vec<ClerkUser> =
                patiently(|| clerk.list_users(self.page_size, offset)).await?;
            let n = page.len() as u32;
            let mut jobs = Vec::new();
            for user in page {
                counts.scanned += 1;
                let Ok(snap) = user.into_snapshot() else {
                    continue;
                };
                seen.insert(snap.clerk_user_id.as_str().to_owned());
                match users::version_of(&ctx.pool, &snap.clerk_user_id).await? {
                    None => counts.created += 1,
                    Some(v) if v.is_none_or(|v| v < snap.updated_at) => counts.updated += 1,
                    Some(_) => continue,
                }
                jobs.push(PlannedJob::ProvisionUser(ProvisionUser {
                    user: snap,
                    origin: self.origin.clone(),
                }));
            }
            if !jobs.is_empty() {
                let mut tx = ctx.pool.begin().await?;
                queue::enqueue(&mut tx, &jobs, None).await.retryable()?;
                tx.commit().await?;
                ctx.notifier.wake(ProvisionUser::QUEUE);
            }
            if n < self.page_size {
                break;
            }
            offset += n;
            tokio::time::sleep(PACE).await;
        }
        // Live rows Clerk did not list: gone, unless created while we paged (confirmed below).
        let candidates = users::live_unchanged_since(&ctx.pool, started).await?;
        let unseen: Vec<ClerkUserId> = candidates
            .into_iter()
            .filter(|c| !seen.contains(c))
            .filter_map(|c| ClerkUserId::parse(&c).ok())
            .collect();
        let max_deletions = u64::from(ctx.reconcile.max_deletions);
        // More than the guard allows: all of them are held for an operator without asking
        // Clerk about each (at 4 requests a second, a key of another instance would take hours
        // to confirm a large user base one by one and never reach the hold). Otherwise each is
        // confirmed gone with Clerk before it is deleted.
        let hold = unseen.len() as u64 > max_deletions;
        let mut gone = Vec::new();
        if hold {
            gone = unseen;
        } else {
            for id in unseen {
                tokio::time::sleep(PACE).await;
                if patiently(|| clerk.get_user(&id)).await?.is_none() {
                    gone.push(id);
                }
            }
        }
        // The deletions (or the hold) and the run's record commit together.
        let deleted_at_ms = started.timestamp_millis();
        let mut tx = ctx.begin().await?;
        // This run's view replaces any hold of an earlier run nobody confirmed.
        held_deletions::supersede(&mut tx, &run_id).await?;
        if hold {
            counts.held_deletions = gone.len() as u64;
            let ids: Vec<String> = gone.iter().map(|id| id.as_str().to_owned()).collect();
            held_deletions::hold(&mut tx, &run_id, &ids, deleted_at_ms).await?;
            tracing::warn!(
                held = ids.len(),
                max = ctx.reconcile.max_deletions,
                job_id = %run_id,
                "reconcile would delete more users than RECONCILE_MAX_DELETIONS: deletions held for an operator"
            );
        } else if !gone.is_empty() {
            counts.deleted = gone.len() as u64;
            let jobs: Vec<PlannedJob> = gone
                .into_iter()
                .map(|clerk_user_id| {
                    PlannedJob::SoftDelete(SoftDelete {
                        clerk_user_id,
                        deleted_at_ms,
                        origin: self.origin.clone(),
                    })
                })
                .collect();
            queue::enqueue(&mut tx, &jobs, None).await.retryable()?;
        }
        let mut details = json!(counts);
        details["job_id"] = json!(run_id);
        audit::record(&mut tx, &self.origin, "reconcile.run", "system", details).await?;
        tx.commit().await?;
        if counts.deleted > 0 {
            ctx.notifier.wake(SoftDelete::QUEUE);
        }
        tracing::info!(?counts, "reconcile done");
        Ok(())
    }
}
