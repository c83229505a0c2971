//! Liveness and readiness.

use crate::error::{ApiError, Code};
use crate::startup::AppState;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

#[derive(Object)]
pub struct Status {
    /// `ok` (liveness) or `ready` (readiness).
    status: String,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    #[oai(status = 200)]
    Ok(Json<Status>),
}

fn status(s: &str) -> HealthResponse {
    HealthResponse::Ok(Json(Status {
        status: s.to_owned(),
    }))
}

#[derive(Default)]
pub struct HealthApi;

#[OpenApi]
impl HealthApi {
    /// Liveness: the process is up
    #[oai(path = "/healthz", method = "get", tag = "crate::openapi::Tag::Health")]
    async fn healthz(&self) -> HealthResponse {
        status("ok")
    }

    /// Readiness: the database answers and is migrated, and the pool is not saturated
    ///
    /// 503 `unavailable` (database unreachable), `not_migrated`, or `pool_saturated` (every
    /// connection of the routes' pool has been in use for over 10 s).
    #[oai(path = "/readyz", method = "get", tag = "crate::openapi::Tag::Health")]
    async fn readyz(&self, state: Data<&AppState>) -> Result<HealthResponse, ApiError> {
        readyz(&state).await
    }
}

/// The database answers, our migrations have been applied, and the routes' pool has not been
/// saturated (every connection in use) for longer than the threshold. Saturation is checked
/// first: a query through a saturated pool would only wait out the acquire timeout.
async fn readyz(state: &AppState) -> Result<HealthResponse, ApiError> {
    let saturated = state.pool_watch.saturated_for();
    if saturated > state.pool_saturated_after {
        let message = format!(
            "every database connection of the api has been in use for {} s",
            saturated.as_secs()
        );
        return Err(ApiError::NotReady(Code::PoolSaturated, message));
    }
    let ready = jobs::store::migrated(&state.pool).await;
    match ready {
        Ok(true) => Ok(status("ready")),
        Ok(false) => Err(ApiError::NotReady(
            Code::NotMigrated,
            "migrations have not been applied: run `api migrate`".into(),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::NotReady(
                Code::Unavailable,
                "the database is unavailable".into(),
            ))
        }
    }
}
