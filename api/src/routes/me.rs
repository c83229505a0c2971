//! `GET /v1/me` (the caller's own row, memberships and organizations) and `GET
//! /v1/me/activity` (their activity log), read under row-level security as the role
//! `authsync_user` — the same way an application can read its tables.

use super::user::User;
use crate::auth::Session;
use crate::error::ApiError;
use crate::startup::AppState;
use jobs::store::{memberships, user_activity, users};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{param, ApiResponse, Object, OpenApi};
use sqlx::{Postgres, Transaction};

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

/// The caller's activity log, newest first.
#[derive(Object)]
pub struct ActivityPage {
    activity: Vec<Activity>,
}

/// One session event of the caller's.
#[derive(Object)]
pub struct Activity {
    /// `session.created`, `session.ended`, `session.removed` or `session.revoked`.
    kind: String,
    /// Clerk's session id (`sess_…`).
    session_id: String,
    /// When Clerk says it happened (RFC 3339).
    occurred_at: String,
    /// The client's IP address, as Clerk reported it.
    client_ip: Option<String>,
    /// The client's user agent, as Clerk reported it.
    user_agent: Option<String>,
}

impl From<user_activity::Activity> for Activity {
    fn from(a: user_activity::Activity) -> Self {
        Self {
            kind: a.kind,
            session_id: a.session_id,
            occurred_at: a.occurred_at.to_rfc3339(),
            client_ip: a.client_ip,
            user_agent: a.user_agent,
        }
    }
}

#[derive(ApiResponse)]
pub enum ActivityResponse {
    /// The signed-in user's session events, read under row-level security.
    #[oai(status = 200)]
    Activity(Json<ActivityPage>),
}

/// Entries per page when `limit` is absent, and at most.
const ACTIVITY_LIMIT: (i64, i64) = (50, 200);

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

    /// The signed-in user's activity log
    ///
    /// Their sign-ins and sign-outs (Clerk's `session.*` events), newest first. Empty for a
    /// user with none; bad `limit` is 400 `invalid_query`.
    #[oai(
        path = "/v1/me/activity",
        method = "get",
        tag = "crate::openapi::Tag::Dashboard"
    )]
    async fn activity(
        &self,
        session: Session,
        state: Data<&AppState>,
        /// Entries, 1 to 200 (default 50).
        limit: param::Query<Option<String>>,
    ) -> Result<ActivityResponse, ApiError> {
        let limit = parse_limit(limit.0.as_deref())?;
        let db = |e: sqlx::Error| ApiError::Unavailable(e.into());
        let mut tx = as_user(&session, &state).await?;
        let rows = user_activity::visible(&mut tx, limit).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(ActivityResponse::Activity(Json(ActivityPage {
            activity: rows.into_iter().map(Activity::from).collect(),
        })))
    }
}

fn parse_limit(raw: Option<&str>) -> Result<i64, ApiError> {
    let (default, max) = ACTIVITY_LIMIT;
    let Some(raw) = raw else {
        return Ok(default);
    };
    match raw.parse::<i64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::BadRequest(
            crate::error::Code::InvalidQuery,
            format!("limit must be a whole number between 1 and {max}"),
        )),
    }
}

/// A transaction as the role `authsync_user` with the caller's Clerk user id set: row-level
/// security shows it the caller's rows only.
async fn as_user(
    session: &Session,
    state: &AppState,
) -> Result<Transaction<'static, Postgres>, ApiError> {
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
    Ok(tx)
}

async fn read(session: Session, state: &AppState) -> Result<MeResponse, ApiError> {
    let db = |e: sqlx::Error| ApiError::Unavailable(e.into());
    let mut tx = as_user(&session, state).await?;
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
