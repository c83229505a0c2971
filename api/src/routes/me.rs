//! `GET /v1/me`: the caller's own row, memberships and organizations, read under row-level
//! security as the role `authsync_user` — the same way an application can read its tables.

use super::user::User;
use crate::auth::Session;
use crate::error::ApiError;
use crate::startup::AppState;
use jobs::store::{memberships, users};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

#[derive(Object)]
pub struct Me {
    user: User,
    memberships: Vec<Membership>,
}

#[derive(Object)]
pub struct Membership {
    organization: Organization,
    /// As Clerk sends it: `org:admin`, `org:member` or a custom role.
    role: String,
}

#[derive(Object)]
pub struct Organization {
    clerk_org_id: String,
    name: Option<String>,
    slug: Option<String>,
}

#[derive(ApiResponse)]
pub enum MeResponse {
    /// The signed-in user's row and memberships, read under row-level security.
    #[oai(status = 200)]
    Me(Json<Me>),
}

#[derive(Default)]
pub struct MeApi;

#[OpenApi]
impl MeApi {
    /// The signed-in user
    ///
    /// 404 when not provisioned yet: call `POST /v1/sync`.
    #[oai(
        path = "/v1/me",
        method = "get",
        tag = "crate::openapi::Tag::Dashboard"
    )]
    async fn me(&self, session: Session, state: Data<&AppState>) -> Result<MeResponse, ApiError> {
        read(session, &state).await
    }
}

async fn read(session: Session, state: &AppState) -> Result<MeResponse, ApiError> {
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
    let memberships = memberships
        .into_iter()
        .map(|m| Membership {
            organization: Organization {
                clerk_org_id: m.clerk_org_id,
                name: m.name,
                slug: m.slug,
            },
            role: m.role,
        })
        .collect();
    Ok(MeResponse::Me(Json(Me {
        user: user.into(),
        memberships,
    })))
}
