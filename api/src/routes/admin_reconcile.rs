//! The operator routes of Reconcile: run it now, list the runs (counts, errors such as
//! `instance_mismatch`, deletions held back by the `RECONCILE_MAX_DELETIONS` guard), and
//! confirm a run's held deletions. Auth and cross-site checks as in `admin`.

use super::admin::{audit_and_commit, db};
use super::{rfc3339, State};
use crate::auth::Operator;
use crate::error::{ApiError, ErrorDetail};
use crate::startup::AppState;
use jobs::handlers::reconcile::Reconcile;
use jobs::handlers::soft_delete::SoftDelete;
use jobs::planner::PlannedJob;
use jobs::queue::{Job, Predicate};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{param, ApiResponse, Object, OpenApi};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::LazyLock;

#[derive(Object)]
pub struct ReconcileQueued {
    job_id: String,
    /// True when a run was already queued or running; `job_id` is that run.
    already_queued: bool,
}

#[derive(ApiResponse)]
pub enum RunResponse {
    #[oai(status = 202)]
    Accepted(Json<ReconcileQueued>),
}

#[derive(Object)]
pub struct ReconcileRun {
    /// The run's job id (what `POST /admin/api/reconcile` returned); null on runs recorded
    /// before it was kept.
    job_id: Option<String>,
    at: String,
    actor: String,
    /// Counts; null on a run that failed before paging (see `error`).
    scanned: Option<i64>,
    created: Option<i64>,
    updated: Option<i64>,
    /// Soft deletions the run enqueued itself.
    deleted: Option<i64>,
    /// Deletions held back (more than `RECONCILE_MAX_DELETIONS`) and still waiting for
    /// `POST /admin/api/reconcile/{job_id}/confirm`.
    held_deletions: i64,
    /// Held deletions an operator has confirmed.
    confirmed_deletions: i64,
    /// Why the run stopped without changing anything, e.g. `instance_mismatch`.
    error: Option<ErrorDetail>,
}

#[derive(Object)]
pub struct ReconcileCurrent {
    job_id: String,
    state: State,
    attempts: i32,
    max_attempts: i32,
}

#[derive(Object)]
pub struct ReconcileReport {
    /// Whether runs can be asked for: false without `CLERK_SECRET_KEY` (then
    /// `POST /admin/api/reconcile` is 503 `not_configured`).
    configured: bool,
    /// The last 20 runs, newest first.
    runs: Vec<ReconcileRun>,
    current: Option<ReconcileCurrent>,
}

#[derive(ApiResponse)]
pub enum ReportResponse {
    #[oai(status = 200)]
    Ok(Json<ReconcileReport>),
}

#[derive(Object)]
pub struct DeletionsConfirmed {
    /// The run whose held deletions were confirmed.
    job_id: String,
    /// How many deletions were confirmed.
    confirmed: i64,
    /// The SoftDelete jobs enqueued for them.
    job_ids: Vec<String>,
}

#[derive(ApiResponse)]
pub enum ConfirmResponse {
    /// The held deletions are confirmed and their SoftDelete jobs queued.
    #[oai(status = 202)]
    Accepted(Json<DeletionsConfirmed>),
}

#[derive(Default)]
pub struct ReconcileApi;

#[OpenApi(tag = "crate::openapi::Tag::Operator")]
impl ReconcileApi {
    /// Reconcile with Clerk now
    ///
    /// 503 `not_configured` without `CLERK_SECRET_KEY`.
    #[oai(path = "/admin/api/reconcile", method = "post")]
    async fn run_reconcile(
        &self,
        operator: Operator,
        state: Data<&AppState>,
    ) -> Result<RunResponse, ApiError> {
        run_reconcile(&state, &operator).await
    }

    /// Reconcile runs and their counts
    #[oai(path = "/admin/api/reconcile", method = "get")]
    async fn reconcile_runs(
        &self,
        _operator: Operator,
        state: Data<&AppState>,
    ) -> Result<ReportResponse, ApiError> {
        reconcile_runs(&state).await
    }

    /// Apply a run's held deletions
    ///
    /// A run that would soft-delete more than `RECONCILE_MAX_DELETIONS` users holds them all;
    /// this applies them (audited with the operator as actor). Confirming twice applies once:
    /// 409 `conflict` when the run holds nothing (any more), 404 for an unknown run.
    #[oai(path = "/admin/api/reconcile/:job_id/confirm", method = "post")]
    async fn confirm_deletions(
        &self,
        operator: Operator,
        state: Data<&AppState>,
        /// The run's `job_id`.
        job_id: param::Path<String>,
    ) -> Result<ConfirmResponse, ApiError> {
        confirm_deletions(&state, &operator, &job_id.0).await
    }
}

/// The Reconcile run that is queued, running or retrying, if any.
static CURRENT_RECONCILE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT id, status, attempts, max_attempts FROM apalis.jobs \
         WHERE job_type = $1 AND {} ORDER BY run_at LIMIT 1",
        Predicate::Open
    )
});

