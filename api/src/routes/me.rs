//! `GET /v1/me`: the caller's own row, memberships and organizations, read under row-level
//! security as the role `authsync_user` — the same way an application can read its tables.

use crate::error::ApiError;
use crate::startup::AppState;
use jobs::store::{memberships, users};
use poem::http::HeaderMap;
use poem::web::Json;
use poem::{IntoResponse, Response};
use serde_json::json;

pub async fn me(headers: &HeaderMap, state: &AppState) -> Response {
    read(headers, state)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn read(headers: &HeaderMap, state: &AppState) -> Result<Response, ApiError> {
    let verifier = state.sessions.as_ref().ok_or(ApiError::NotConfigured(
        "session verification (CLERK_JWKS_URL, CLERK_ISSUER)",
    ))?;
    let session = verifier.verify_request(headers).await?;
    let db = |e: sqlx::Error| ApiError::Unavailable(e.into());
    let mut tx = jobs::db::begin(&state.pool, jobs::db::TxLimits::API)
        .await
        .map_err(db)?;
    jobs::db::query("SET LOCAL ROLE authsync_user")
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    jobs::db::query("SELECT set_config('authsync.clerk_user_id', $1, true)")
        .bind(session.user_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    // No WHERE on the user: the policy decides what is visible.
    let user = users::visible(&mut tx).await.map_err(db)?;
    let Some(user) = user else {
        return Err(ApiError::NotFound(
            "your account has not been provisioned yet: POST /v1/sync",
        ));
    };
    let memberships = memberships::visible(&mut tx).await.map_err(db)?;
    tx.commit().await.map_err(db)?;
    let memberships: Vec<_> = memberships
        .into_iter()
        .map(|m| json!({"organization": {"clerk_org_id": m.clerk_org_id, "name": m.name, "slug": m.slug}, "role": m.role}))
        .collect();
    Ok(Json(json!({"user": user, "memberships": memberships})).into_response())
}
