//! The operator API under `/admin/api`: the event log (filtered, sorted, cursor-paginated;
//! one-time codes redacted), one event with the jobs it caused, replaying an event,
//! retrying/failed jobs, retrying one, queue depths. Auth is the [`Operator`] extractor
//! (`crate::auth`). Search and a user's timeline are in `admin_users`, trends in
//! `admin_stats`, Reconcile's routes in `admin_reconcile`, the payload redaction in `redact`.
//! (Over 400 lines: the event log's filtered, cursor-paged query, the two operator actions and
//! the bodies of all five routes.)

use super::{rfc3339, State};
use crate::auth::Operator;
use crate::error::{ApiError, Code};
use crate::startup::AppState;
use jobs::clerk::ids::SvixId;
use jobs::clerk::ClerkEvent;
use jobs::queue::{Predicate, Status};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{param, ApiResponse, Object, OpenApi};
use serde_json::{json, Value};
use std::sync::LazyLock;

#[derive(Object)]
pub struct EventSummary {
    svix_id: String,
    event_type: String,
    /// `queued`, `processed`, `failed`, `ignored` or `rejected`.
    status: String,
    received_at: String,
    /// Job runs so far.
    attempts: i32,
    last_error: Option<String>,
    processed_at: Option<String>,
}

#[derive(Object)]
pub struct EventPage {
    events: Vec<EventSummary>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum EventPageResponse {
    #[oai(status = 200)]
    Ok(Json<EventPage>),
}

#[derive(Object)]
pub struct EventDetail {
    svix_id: String,
    event_type: String,
    status: String,
    received_at: String,
    attempts: i32,
    pending_jobs: i32,
    last_error: Option<String>,
    /// The event as Clerk sent it; one-time codes in `email.created`/`sms.created` redacted.
    payload: Value,
    /// The jobs it caused (replays and follow-ups such as the welcome email included), the
    /// latest first; at most 50.
    jobs: Vec<JobSummary>,
}

#[derive(ApiResponse)]
pub enum EventDetailResponse {
    #[oai(status = 200)]
    Ok(Json<EventDetail>),
}

#[derive(Object)]
pub struct Replayed {
    svix_id: String,
    job_ids: Vec<String>,
}

#[derive(ApiResponse)]
pub enum ReplayResponse {
    /// The event's jobs are queued again (handlers are idempotent).
    #[oai(status = 202)]
    Accepted(Json<Replayed>),
}

#[derive(Object)]
pub struct JobSummary {
    job_id: String,
    queue: String,
    state: State,
    /// Failed for good or killed: only an operator's retry runs it again.
    dead: bool,
    attempts: i32,
    max_attempts: i32,
    last_error: Option<String>,
    /// When it runs (next), or ran last.
    run_at: String,
    /// When its last run ended; null before its first.
    done_at: Option<String>,
    /// The webhook delivery that caused it.
    svix_id: Option<String>,
}

#[derive(Object)]
pub struct JobList {
    jobs: Vec<JobSummary>,
}

#[derive(ApiResponse)]
pub enum JobListResponse {
    #[oai(status = 200)]
    Ok(Json<JobList>),
}

#[derive(Object)]
pub struct Retried {
    job_id: String,
    /// `queued`
    state: State,
}

#[derive(ApiResponse)]
pub enum RetryResponse {
    /// The job runs again with a fresh set of attempts.
    #[oai(status = 202)]
    Accepted(Json<Retried>),
}

#[derive(Object)]
pub struct QueueStats {
    queue: String,
    pending: i64,
    running: i64,
    retrying: i64,
    dead: i64,
    oldest_pending_seconds: f64,
}

#[derive(Object)]
pub struct QueueList {
    queues: Vec<QueueStats>,
}

#[derive(ApiResponse)]
pub enum QueueResponse {
    #[oai(status = 200)]
    Ok(Json<QueueList>),
}

#[derive(Default)]
pub struct AdminApi;

#[OpenApi(tag = "crate::openapi::Tag::Operator")]
impl AdminApi {
    /// The event log
    ///
    /// Newest first (`order=asc` for oldest), paged with the returned `next_cursor`; bad
    /// parameters are 400 `invalid_query`.
    #[oai(path = "/admin/api/events", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list_events(
        &self,
        _operator: Operator,
        state: Data<&AppState>,
        /// Event type, e.g. `user.created`.
        #[oai(name = "type")]
        event_type: param::Query<Option<String>>,
        /// `queued`, `processed`, `failed`, `ignored` or `rejected`.
        status: param::Query<Option<String>>,
        /// Received at or after (RFC 3339).
        since: param::Query<Option<String>>,
        /// Received before (RFC 3339).
        until: param::Query<Option<String>>,
        /// Page size, 1 to 500 (default 50).
        limit: param::Query<Option<String>>,
        /// `next_cursor` of the previous page.
        cursor: param::Query<Option<String>>,
        /// `desc` (default, newest first) or `asc`.
        order: param::Query<Option<String>>,
    ) -> Result<EventPageResponse, ApiError> {
        let q = EventQuery {
            event_type: event_type.0,
            status: status.0,
            since: since.0,
            until: until.0,
            limit: limit.0,
            cursor: cursor.0,
            order: order.0,
        };
        list_events(&state, q).await
    }

