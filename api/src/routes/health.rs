//! Liveness and readiness.

use crate::startup::AppState;
use poem::web::Json;
use poem::{http::StatusCode, IntoResponse, Response};
use serde_json::json;

/// The process is up.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// The database answers, our migrations have been applied, and the routes' pool has not been
/// saturated (every connection in use) for longer than the threshold. Saturation is checked
/// first: a query through a saturated pool would only wait out the acquire timeout.
pub async fn readyz(state: &AppState) -> Response {
    let saturated = state.pool_watch.saturated_for();
    if saturated > state.pool_saturated_after {
        let message = format!(
            "every database connection of the api has been in use for {} s",
            saturated.as_secs()
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"code": "pool_saturated", "message": message}})),
        )
            .into_response();
    }
    let ready = jobs::store::migrated(&state.pool).await;
    match ready {
        Ok(true) => Json(json!({"status": "ready"})).into_response(),
        Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": {"code": "not_migrated", "message": "migrations have not been applied: run `api migrate`"}}))).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": {"code": "unavailable", "message": "the database is unavailable"}}))).into_response()
        }
    }
}
