//! The operator API under `/admin/api`: the event log (filtered, sorted, cursor-paginated;
//! one-time codes redacted), replaying an event, failed/dead/retrying jobs, retrying one.
//! Auth: `Authorization: Bearer $ADMIN_TOKEN` (constant-time compare) or a session token whose
//! user has role `admin`; 401 without credentials, 403 for a valid non-admin session, and
//! `403 cross_site_request` for a state-changing request signed in by the `__session` cookie
//! that does not come from our own pages (see `csrf`). Reconcile's routes are in
//! `admin_reconcile`, the payload redaction in `redact`. (Over 400 lines: the event log's
//! filtered, cursor-paged query and the two operator actions share the auth above.)

use crate::error::ApiError;
use crate::startup::AppState;
use jobs::clerk::ids::SvixId;
use jobs::clerk::ClerkEvent;
use poem::http::HeaderMap;
use poem::web::Json;
use poem::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

type Time = chrono::DateTime<chrono::Utc>;
/// id, queue, status, attempts, max_attempts, last error, run_at, svix_id
type JobRow = (
    String,
    String,
    String,
    i32,
    i32,
    Option<String>,
    Time,
    Option<String>,
);

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

/// The audit origin of an operator's request: the admin user, or `system` for ADMIN_TOKEN.
pub(crate) fn operator_origin(who: &str) -> jobs::audit::Origin {
    jobs::audit::Origin {
        user: who
            .strip_prefix("user:")
            .and_then(|id| jobs::clerk::ids::ClerkUserId::parse(id).ok()),
        ..jobs::audit::Origin::system()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a route does: only state-changing ones are checked for cross-site requests.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// Who may use the operator routes.
pub(crate) async fn authorize(
    headers: &HeaderMap,
    state: &AppState,
    access: Access,
) -> Result<String, ApiError> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    if let (Some(token), Some(admin)) = (bearer, &state.admin_token) {
        if constant_time_eq(token.as_bytes(), admin.expose_secret().as_bytes()) {
            return Ok("admin-token".into());
        }
    }
    // Without an Authorization header the session comes from the cookie, which a browser
    // also attaches to requests other sites make.
    let by_cookie = headers.get("authorization").is_none()
        && crate::session::SessionVerifier::token(headers).is_some();
    if access == Access::Write && by_cookie && !super::csrf::from_own_origin(headers) {
        return Err(ApiError::CrossSiteRequest);
    }
    let Some(sessions) = &state.sessions else {
        return Err(ApiError::Unauthenticated(
            "invalid_token",
            "operator routes need ADMIN_TOKEN or an admin session",
        ));
    };
    let session = sessions.verify_request(headers).await?;
    let user = jobs::store::users::live_id_and_role(&state.pool, &session.user_id)
        .await
        .map_err(db)?;
    match user.as_ref().map(|u| u.role.as_str()) {
        Some("admin") => Ok(format!("user:{}", session.user_id)),
        _ => Err(ApiError::Forbidden("operator routes are for admins")),
    }
}

/// An operator route: `guarded!(read|write name, inner, args…)` authorizes, then runs `inner`.
macro_rules! guarded {
    (read $name:ident, $inner:ident $(, $arg:ident : $ty:ty)*) => {
        guarded!(@ Read $name, $inner $(, $arg: $ty)*);
    };
    (write $name:ident, $inner:ident $(, $arg:ident : $ty:ty)*) => {
        guarded!(@ Write $name, $inner $(, $arg: $ty)*);
    };
    (@ $access:ident $name:ident, $inner:ident $(, $arg:ident : $ty:ty)*) => {
        pub async fn $name(
            headers: &poem::http::HeaderMap,
            state: &$crate::startup::AppState
            $(, $arg: $ty)*
        ) -> poem::Response {
            use poem::IntoResponse;
            let access = $crate::routes::admin::Access::$access;
            match $crate::routes::admin::authorize(headers, state, access).await {
                Ok(who) => $inner(state, &who $(, $arg)*).await.unwrap_or_else(IntoResponse::into_response),
                Err(e) => e.into_response(),
            }
        }
    };
}
pub(crate) use guarded;

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
            ApiError::BadRequest("invalid_query", format!("{name} must be an RFC 3339 time"))
        })
}

guarded!(read list_events, list_events_inner, q: EventQuery);

async fn list_events_inner(
    state: &AppState,
    _who: &str,
    q: EventQuery,
) -> Result<Response, ApiError> {
    const STATUSES: &[&str] = &["queued", "processed", "failed", "ignored", "rejected"];
    if let Some(s) = q.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::BadRequest(
            "invalid_query",
            format!("status `{s}` is not one of {}", STATUSES.join(", ")),
        ));
    }
    let asc = match q.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "invalid_query",
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
            "invalid_query",
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
                ApiError::BadRequest("invalid_query", "cursor is malformed".into())
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
    let events: Vec<Value> = rows
        .into_iter()
        .map(|r| json!({"svix_id": r.svix_id, "event_type": r.event_type, "status": r.status, "received_at": r.received_at, "attempts": r.attempts, "last_error": r.last_error, "processed_at": r.processed_at}))
        .collect();
    Ok(Json(json!({"events": events, "next_cursor": next})).into_response())
}

