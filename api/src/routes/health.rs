//! Liveness and readiness.

use crate::error::{ApiError, Code};
use crate::startup::AppState;
use jobs::readiness::DbState;
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
    /// 503 with the reason and its fix in the body: `unavailable` (the database cannot be
    /// reached), `database_missing` (the database in `DATABASE_URL` does not exist),
    /// `not_migrated` (run `api migrate`), or `pool_saturated` (every connection of the
    /// routes' pool has been in use for over 10 s).
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
    match jobs::readiness::check(&state.pool).await {
        DbState::Ready => Ok(status("ready")),
        not_ready => {
            // The start-up watch said so once; a probe every few seconds would only repeat it.
            tracing::debug!(
                code = not_ready.code(),
                "not ready: {}",
                not_ready.message()
            );
            Err(ApiError::NotReady(code_of(&not_ready), not_ready.message()))
        }
    }
}

/// The error code of a database that is not ready.
fn code_of(state: &DbState) -> Code {
    match state {
        DbState::Ready | DbState::Unreachable { .. } | DbState::Busy { .. } => Code::Unavailable,
        DbState::Missing { .. } => Code::DatabaseMissing,
        DbState::NotMigrated => Code::NotMigrated,
    }
}