/// Queues a Reconcile run now, unless one is already queued or running (then its id).
async fn run_reconcile(state: &AppState, operator: &Operator) -> Result<RunResponse, ApiError> {
    if !state.clerk_api_enabled {
        return Err(ApiError::NotConfigured("CLERK_SECRET_KEY"));
    }
    let mut tx = jobs::db::begin(&state.pool, jobs::db::TxLimits::API)
        .await
        .map_err(db)?;
    // One operator request at a time decides whether a run is already queued.
    jobs::db::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(Reconcile::QUEUE)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let current: Option<(String, String, i32, i32)> =
        jobs::db::query_as(CURRENT_RECONCILE.as_str())
            .bind(Reconcile::QUEUE)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
    if let Some((id, ..)) = current {
        return Ok(queued(id, true));
    }
    let origin = operator.origin();
    let job = Reconcile {
        page_size: jobs::handlers::reconcile::PAGE_SIZE,
        origin: origin.clone(),
    };
    let id = jobs::queue::enqueue_one(&mut tx, &job, None)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .to_string();
    audit_and_commit(
        tx,
        &origin,
        "reconcile.requested",
        "system",
        json!({"by": operator.who, "job_id": id}),
    )
    .await?;
    state.notifier.wake(Reconcile::QUEUE);
    Ok(queued(id, false))
}

fn queued(job_id: String, already_queued: bool) -> RunResponse {
    RunResponse::Accepted(Json(ReconcileQueued {
        job_id,
        already_queued,
    }))
}

/// The last runs (from the audit log) with their held deletions, and the run in progress.
async fn reconcile_runs(state: &AppState) -> Result<ReportResponse, ApiError> {
    let runs = jobs::store::audit::reconcile_runs(&state.pool)
        .await
        .map_err(db)?;
    let current: Option<(String, String, i32, i32)> =
        jobs::db::query_as(CURRENT_RECONCILE.as_str())
            .bind(Reconcile::QUEUE)
            .fetch_optional(jobs::db::on(&state.pool))
            .await
            .map_err(db)?;
    let ids: Vec<String> = runs
        .iter()
        .filter_map(|r| r.details["job_id"].as_str().map(str::to_owned))
        .collect();
    let held: HashMap<String, (i64, i64)> = jobs::store::held_deletions::counts(&state.pool, &ids)
        .await
        .map_err(db)?
        .into_iter()
        .map(|c| (c.job_id, (c.held, c.confirmed)))
        .collect();
    let runs = runs
        .into_iter()
        .map(
            |jobs::store::audit::ReconcileRun {
                 at,
                 actor,
                 details: d,
             }| {
                let (held, confirmed) = d["job_id"]
                    .as_str()
                    .and_then(|id| held.get(id).copied())
                    .unwrap_or((0, 0));
                let text = |v: &Value| v.as_str().map(str::to_owned);
                ReconcileRun {
                    job_id: text(&d["job_id"]),
                    at: rfc3339(&at),
                    actor,
                    scanned: d["scanned"].as_i64(),
                    created: d["created"].as_i64(),
                    updated: d["updated"].as_i64(),
                    deleted: d["deleted"].as_i64(),
                    held_deletions: held,
                    confirmed_deletions: confirmed,
                    error: d["error"].is_object().then(|| ErrorDetail {
                        code: text(&d["error"]["code"]).unwrap_or_default(),
                        message: text(&d["error"]["message"]).unwrap_or_default(),
                    }),
                }
            },
        )
        .collect();
    let current = current.map(
        |(job_id, status, attempts, max_attempts)| ReconcileCurrent {
            job_id,
            state: jobs::queue::status::state(&status, attempts, max_attempts).into(),
            attempts,
            max_attempts,
        },
    );
    Ok(ReportResponse::Ok(Json(ReconcileReport {
        configured: state.clerk_api_enabled,
        runs,
        current,
    })))
}

/// Applies the deletions a run held back: marks them confirmed and enqueues their SoftDelete
/// jobs (the operator as their actor) in one transaction, so a second call finds nothing.
async fn confirm_deletions(
    state: &AppState,
    operator: &Operator,
    job_id: &str,
) -> Result<ConfirmResponse, ApiError> {
    let mut tx = jobs::db::begin(&state.pool, jobs::db::TxLimits::API)
        .await
        .map_err(db)?;
    let held = jobs::store::held_deletions::confirm(&mut tx, job_id, &operator.who)
        .await
        .map_err(db)?;
    if held.is_empty() {
        let known = jobs::store::held_deletions::is_run(&mut tx, job_id, Reconcile::QUEUE)
            .await
            .map_err(db)?;
        return Err(if known {
            ApiError::Conflict(
                "this run holds no deletions waiting for confirmation (already confirmed, or superseded by a later run)",
            )
        } else {
            ApiError::NotFound("no such reconcile run")
        });
    }
    let origin = operator.origin();
    let planned: Vec<PlannedJob> = held
        .into_iter()
        .filter_map(|h| {
            let clerk_user_id = jobs::clerk::ids::ClerkUserId::parse(&h.clerk_user_id).ok()?;
            Some(PlannedJob::SoftDelete(SoftDelete {
                clerk_user_id,
                deleted_at_ms: h.deleted_at_ms,
                origin: origin.clone(),
            }))
        })
        .collect();
    let ids = jobs::queue::enqueue(&mut tx, &planned, None)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    audit_and_commit(
        tx,
        &origin,
        "reconcile.deletions_confirmed",
        "system",
        json!({"by": operator.who, "job_id": job_id, "deletions": ids.len()}),
    )
    .await?;
    state.notifier.wake(SoftDelete::QUEUE);
    let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    Ok(ConfirmResponse::Accepted(Json(DeletionsConfirmed {
        job_id: job_id.to_owned(),
        confirmed: ids.len() as i64,
        job_ids: ids,
    })))
}