pub use super::redact::redact;

guarded!(read event_detail, event_detail_inner, id: &str);

async fn event_detail_inner(state: &AppState, _who: &str, id: &str) -> Result<Response, ApiError> {
    let e = jobs::store::webhook_events::detail(&state.pool, id)
        .await
        .map_err(db)?
        .ok_or(ApiError::NotFound("no such event"))?;
    Ok(Json(json!({"svix_id": id, "event_type": e.event_type, "status": e.status, "received_at": e.received_at, "attempts": e.attempts, "pending_jobs": e.pending_jobs, "last_error": e.last_error, "payload": redact(e.payload)})).into_response())
}

guarded!(write replay_event, replay_event_inner, id: &str);

/// Plans the stored event again and enqueues its jobs: safe because handlers are idempotent.
async fn replay_event_inner(state: &AppState, who: &str, id: &str) -> Result<Response, ApiError> {
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
            "not_replayable",
            format!("the stored event does not parse: {e}"),
        )
    })?;
    let jobs = jobs::planner::plan(&svix, &event);
    if jobs.is_empty() {
        return Err(ApiError::BadRequest(
            "not_replayable",
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
        &operator_origin(who),
        "event.replayed",
        id,
        json!({"by": who, "jobs": ids.len()}),
    )
    .await?;
    state.notifier.wake_all(jobs.iter().map(|j| j.queue()));
    Ok((poem::http::StatusCode::ACCEPTED, Json(json!({"svix_id": id, "job_ids": ids.iter().map(|i| i.to_string()).collect::<Vec<_>>()}))).into_response())
}

guarded!(read list_jobs, list_jobs_inner, job_state: Option<&str>, queue: Option<&str>);

async fn list_jobs_inner(
    state: &AppState,
    _who: &str,
    job_state: Option<&str>,
    queue: Option<&str>,
) -> Result<Response, ApiError> {
    let filter = match job_state.unwrap_or("problems") {
        "problems" => "(status = 'Killed' OR status = 'Failed')",
        "dead" => "((status = 'Failed' AND attempts >= max_attempts) OR status = 'Killed')",
        "retrying" => "(status = 'Failed' AND attempts < max_attempts)",
        other => {
            return Err(ApiError::BadRequest(
                "invalid_query",
                format!("state `{other}` is not one of problems, dead, retrying"),
            ))
        }
    };
    let sql = format!(
        "SELECT id, job_type, status, attempts, max_attempts, last_result ->> 'Err', run_at, metadata -> 'svix_id' FROM apalis.jobs \
         WHERE {filter} AND ($1::text IS NULL OR job_type = $1) ORDER BY done_at DESC NULLS LAST LIMIT 200"
    );
    let rows: Vec<JobRow> = jobs::db::query_as(sqlx::AssertSqlSafe(sql))
        .bind(queue)
        .fetch_all(jobs::db::on(&state.pool))
        .await
        .map_err(db)?;
    let jobs: Vec<Value> = rows
        .into_iter()
        .map(|(id, queue, status, attempts, max, err, run_at, svix)| {
            let st = jobs::queue::status::state(&status, attempts, max);
            json!({"job_id": id, "queue": queue, "state": st, "dead": matches!(st, jobs::queue::status::JobState::Failed), "attempts": attempts, "max_attempts": max, "last_error": err, "run_at": run_at, "svix_id": svix})
        })
        .collect();
    Ok(Json(json!({ "jobs": jobs })).into_response())
}

guarded!(write retry_job, retry_job_inner, id: &str);

/// Gives a dead (failed for good or killed) job a fresh set of attempts, now.
async fn retry_job_inner(state: &AppState, who: &str, id: &str) -> Result<Response, ApiError> {
    let mut tx = jobs::db::begin(&state.pool, jobs::db::TxLimits::API)
        .await
        .map_err(db)?;
    let retried: Option<(Option<String>, String)> = jobs::db::query_as(
        "UPDATE apalis.jobs SET status = 'Pending', attempts = 0, run_at = now(), lock_by = NULL, done_at = NULL \
         WHERE id = $1 AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)) RETURNING metadata -> 'svix_id', job_type",
    )
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
        &operator_origin(who),
        "job.retried",
        id,
        json!({"by": who}),
    )
    .await?;
    state.notifier.wake(&queue);
    Ok((
        poem::http::StatusCode::ACCEPTED,
        Json(json!({"job_id": id, "state": "queued"})),
    )
        .into_response())
}

guarded!(read queues, queues_inner);

async fn queues_inner(state: &AppState, _who: &str) -> Result<Response, ApiError> {
    let stats = jobs::queue::status::queue_stats(&state.pool)
        .await
        .map_err(db)?;
    Ok(Json(json!({ "queues": stats })).into_response())
}
