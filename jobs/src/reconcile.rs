//! Reconcile: repairs drift between Clerk and our `users` — webhooks lost beyond Svix' retries,
//! or an outage longer than its schedule. Pages through `GET /v1/users`, enqueues ProvisionUser
//! for users missing or older here, and SoftDelete for live rows whose user Clerk no longer
//! has (confirmed one by one with `GET /v1/users/{id}`). Paced well under Clerk's rate limits
//! (at most 4 requests a second, 40 per 10 s against 100 in development) and honouring 429.

use crate::audit::{self, Origin};
use crate::clerk::ClerkUser;
use crate::clerk_api::ClerkApiError;
use crate::context::JobContext;
use crate::error::{JobError, ResultExt};
use crate::ids::ClerkUserId;
use crate::planner::PlannedJob;
use crate::provision_user::ProvisionUser;
use crate::queue::{self, Job};
use crate::soft_delete::SoftDelete;
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

/// What one run found.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub scanned: u64,
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
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
    /// Never rename: queued rows carry it.
    const QUEUE: &'static str = "authsync.reconcile";
    const MAX_ATTEMPTS: u32 = 5;
    /// 30 minutes. A run lists users 500 a page and confirms each missing one alone, all at
    /// 4 requests a second, and may wait out up to five 429s of 60 s in a row: 100,000 users
    /// list in about 5 minutes (200 pages plus a lookup each here), leaving some 20 minutes
    /// for about 2,000 confirmations and rate-limit waits. It also ends a stuck run well before
    /// the next hourly one is scheduled (`RECONCILE_INTERVAL_SECS`).
    const DEADLINE: Duration = Duration::from_secs(30 * 60);

    fn origin(&self) -> &Origin {
        &self.origin
    }

    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        let clerk = ctx.clerk_api()?.clone();
        let started: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&ctx.pool)
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
                let stored: Option<Option<i64>> = sqlx::query_scalar(
                    "SELECT clerk_updated_at FROM users WHERE clerk_user_id = $1",
                )
                .bind(snap.clerk_user_id.as_str())
                .fetch_optional(&ctx.pool)
                .await?;
                match stored {
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
                let mut conn = ctx.pool.acquire().await?;
                queue::enqueue(&mut conn, &jobs, None).await.retryable()?;
                ctx.notifier.wake(ProvisionUser::QUEUE);
            }
            if n < self.page_size {
                break;
            }
            offset += n;
            tokio::time::sleep(PACE).await;
        }
        // Live rows Clerk did not list: gone, unless created while we paged. Confirm each.
        let candidates: Vec<String> = sqlx::query_scalar(
            "SELECT clerk_user_id FROM users WHERE deleted_at IS NULL AND clerk_user_id IS NOT NULL AND updated_at < $1",
        )
        .bind(started)
        .fetch_all(&ctx.pool)
        .await?;
        for cid in candidates.into_iter().filter(|c| !seen.contains(c)) {
            let Ok(id) = ClerkUserId::parse(&cid) else {
                continue;
            };
            tokio::time::sleep(PACE).await;
            if patiently(|| clerk.get_user(&id)).await?.is_none() {
                counts.deleted += 1;
                let job = SoftDelete {
                    clerk_user_id: id,
                    deleted_at_ms: started.timestamp_millis(),
                    origin: self.origin.clone(),
                };
                let mut conn = ctx.pool.acquire().await?;
                queue::enqueue_one(&mut conn, &job, None)
                    .await
                    .retryable()?;
                ctx.notifier.wake(SoftDelete::QUEUE);
            }
        }
        let mut conn = ctx.pool.acquire().await?;
        audit::record(
            &mut conn,
            &self.origin,
            "reconcile.run",
            "system",
            json!(counts),
        )
        .await?;
        tracing::info!(?counts, "reconcile done");
        Ok(())
    }
}
