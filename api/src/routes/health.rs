//! Liveness and readiness.

use crate::startup::AppState;
use poem::web::Json;
use poem::{http::StatusCode, IntoResponse, Response};
use serde_json::json;

/// The process is up.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// The database answers and our migrations have been applied.
pub async fn readyz(state: &AppState) -> Response {
    let ready = jobs::db::query_scalar::<bool>(
        "SELECT to_regclass('public.webhook_events') IS NOT NULL AND to_regclass('apalis.jobs') IS NOT NULL",
    )
    .fetch_one(jobs::db::on(&state.pool))
    .await;
    match ready {
        Ok(true) => Json(json!({"status": "ready"})).into_response(),
        Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": {"code": "not_migrated", "message": "migrations have not been applied: run `api migrate`"}}))).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": {"code": "unavailable", "message": "the database is unavailable"}}))).into_response()
        }
    }
}