    /// One event, with its payload and its jobs
    #[oai(path = "/admin/api/events/:svix_id", method = "get")]
    async fn event_detail(
        &self,
        _operator: Operator,
        state: Data<&AppState>,
        svix_id: param::Path<String>,
    ) -> Result<EventDetailResponse, ApiError> {
        event_detail(&state, &svix_id.0).await
    }

    /// Replay an event
    ///
    /// 400 `not_replayable` when the event causes no jobs or its stored body no longer parses.
    #[oai(path = "/admin/api/events/:svix_id/replay", method = "post")]
    async fn replay_event(
        &self,
        operator: Operator,
        state: Data<&AppState>,
        svix_id: param::Path<String>,
    ) -> Result<ReplayResponse, ApiError> {
        replay_event(&state, &operator, &svix_id.0).await
    }

    /// Jobs that need attention
    ///
    /// The 200 latest finished first; a `state` other than these is 400 `invalid_query`.
    #[oai(path = "/admin/api/jobs", method = "get")]
    async fn list_jobs(
        &self,
        _operator: Operator,
        state: Data<&AppState>,
        /// `problems` (default: retrying and failed), `retrying` (failed, attempts left) or
        /// `failed` (failed for good or killed: only a retry runs it again; `dead` is the same).
        #[oai(name = "state")]
        state_filter: param::Query<Option<String>>,
        /// Only this queue, e.g. `authsync.provision_user`.
        queue: param::Query<Option<String>>,
    ) -> Result<JobListResponse, ApiError> {
        list_jobs(&state, state_filter.0.as_deref(), queue.0.as_deref()).await
    }

    /// Retry a dead job
    ///
    /// 409 `conflict` for a job that is not dead.
    #[oai(path = "/admin/api/jobs/:id/retry", method = "post")]
    async fn retry_job(
        &self,
        operator: Operator,
        state: Data<&AppState>,
        id: param::Path<String>,
    ) -> Result<RetryResponse, ApiError> {
        retry_job(&state, &operator, &id.0).await
    }

    /// Queue depth and age
    #[oai(path = "/admin/api/queues", method = "get")]
    async fn queues(
        &self,
        _operator: Operator,
        state: Data<&AppState>,
    ) -> Result<QueueResponse, ApiError> {
        queues(&state).await
    }
}

pub(crate) fn db(e: sqlx::Error) -> ApiError {
    ApiError::Unavailable(e.into())
}

/// Ends an operator change: its audit entry, then the commit that makes both durable.
pub(crate) async fn audit_and_commit(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    origin: &jobs::audit::Origin,
    action: &str,
    subject: &str,
    details: Value,
) -> Result<(), ApiError> {
    jobs::store::audit::record(&mut tx, origin, action, subject, details)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)
}

/// The event log's filters, as the query string gives them.
pub struct EventQuery {
    pub event_type: Option<String>,
    pub status: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
    pub order: Option<String>,
}

fn time(
    name: &'static str,
    v: Option<&str>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    v.map(|s| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&chrono::Utc)))
        .transpose()
        .map_err(|_| {
            ApiError::BadRequest(
                Code::InvalidQuery,
                format!("{name} must be an RFC 3339 time"),
            )
        })
}

