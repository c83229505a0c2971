//! The operator routes of Reconcile: run it now, list the runs (counts, errors such as
//! `instance_mismatch`, deletions held back by the `RECONCILE_MAX_DELETIONS` guard), and
//! confirm a run's held deletions. Auth and cross-site checks as in `admin`.

use super::admin::{audit_and_commit, db, guarded, operator_origin};
use crate::error::ApiError;
use crate::startup::AppState;
use jobs::handlers::reconcile::Reconcile;
use jobs::handlers::soft_delete::SoftDelete;
use jobs::planner::PlannedJob;
use jobs::queue::Job;
use poem::http::StatusCode;
use poem::web::Json;
use poem::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::HashMap;

/// The Reconcile run that is queued, running or retrying, if any.
const CURRENT_RECONCILE: &str = "SELECT id, status, attempts, max_attempts FROM apalis.jobs \
     WHERE job_type = $1 AND (status IN ('Pending', 'Queued', 'Running') OR (status = 'Failed' AND attempts < max_attempts)) \
     ORDER BY run_at LIMIT 1";

guarded!(write run_reconcile, run_reconcile_inner);

/// Queues a Reconcile run now, unless one is already queued or running (then its id).
async fn run_reconcile_inner(state: &AppState, who: &str) -> Result<Response, ApiError> {
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
    let current: Option<(String, String, i32, i32)> = jobs::db::query_as(CURRENT_RECONCILE)
        .bind(Reconcile::QUEUE)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
    if let Some((id, ..)) = current {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"job_id": id, "already_queued": true})),
        )
            .into_response());
    }
    let origin = operator_origin(who);
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
        json!({"by": who, "job_id": id}),
    )
    .await?;
    state.notifier.wake(Reconcile::QUEUE);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"job_id": id, "already_queued": false})),
    )
        .into_response())
}

guarded!(read reconcile_runs, reconcile_runs_inner);

/// The last runs (from the audit log) with their held deletions, and the run in progress.
async fn reconcile_runs_inner(state: &AppState, _who: &str) -> Result<Response, ApiError> {
    let runs = jobs::store::audit::reconcile_runs(&state.pool)
        .await
        .map_err(db)?;
    let current: Option<(String, String, i32, i32)> = jobs::db::query_as(CURRENT_RECONCILE)
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
    let runs: Vec<Value> = runs
        .into_iter()
        .map(|jobs::store::audit::ReconcileRun { at, actor, details: d }| {
            let (held, confirmed) = d["job_id"]
                .as_str()
                .and_then(|id| held.get(id).copied())
                .unwrap_or((0, 0));
            json!({"job_id": d["job_id"], "at": at, "actor": actor, "scanned": d["scanned"], "created": d["created"],
                   "updated": d["updated"], "deleted": d["deleted"], "held_deletions": held,
                   "confirmed_deletions": confirmed, "error": d["error"]})
        })
        .collect();
    let current = current.map(|(id, status, attempts, max)| {
        json!({"job_id": id, "state": jobs::queue::status::state(&status, attempts, max), "attempts": attempts, "max_attempts": max})
    });
    Ok(Json(json!({"runs": runs, "current": current})).into_response())
}

guarded!(write confirm_deletions, confirm_deletions_inner, job_id: &str);

/// Applies the deletions a run held back: marks them confirmed and enqueues their SoftDelete
/// jobs (the operator as their actor) in one transaction, so a second call finds nothing.
async fn confirm_deletions_inner(
    state: &AppState,
    who: &str,
    job_id: &str,
) -> Result<Response, ApiError> {
    let mut tx = jobs::db::begin(&state.pool, jobs::db::TxLimits::API)
        .await
        .map_err(db)?;
    let held = jobs::store::held_deletions::confirm(&mut tx, job_id, who)
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
    let origin = operator_origin(who);
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
        json!({"by": who, "job_id": job_id, "deletions": ids.len()}),
    )
    .await?;
    state.notifier.wake(SoftDelete::QUEUE);
    let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"job_id": job_id, "confirmed": ids.len(), "job_ids": ids})),
    )
        .into_response())
}
