//! The dashboard fallback: `POST /v1/sync` provisions the signed-in user now (urgent job) and
//! `GET /v1/jobs/{id}` reports — or long-polls — that job for its owner only.

use super::user::User;
use super::State;
use crate::auth::{Session, SessionToken};
use crate::error::{ApiError, Code};
use crate::startup::AppState;
use jobs::audit::Origin;
use jobs::clerk::ids::ClerkUserId;
use jobs::handlers::sync_user::SyncUser;
use jobs::queue::status::{job_status, JobState, JobStatus};
use jobs::store::sync_jobs;
use jobs::store::users::find_live;
use poem::http::HeaderMap;
use poem::web::Data;
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{param, ApiResponse, Object, OpenApi};
use std::time::{Duration, Instant};

#[derive(Object)]
pub struct SyncReady {
    /// `ready`
    status: String,
    user: User,
}

#[derive(Object)]
pub struct SyncStarted {
    /// `provisioning`
    status: String,
    job_id: String,
    /// `/v1/jobs/{job_id}`
    poll_url: String,
}

#[derive(ApiResponse)]
pub enum SyncResponse {
    /// The user is provisioned already.
    #[oai(status = 200)]
    Ready(Json<SyncReady>),
    /// An urgent job provisions the user; poll it. A second call returns the same job.
    #[oai(status = 202)]
    Started(Json<SyncStarted>),
}

#[derive(Object)]
pub struct JobReport {
    job_id: String,
    state: State,
    attempts: i32,
    max_attempts: i32,
    /// The user, once the job has succeeded.
    #[oai(skip_serializing_if_is_none)]
    user: Option<User>,
    /// A generic sentence for a job that has not succeeded, with the job id as the reference
    /// to quote (the stored error is for operators only).
    #[oai(skip_serializing_if_is_none)]
    error: Option<String>,
}

#[derive(ApiResponse)]
pub enum JobResponse {
    /// The job's state, once it ends or `wait_ms` passes.
    #[oai(status = 200)]
    Report(Json<JobReport>),
}

#[derive(Default)]
pub struct SyncApi;

#[OpenApi]
impl SyncApi {
    /// Provision the signed-in user now
    ///
    /// 503 `not_configured` without session verification or the Clerk Backend API.
    #[oai(
        path = "/v1/sync",
        method = "post",
        tag = "crate::openapi::Tag::Dashboard"
    )]
    async fn sync(
        &self,
        req: &Request,
        session: Session,
        state: Data<&AppState>,
    ) -> Result<SyncResponse, ApiError> {
        start_sync(req.headers(), session, &state).await
    }

    /// Follow a provisioning job
    ///
    /// 404 for someone else's or an unknown job. 429 `too_many_waiters` (with `Retry-After`)
    /// when this user has 4 long-polls open already, or the process 1,000.
    #[oai(
        path = "/v1/jobs/:id",
        method = "get",
        tag = "crate::openapi::Tag::Dashboard"
    )]
    async fn get_job(
        &self,
        session: SessionToken,
        state: Data<&AppState>,
        /// The `job_id` from `POST /v1/sync`.
        id: param::Path<String>,
        /// Wait up to this many milliseconds (at most 10,000) for the job to end.
        wait_ms: param::Query<Option<String>>,
    ) -> Result<JobResponse, ApiError> {
        read_job(session, &id.0, wait_ms.0.as_deref(), &state).await
    }
}

/// The longest a request may wait for a job.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

fn db(e: sqlx::Error) -> ApiError {
    ApiError::Unavailable(e.into())
}

async fn start_sync(
    headers: &HeaderMap,
    session: Session,
    state: &AppState,
) -> Result<SyncResponse, ApiError> {
    let uid = session.user_id;
    if let Some(user) = find_live(&state.pool, &uid).await.map_err(db)? {
        return Ok(SyncResponse::Ready(Json(SyncReady {
            status: "ready".into(),
            user: user.into(),
        })));
    }
    if !state.clerk_api_enabled {
        return Err(ApiError::NotConfigured(
            "the Clerk Backend API (CLERK_SECRET_KEY)",
        ));
    }
    let job_id = outstanding_or_new(state, &uid, headers).await.map_err(db)?;
    Ok(SyncResponse::Started(Json(SyncStarted {
        status: "provisioning".into(),
        poll_url: format!("/v1/jobs/{job_id}"),
        job_id,
    })))
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

fn parse_wait(raw: Option<&str>) -> Result<Duration, ApiError> {
    match raw {
        None => Ok(Duration::ZERO),
        Some(v) => v
            .parse::<u64>()
            .map(|ms| Duration::from_millis(ms).min(MAX_WAIT))
            .map_err(|_| {
                ApiError::BadRequest(
                    Code::InvalidWaitMs,
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
    caller: SessionToken,
    id: &str,
    wait_ms: Option<&str>,
    state: &AppState,
) -> Result<JobResponse, ApiError> {
    let wait = parse_wait(wait_ms)?;
    caller.configured()?;
    // A wait is admitted before it costs a query (the token of an open wait, before it costs
    // a signature check); a plain read is not a wait.
    let token = caller.token.as_deref();
    if !wait.is_zero() {
        state
            .job_waiters
            .refuse_early(token)
            .map_err(ApiError::TooManyWaiters)?;
    }
    let session = caller.verify().await?;
    let slot = match (wait.is_zero(), token) {
        (false, Some(token)) => Some(
            state
                .job_waiters
                .admit(session.user_id.as_str(), token)
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
    let user = if status.state == JobState::Succeeded {
        find_live(&state.pool, &session.user_id).await.map_err(db)?
    } else {
        None
    };
    Ok(JobResponse::Report(Json(JobReport {
        job_id: status.id.clone(),
        state: status.state.into(),
        attempts: status.attempts,
        max_attempts: status.max_attempts,
        user: user.map(User::from),
        // Generic, with the job id as reference: the stored error is for operators only.
        error: status.public_error(),
    })))
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
                Code::InvalidWaitMs,
                "{bad}"
            );
        }
    }
}