async fn list_events(state: &AppState, q: EventQuery) -> Result<EventPageResponse, ApiError> {
    const STATUSES: &[&str] = &["queued", "processed", "failed", "ignored", "rejected"];
    if let Some(s) = q.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::BadRequest(
            Code::InvalidQuery,
            format!("status `{s}` is not one of {}", STATUSES.join(", ")),
        ));
    }
    let asc = match q.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            return Err(ApiError::BadRequest(
                Code::InvalidQuery,
                "order must be asc or desc".into(),
            ))
        }
    };
    let limit = match q.limit.as_deref() {
        None => 50,
        Some(l) => l.parse::<i64>().unwrap_or(0),
    };
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest(
            Code::InvalidQuery,
            "limit must be between 1 and 500".into(),
        ));
    }
    let (since, until) = (
        time("since", q.since.as_deref())?,
        time("until", q.until.as_deref())?,
    );
    let cursor = match q.cursor.as_deref() {
        None => None,
        Some(c) => {
            let (t, id) = c.split_once('|').ok_or_else(|| {
                ApiError::BadRequest(Code::InvalidQuery, "cursor is malformed".into())
            })?;
            Some((time("cursor", Some(t))?.expect("present"), id.to_owned()))
        }
    };
    let filter = jobs::store::webhook_events::EventFilter {
        event_type: q.event_type.as_deref(),
        status: q.status.as_deref(),
        since,
        until,
        after: cursor.as_ref().map(|c| (c.0, c.1.as_str())),
        ascending: asc,
        limit,
    };
    let rows = jobs::store::webhook_events::list(&state.pool, &filter)
        .await
        .map_err(db)?;
    let next = (rows.len() as i64 == limit)
        .then(|| {
            rows.last().map(|r| {
                format!(
                    "{}|{}",
                    r.received_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    r.svix_id
                )
            })
        })
        .flatten();
    let events = rows.into_iter().map(event_summary).collect();
    Ok(EventPageResponse::Ok(Json(EventPage {
        events,
        next_cursor: next,
    })))
}

pub use super::redact::redact;

async fn event_detail(state: &AppState, id: &str) -> Result<EventDetailResponse, ApiError> {
    let e = jobs::store::webhook_events::detail(&state.pool, id)
        .await
        .map_err(db)?
        .ok_or(ApiError::NotFound("no such event"))?;
    let jobs = jobs::store::queue_jobs::of_events_or_user(&state.pool, &[id.to_owned()], None, 50)
        .await
        .map_err(db)?;
    Ok(EventDetailResponse::Ok(Json(EventDetail {
        svix_id: id.to_owned(),
        event_type: e.event_type,
        status: e.status,
        received_at: rfc3339(&e.received_at),
        attempts: e.attempts,
        pending_jobs: e.pending_jobs,
        last_error: e.last_error,
        payload: redact(e.payload),
        jobs: jobs.into_iter().map(job_summary).collect(),
    })))
}

/// Plans the stored event again and enqueues its jobs: safe because handlers are idempotent.
async fn replay_event(
    state: &AppState,
    operator: &Operator,
    id: &str,
) -> Result<ReplayResponse, ApiError> {
    let svix = SvixId::parse(id).map_err(|_| ApiError::NotFound("no such event"))?;
    let mut tx = jobs::db::begin(&state.pool, jobs::db::TxLimits::API)
        .await
        .map_err(db)?;
    let payload = jobs::store::webhook_events::lock_payload(&mut tx, id)
        .await
        .map_err(db)?;
    let payload = payload.ok_or(ApiError::NotFound("no such event"))?;
    let event = ClerkEvent::parse(payload.to_string().as_bytes()).map_err(|e| {
        ApiError::BadRequest(
            Code::NotReplayable,
            format!("the stored event does not parse: {e}"),
        )
    })?;
    let jobs = jobs::planner::plan(&svix, &event);
    if jobs.is_empty() {
        return Err(ApiError::BadRequest(
            Code::NotReplayable,
            format!("`{}` events cause no jobs", event.event_type),
        ));
    }
    let ids = jobs::queue::enqueue(&mut tx, &jobs, None)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    jobs::store::webhook_events::requeue(&mut tx, id, ids.len() as i32)
        .await
        .map_err(db)?;
    audit_and_commit(
        tx,
        &operator.origin(),
        "event.replayed",
        id,
        json!({"by": operator.who, "jobs": ids.len()}),
    )
    .await?;
    state.notifier.wake_all(jobs.iter().map(|j| j.queue()));
    Ok(ReplayResponse::Accepted(Json(Replayed {
        svix_id: id.to_owned(),
        job_ids: ids.iter().map(|i| i.to_string()).collect(),
    })))
}

