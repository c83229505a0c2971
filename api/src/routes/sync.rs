//! The dashboard fallback: `POST /v1/sync` provisions the signed-in user now (urgent job) and
//! `GET /v1/jobs/{id}` reports — or long-polls — that job for its owner only.

use crate::error::ApiError;
use crate::session::SessionVerifier;
use crate::startup::AppState;
use jobs::audit::Origin;
use jobs::clerk::ids::ClerkUserId;
use jobs::handlers::sync_user::SyncUser;
use jobs::queue::status::{job_status, JobState, JobStatus};
use jobs::store::sync_jobs;
use jobs::store::users::{find_live, UserView};
use poem::http::{HeaderMap, StatusCode};
use poem::web::Json;
use poem::{IntoResponse, Response};
use serde_json::json;
use std::time::{Duration, Instant};

/// The longest a request may wait for a job.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

fn db(e: sqlx::Error) -> ApiError {
    ApiError::Unavailable(e.into())
}

pub async fn sync(headers: &HeaderMap, state: &AppState) -> Response {
    start_sync(headers, state)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn start_sync(headers: &HeaderMap, state: &AppState) -> Result<Response, ApiError> {
    let verifier = state.sessions.as_ref().ok_or(ApiError::NotConfigured(
        "session verification (CLERK_JWKS_URL, CLERK_ISSUER)",
    ))?;
    let session = verifier.verify_request(headers).await?;
    let uid = session.user_id;
    if let Some(user) = find_live(&state.pool, &uid).await.map_err(db)? {
        return Ok(Json(json!({"status": "ready", "user": user})).into_response());
    }
    if !state.clerk_api_enabled {
        return Err(ApiError::NotConfigured(
            "the Clerk Backend API (CLERK_SECRET_KEY)",
        ));
    }
    let job_id = outstanding_or_new(state, &uid, headers).await.map_err(db)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "provisioning", "job_id": job_id, "poll_url": format!("/v1/jobs/{job_id}")})),
    )
        .into_response())
}

/// One outstanding urgent job per user: a second call while one is queued, running or
/// retrying returns the same id.
async fn outstanding_or_new(
    state: &AppState,
    uid: &ClerkUserId,
    headers: &HeaderMap,
) -> Result<String, sqlx::Error> {
    let mut tx = jobs::db::begin(&state.pool, jobs::db::TxLimits::API).await?;
    jobs::db::query("SELECT pg_advisory_xact_lock(hashtextextended('sync:' || $1, 0))")
        .bind(uid.as_str())
        .execute(&mut *tx)
        .await?;
    if let Some(id) = sync_jobs::outstanding(&mut tx, uid.as_str()).await? {
        tx.commit().await?;
        return Ok(id);
    }
    let job = SyncUser {
        clerk_user_id: uid.clone(),
        origin: Origin {
            user: Some(uid.clone()),
            client_ip: None,
            user_agent: headers
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(400).collect()),
            ..Origin::system()
        },
    };
    let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
    let id = jobs::queue::enqueue_one(&mut tx, &job, request_id)
        .await
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?
        .to_string();
    sync_jobs::insert(&mut tx, &id, uid.as_str()).await?;
    tx.commit().await?;
    state.notifier.wake(<SyncUser as jobs::queue::Job>::QUEUE);
    tracing::info!(clerk_user_id = %uid, job_id = %id, "urgent provisioning enqueued");
    Ok(id)
}

pub async fn get_job(
    headers: &HeaderMap,
    id: &str,
    wait_ms: Option<&str>,
    state: &AppState,
) -> Response {
    read_job(headers, id, wait_ms, state)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

fn parse_wait(raw: Option<&str>) -> Result<Duration, ApiError> {
    match raw {
        None => Ok(Duration::ZERO),
        Some(v) => v
            .parse::<u64>()
            .map(|ms| Duration::from_millis(ms).min(MAX_WAIT))
            .map_err(|_| {
                ApiError::BadRequest(
                    "invalid_wait_ms",
                    format!(
                        "wait_ms must be a whole number of milliseconds (at most {})",
                        MAX_WAIT.as_millis()
                    ),
                )
            }),
    }
}

fn terminal(s: &JobStatus) -> bool {
    matches!(s.state, JobState::Succeeded | JobState::Failed)
}

async fn read_job(
    headers: &HeaderMap,
    id: &str,
    wait_ms: Option<&str>,
    state: &AppState,
) -> Result<Response, ApiError> {
    let wait = parse_wait(wait_ms)?;
    let verifier = state.sessions.as_ref().ok_or(ApiError::NotConfigured(
        "session verification (CLERK_JWKS_URL, CLERK_ISSUER)",
    ))?;
    // A wait is admitted before it costs a query (the token of an open wait, before it costs
    // a signature check); a plain read is not a wait.
    let token = SessionVerifier::token(headers);
    if !wait.is_zero() {
        state
            .job_waiters
            .refuse_early(token.as_deref())
            .map_err(ApiError::TooManyWaiters)?;
    }
    let session = verifier.verify_request(headers).await?;
    let slot = match (wait.is_zero(), token) {
        (false, Some(token)) => Some(
            state
                .job_waiters
                .admit(session.user_id.as_str(), &token)
                .map_err(ApiError::TooManyWaiters)?,
        ),
        _ => None,
    };
    let (waits, waiting) = (&state.job_waiters, slot.is_some());
    let permit = || async move {
        match waiting {
            true => Some(waits.query_permit().await),
            false => None,
        }
    };
    let owned: bool = {
        let _p = permit().await;
        sync_jobs::is_owner(&state.pool, id, session.user_id.as_str())
            .await
            .map_err(db)?
    };
    if !owned {
        return Err(ApiError::NotFound("no such job for this user"));
    }
    let read = || async {
        let _p = permit().await;
        job_status(&state.pool, id).await.map_err(db)
    };
    let deadline = Instant::now() + wait;
    let notify = state.job_waiters.subscribe(id);
    let waited = async {
        loop {
            // Register interest before reading, so a result recorded in between is not missed.
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let status = read()
                .await?
                .ok_or(ApiError::NotFound("no such job for this user"))?;
            let left = deadline.saturating_duration_since(Instant::now());
            if terminal(&status) || left.is_zero() {
                return Ok::<JobStatus, ApiError>(status);
            }
            if tokio::time::timeout(left, woken).await.is_err() {
                return Ok(read().await?.unwrap_or(status));
            }
        }
    }
    .await;
    drop(notify);
    drop(slot);
    let status = waited?;
    let user: Option<UserView> = if status.state == JobState::Succeeded {
        find_live(&state.pool, &session.user_id).await.map_err(db)?
    } else {
        None
    };
    let mut body = json!({
        "job_id": status.id,
        "state": status.state,
        "attempts": status.attempts,
        "max_attempts": status.max_attempts,
    });
    if let Some(u) = user {
        body["user"] = json!(u);
    }
    // Generic, with the job id as reference: the stored error is for operators only.
    if let Some(e) = status.public_error() {
        body["error"] = json!(e);
    }
    Ok(Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_ms_is_bounded_and_checked() {
        assert_eq!(parse_wait(None).unwrap(), Duration::ZERO);
        assert_eq!(parse_wait(Some("250")).unwrap(), Duration::from_millis(250));
        assert_eq!(parse_wait(Some("999999")).unwrap(), MAX_WAIT);
        for bad in ["-1", "soon", "1.5", ""] {
            assert_eq!(
                parse_wait(Some(bad)).unwrap_err().code(),
                "invalid_wait_ms",
                "{bad}"
            );
        }
    }
}