/// The values of `GET /admin/api/jobs?state=`, as the queue crate's predicates.
pub(crate) const JOB_STATES: &[(&str, Predicate)] = &[
    ("problems", Predicate::Failing),
    ("retrying", Predicate::Retrying),
    ("failed", Predicate::Dead),
    ("dead", Predicate::Dead),
];

async fn list_jobs(
    state: &AppState,
    job_state: Option<&str>,
    queue: Option<&str>,
) -> Result<JobListResponse, ApiError> {
    let wanted = job_state.unwrap_or("problems");
    let Some(&(_, which)) = JOB_STATES.iter().find(|(name, _)| *name == wanted) else {
        let names: Vec<&str> = JOB_STATES.iter().map(|(n, _)| *n).collect();
        return Err(ApiError::BadRequest(
            Code::InvalidQuery,
            format!("state `{wanted}` is not one of {}", names.join(", ")),
        ));
    };
    let rows = jobs::store::queue_jobs::by_state(&state.pool, which, queue, 200)
        .await
        .map_err(db)?;
    let jobs = rows.into_iter().map(job_summary).collect();
    Ok(JobListResponse::Ok(Json(JobList { jobs })))
}

/// A job row as the operator routes show it.
pub(crate) fn job_summary(r: jobs::store::queue_jobs::JobRow) -> JobSummary {
    let st = jobs::queue::status::state(&r.status, r.attempts, r.max_attempts);
    JobSummary {
        job_id: r.id,
        queue: r.queue,
        state: st.into(),
        dead: matches!(st, jobs::queue::status::JobState::Failed),
        attempts: r.attempts,
        max_attempts: r.max_attempts,
        last_error: r.last_error,
        run_at: rfc3339(&r.run_at),
        done_at: r.done_at.as_ref().map(rfc3339),
        svix_id: r.svix_id,
    }
}

/// An event row as the operator routes show it.
pub(crate) fn event_summary(r: jobs::store::webhook_events::EventSummary) -> EventSummary {
    EventSummary {
        received_at: rfc3339(&r.received_at),
        processed_at: r.processed_at.as_ref().map(rfc3339),
        svix_id: r.svix_id,
        event_type: r.event_type,
        status: r.status,
        attempts: r.attempts,
        last_error: r.last_error,
    }
}

/// Gives a dead (failed for good or killed) job a fresh set of attempts, now.
async fn retry_job(
    state: &AppState,
    operator: &Operator,
    id: &str,
) -> Result<RetryResponse, ApiError> {
    let mut tx = jobs::db::begin(&state.pool, jobs::db::TxLimits::API)
        .await
        .map_err(db)?;
    static RETRY: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE apalis.jobs SET status = '{}', attempts = 0, run_at = now(), lock_by = NULL, done_at = NULL \
             WHERE id = $1 AND {} RETURNING metadata -> 'svix_id', job_type",
            Status::Pending,
            Predicate::Dead
        )
    });
    let retried: Option<(Option<String>, String)> = jobs::db::query_as(RETRY.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
    let Some((svix, queue)) = retried else {
        let exists: bool =
            jobs::db::query_scalar("SELECT EXISTS (SELECT 1 FROM apalis.jobs WHERE id = $1)")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        return Err(if exists {
            ApiError::Conflict("only dead jobs can be retried")
        } else {
            ApiError::NotFound("no such job")
        });
    };
    if let Some(svix) = &svix {
        jobs::store::webhook_events::reopen_failed(&mut tx, svix)
            .await
            .map_err(db)?;
    }
    audit_and_commit(
        tx,
        &operator.origin(),
        "job.retried",
        id,
        json!({"by": operator.who}),
    )
    .await?;
    state.notifier.wake(&queue);
    Ok(RetryResponse::Accepted(Json(Retried {
        job_id: id.to_owned(),
        state: State::Queued,
    })))
}

async fn queues(state: &AppState) -> Result<QueueResponse, ApiError> {
    let stats = jobs::queue::status::queue_stats(&state.pool)
        .await
        .map_err(db)?;
    let queues = stats
        .into_iter()
        .map(|q| QueueStats {
            queue: q.queue,
            pending: q.pending,
            running: q.running,
            retrying: q.retrying,
            dead: q.dead,
            oldest_pending_seconds: q.oldest_pending_seconds,
        })
        .collect();
    Ok(QueueResponse::Ok(Json(QueueList { queues })))
}
