//! Every route of the api as one poem-openapi service: it routes the requests, and the same
//! definitions produce `/openapi.json` and the docs UI at `/docs`.
//!
//! The handlers in `routes` build their responses themselves (the error table in `error.rs`,
//! raw-body signature checks, long polls), so each operation here returns [`Documented`]: the
//! handler's response as is, described in the spec by a response enum listing every status and
//! body that handler can answer. `tests/tests/openapi.rs` checks the spec against real answers.

use crate::routes;
use crate::startup::AppState;
use poem::http::HeaderMap;
use poem::web::Data;
use poem::{Body, IntoResponse, Request, Response};
use poem_openapi::payload::{Html, Json, PlainText};
use poem_openapi::registry::{MetaResponses, Registry};
use poem_openapi::{param, ApiResponse, Object, OpenApi, Tags};
use std::marker::PhantomData;

/// A handler's own response, documented by the response enum `D`.
pub struct Documented<D>(Response, PhantomData<D>);

impl<D> From<Response> for Documented<D> {
    fn from(resp: Response) -> Self {
        Self(resp, PhantomData)
    }
}

impl<D: Send> IntoResponse for Documented<D> {
    fn into_response(self) -> Response {
        self.0
    }
}

impl<D: ApiResponse> ApiResponse for Documented<D> {
    const BAD_REQUEST_HANDLER: bool = true;

    fn meta() -> MetaResponses {
        D::meta()
    }

    fn register(registry: &mut Registry) {
        D::register(registry);
    }

    /// A parameter poem-openapi could not parse: our 400 shape, not its plain-text one.
    fn from_parse_request_error(err: poem::Error) -> Self {
        crate::error::ApiError::BadRequest("invalid_request", err.to_string())
            .into_response()
            .into()
    }
}

#[derive(Tags)]
enum Tag {
    /// Clerk's Svix-signed webhook deliveries.
    Webhooks,
    /// The dashboard fallback, called with the signed-in user's Clerk session token
    /// (`Authorization: Bearer <token>` or the `__session` cookie).
    Dashboard,
    /// Operator routes: `Authorization: Bearer $ADMIN_TOKEN`, or the session token of a user
    /// whose role is `admin`.
    Operator,
    /// Liveness, readiness and Prometheus metrics.
    Health,
    /// Browser pages: the reference setup page and the operator console.
    Pages,
}

// ---- bodies -----------------------------------------------------------------------------

/// Every error: a stable `code` to match on and a message safe to show.
#[derive(Object)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Object)]
struct ErrorDetail {
    code: String,
    message: String,
}

#[derive(Object)]
struct WebhookOutcome {
    /// `accepted`, `duplicate` or `ignored`.
    status: String,
    svix_id: String,
    /// The jobs planned for an accepted event.
    job_ids: Option<Vec<String>>,
    /// The type of an ignored event.
    event_type: Option<String>,
}

#[derive(Object)]
struct Status {
    status: String,
}

/// A provisioned user.
#[derive(Object)]
struct User {
    /// Our primary key (UUID).
    id: String,
    clerk_user_id: Option<String>,
    email: Option<String>,
    email_verified: bool,
    first_name: Option<String>,
    last_name: Option<String>,
    username: Option<String>,
    image_url: Option<String>,
    /// `user` or `admin`.
    role: String,
}

#[derive(Object)]
struct SyncReady {
    /// `ready`
    status: String,
    user: User,
}

#[derive(Object)]
struct SyncStarted {
    /// `provisioning`
    status: String,
    job_id: String,
    /// `/v1/jobs/{job_id}`
    poll_url: String,
}

#[derive(Object)]
struct JobReport {
    job_id: String,
    /// `queued`, `running`, `retrying`, `succeeded` or `failed`.
    state: String,
    attempts: i32,
    max_attempts: i32,
    /// The user, once the job has succeeded.
    user: Option<User>,
    /// The last error of a job that has not succeeded.
    error: Option<String>,
}

#[derive(Object)]
struct Me {
    user: User,
    memberships: Vec<Membership>,
}

#[derive(Object)]
struct Membership {
    organization: Organization,
    /// As Clerk sends it: `org:admin`, `org:member` or a custom role.
    role: String,
}

#[derive(Object)]
struct Organization {
    clerk_org_id: String,
    name: Option<String>,
    slug: Option<String>,
}

#[derive(Object)]
struct EventSummary {
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
struct EventPage {
    events: Vec<EventSummary>,
    /// Pass as `cursor` for the next page; absent on the last.
    next_cursor: Option<String>,
}

#[derive(Object)]
struct EventDetail {
    svix_id: String,
    event_type: String,
    status: String,
    received_at: String,
    attempts: i32,
    pending_jobs: i32,
    last_error: Option<String>,
    /// The event as Clerk sent it; one-time codes in `email.created`/`sms.created` redacted.
    payload: serde_json::Value,
}

#[derive(Object)]
struct Replayed {
    svix_id: String,
    job_ids: Vec<String>,
}

#[derive(Object)]
struct JobSummary {
    job_id: String,
    queue: String,
    state: String,
    /// Failed for good or killed: only an operator's retry runs it again.
    dead: bool,
    attempts: i32,
    max_attempts: i32,
    last_error: Option<String>,
    run_at: String,
    svix_id: Option<String>,
}

#[derive(Object)]
struct JobList {
    jobs: Vec<JobSummary>,
}

#[derive(Object)]
struct Retried {
    job_id: String,
    /// `queued`
    state: String,
}

#[derive(Object)]
struct QueueStats {
    queue: String,
    pending: i64,
    running: i64,
    retrying: i64,
    dead: i64,
    oldest_pending_seconds: f64,
}

#[derive(Object)]
struct QueueList {
    queues: Vec<QueueStats>,
}

#[derive(Object)]
struct ReconcileQueued {
    job_id: String,
    /// True when a run was already queued or running; `job_id` is that run.
    already_queued: bool,
}

#[derive(Object)]
struct ReconcileRun {
    /// The run's job id (what `POST /admin/api/reconcile` returned); absent on runs recorded
    /// before it was kept.
    job_id: Option<String>,
    at: String,
    actor: String,
    /// Counts; absent on a run that failed before paging (see `error`).
    scanned: Option<i64>,
    created: Option<i64>,
    updated: Option<i64>,
    /// Soft deletions the run enqueued itself.
    deleted: Option<i64>,
    /// Deletions held back (more than `RECONCILE_MAX_DELETIONS`) and still waiting for
    /// `POST /admin/api/reconcile/{job_id}/confirm`.
    held_deletions: i64,
    /// Held deletions an operator has confirmed.
    confirmed_deletions: i64,
    /// Why the run stopped without changing anything, e.g. `instance_mismatch`.
    error: Option<ErrorDetail>,
}

#[derive(Object)]
struct DeletionsConfirmed {
    /// The run whose held deletions were confirmed.
    job_id: String,
    /// How many deletions were confirmed.
    confirmed: i64,
    /// The SoftDelete jobs enqueued for them.
    job_ids: Vec<String>,
}

#[derive(Object)]
struct ReconcileCurrent {
    job_id: String,
    state: String,
    attempts: i32,
    max_attempts: i32,
}

#[derive(Object)]
struct ReconcileReport {
    /// The last 20 runs, newest first.
    runs: Vec<ReconcileRun>,
    current: Option<ReconcileCurrent>,
}

// ---- responses, per operation ------------------------------------------------------------
// These enums only describe; the handlers build the responses (see `Documented`).

#[allow(dead_code, clippy::large_enum_variant)]
#[derive(ApiResponse)]
enum WebhookResponses {
    /// The event is stored and its jobs are queued.
    #[oai(status = 202)]
    Accepted(Json<WebhookOutcome>),
    /// A repeat of a stored delivery (`duplicate`), or a type we do not handle (`ignored`).
    #[oai(status = 200)]
    Done(Json<WebhookOutcome>),
    /// Missing or malformed svix headers, or a signed body that is not a Clerk event
    /// (recorded as `rejected`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No signature matches a configured secret, or the timestamp is outside ±5 minutes.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The sender is not in `WEBHOOK_IP_ALLOWLIST`.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// The body is over the limit.
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// The database is unavailable; nothing was stored. Retry after `Retry-After` seconds.
    #[oai(status = 503, header(name = "retry-after", ty = "u32"))]
    Unavailable(Json<ErrorBody>),
}

#[allow(dead_code, clippy::large_enum_variant)]
#[derive(ApiResponse)]
enum SyncResponses {
    /// The user is provisioned already.
    #[oai(status = 200)]
    Ready(Json<SyncReady>),
    /// An urgent job provisions the user; poll it. A second call returns the same job.
    #[oai(status = 202)]
    Started(Json<SyncStarted>),
    /// No, an invalid or an expired session token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Session verification or the Clerk Backend API is not configured, or the database is
    /// unavailable.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

#[allow(dead_code, clippy::large_enum_variant)]
#[derive(ApiResponse)]
enum JobResponses {
    /// The job's state, once it ends or `wait_ms` passes.
    #[oai(status = 200)]
    Report(Json<JobReport>),
    /// `wait_ms` is not a whole number of milliseconds.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// No such job for the signed-in user.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// `too_many_waiters`: this user has 4 long-polls open already, or the process 1,000.
    /// Retry after `Retry-After` seconds.
    #[oai(status = 429, header(name = "retry-after", ty = "u32"))]
    TooManyWaiters(Json<ErrorBody>),
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

#[allow(dead_code, clippy::large_enum_variant)]
#[derive(ApiResponse)]
enum MeResponses {
    /// The signed-in user's row and memberships, read under row-level security.
    #[oai(status = 200)]
    Me(Json<Me>),
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Not provisioned yet: call `POST /v1/sync`.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

/// What every operator route may answer besides its success.
macro_rules! operator_responses {
    ($name:ident { $($(#[$doc:meta])* $variant:ident = $status:literal ($body:ty)),* $(,)? }) => {
        #[allow(dead_code, clippy::large_enum_variant)]
        #[derive(ApiResponse)]
        enum $name {
            $($(#[$doc])* #[oai(status = $status)] $variant(Json<$body>),)*
            /// No or wrong credentials.
            #[oai(status = 401)]
            Unauthorized(Json<ErrorBody>),
            /// A valid session of a user who is not an admin (`forbidden`), or a
            /// state-changing request signed in by the `__session` cookie that did not come
            /// from this service's own pages (`cross_site_request`).
            #[oai(status = 403)]
            Forbidden(Json<ErrorBody>),
            #[oai(status = 503)]
            Unavailable(Json<ErrorBody>),
        }
    };
}

operator_responses!(EventPageResponses {
    Ok = 200 (EventPage),
    /// A filter, cursor or limit that does not parse.
    BadRequest = 400 (ErrorBody),
});
operator_responses!(EventDetailResponses {
    Ok = 200 (EventDetail),
    NotFound = 404 (ErrorBody),
});
operator_responses!(ReplayResponses {
    /// The event's jobs are queued again (handlers are idempotent).
    Accepted = 202 (Replayed),
    /// The event causes no jobs, or its stored body no longer parses.
    BadRequest = 400 (ErrorBody),
    NotFound = 404 (ErrorBody),
});
operator_responses!(JobListResponses {
    Ok = 200 (JobList),
    BadRequest = 400 (ErrorBody),
});
operator_responses!(RetryResponses {
    /// The job runs again with a fresh set of attempts.
    Accepted = 202 (Retried),
    NotFound = 404 (ErrorBody),
    /// The job is not dead.
    Conflict = 409 (ErrorBody),
});
operator_responses!(QueueResponses {
    Ok = 200 (QueueList),
});
operator_responses!(ReconcileRunResponses {
    Accepted = 202 (ReconcileQueued),
});
operator_responses!(ReconcileReportResponses {
    Ok = 200 (ReconcileReport),
});
operator_responses!(ConfirmDeletionsResponses {
    /// The held deletions are confirmed and their SoftDelete jobs queued.
    Accepted = 202 (DeletionsConfirmed),
    /// No such Reconcile run.
    NotFound = 404 (ErrorBody),
    /// The run holds no deletions, or they were confirmed already.
    Conflict = 409 (ErrorBody),
});

#[allow(dead_code, clippy::large_enum_variant)]
#[derive(ApiResponse)]
enum HealthResponses {
    #[oai(status = 200)]
    Ok(Json<Status>),
    /// The database is unreachable (`unavailable`) or not migrated (`not_migrated`), or every
    /// connection of the routes' pool has been in use for over 10 s (`pool_saturated`).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

#[allow(dead_code, clippy::large_enum_variant)]
#[derive(ApiResponse)]
enum MetricsResponses {
    /// Prometheus text exposition format.
    #[oai(status = 200)]
    Ok(PlainText<String>),
}

#[allow(dead_code, clippy::large_enum_variant)]
#[derive(ApiResponse)]
enum PageResponses {
    #[oai(status = 200)]
    Ok(Html<String>),
}

#[allow(dead_code, clippy::large_enum_variant)]
#[derive(ApiResponse)]
enum ScriptResponses {
    #[oai(status = 200, content_type = "text/javascript; charset=utf-8")]
    Ok(PlainText<String>),
}

// ---- operations --------------------------------------------------------------------------

pub struct AuthsyncApi;

#[OpenApi]
impl AuthsyncApi {
    /// Receive a Clerk webhook
    ///
    /// Verifies the Svix signature over the raw body (`svix-id`, `svix-timestamp`,
    /// `svix-signature` headers) and stores the event and its jobs in one transaction before
    /// answering 2xx. The body is Clerk's event JSON as delivered.
    #[oai(path = "/webhooks/clerk", method = "post", tag = "Tag::Webhooks")]
    async fn clerk_webhook(
        &self,
        req: &Request,
        headers: &HeaderMap,
        body: Body,
        state: Data<&AppState>,
    ) -> Documented<WebhookResponses> {
        routes::webhooks::clerk_webhook(req, headers, body, &state)
            .await
            .into()
    }

    /// Provision the signed-in user now
    #[oai(path = "/v1/sync", method = "post", tag = "Tag::Dashboard")]
    async fn sync(&self, headers: &HeaderMap, state: Data<&AppState>) -> Documented<SyncResponses> {
        routes::sync::sync(headers, &state).await.into()
    }

    /// Follow a provisioning job
    #[oai(path = "/v1/jobs/:id", method = "get", tag = "Tag::Dashboard")]
    async fn get_job(
        &self,
        headers: &HeaderMap,
        state: Data<&AppState>,
        /// The `job_id` from `POST /v1/sync`.
        id: param::Path<String>,
        /// Wait up to this many milliseconds (at most 10,000) for the job to end.
        wait_ms: param::Query<Option<String>>,
    ) -> Documented<JobResponses> {
        routes::sync::get_job(headers, &id.0, wait_ms.0.as_deref(), &state)
            .await
            .into()
    }

    /// The signed-in user
    #[oai(path = "/v1/me", method = "get", tag = "Tag::Dashboard")]
    async fn me(&self, headers: &HeaderMap, state: Data<&AppState>) -> Documented<MeResponses> {
        routes::me::me(headers, &state).await.into()
    }

    /// The event log
    #[oai(path = "/admin/api/events", method = "get", tag = "Tag::Operator")]
    #[allow(clippy::too_many_arguments)]
    async fn list_events(
        &self,
        headers: &HeaderMap,
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
    ) -> Documented<EventPageResponses> {
        let q = routes::admin::EventQuery {
            event_type: event_type.0,
            status: status.0,
            since: since.0,
            until: until.0,
            limit: limit.0,
            cursor: cursor.0,
            order: order.0,
        };
        routes::admin::list_events(headers, &state, q).await.into()
    }

    /// One event, with its payload
    #[oai(
        path = "/admin/api/events/:svix_id",
        method = "get",
        tag = "Tag::Operator"
    )]
    async fn event_detail(
        &self,
        headers: &HeaderMap,
        state: Data<&AppState>,
        svix_id: param::Path<String>,
    ) -> Documented<EventDetailResponses> {
        routes::admin::event_detail(headers, &state, &svix_id.0)
            .await
            .into()
    }

    /// Replay an event
    #[oai(
        path = "/admin/api/events/:svix_id/replay",
        method = "post",
        tag = "Tag::Operator"
    )]
    async fn replay_event(
        &self,
        headers: &HeaderMap,
        state: Data<&AppState>,
        svix_id: param::Path<String>,
    ) -> Documented<ReplayResponses> {
        routes::admin::replay_event(headers, &state, &svix_id.0)
            .await
            .into()
    }

    /// Jobs that need attention
    #[oai(path = "/admin/api/jobs", method = "get", tag = "Tag::Operator")]
    async fn list_jobs(
        &self,
        headers: &HeaderMap,
        state: Data<&AppState>,
        /// `problems` (default: dead and retrying), `dead` or `retrying`.
        #[oai(name = "state")]
        state_filter: param::Query<Option<String>>,
        /// Only this queue, e.g. `authsync.provision_user`.
        queue: param::Query<Option<String>>,
    ) -> Documented<JobListResponses> {
        routes::admin::list_jobs(
            headers,
            &state,
            state_filter.0.as_deref(),
            queue.0.as_deref(),
        )
        .await
        .into()
    }

    /// Retry a dead job
    #[oai(
        path = "/admin/api/jobs/:id/retry",
        method = "post",
        tag = "Tag::Operator"
    )]
    async fn retry_job(
        &self,
        headers: &HeaderMap,
        state: Data<&AppState>,
        id: param::Path<String>,
    ) -> Documented<RetryResponses> {
        routes::admin::retry_job(headers, &state, &id.0)
            .await
            .into()
    }

    /// Queue depth and age
    #[oai(path = "/admin/api/queues", method = "get", tag = "Tag::Operator")]
    async fn queues(
        &self,
        headers: &HeaderMap,
        state: Data<&AppState>,
    ) -> Documented<QueueResponses> {
        routes::admin::queues(headers, &state).await.into()
    }

    /// Reconcile with Clerk now
    #[oai(path = "/admin/api/reconcile", method = "post", tag = "Tag::Operator")]
    async fn run_reconcile(
        &self,
        headers: &HeaderMap,
        state: Data<&AppState>,
    ) -> Documented<ReconcileRunResponses> {
        routes::admin_reconcile::run_reconcile(headers, &state)
            .await
            .into()
    }

    /// Reconcile runs and their counts
    #[oai(path = "/admin/api/reconcile", method = "get", tag = "Tag::Operator")]
    async fn reconcile_runs(
        &self,
        headers: &HeaderMap,
        state: Data<&AppState>,
    ) -> Documented<ReconcileReportResponses> {
        routes::admin_reconcile::reconcile_runs(headers, &state)
            .await
            .into()
    }

    /// Apply a run's held deletions
    ///
    /// A run that would soft-delete more than `RECONCILE_MAX_DELETIONS` users holds them all;
    /// this applies them (audited with the operator as actor). Confirming twice applies once.
    #[oai(
        path = "/admin/api/reconcile/:job_id/confirm",
        method = "post",
        tag = "Tag::Operator"
    )]
    async fn confirm_deletions(
        &self,
        headers: &HeaderMap,
        state: Data<&AppState>,
        /// The run's `job_id`.
        job_id: param::Path<String>,
    ) -> Documented<ConfirmDeletionsResponses> {
        routes::admin_reconcile::confirm_deletions(headers, &state, &job_id.0)
            .await
            .into()
    }

    /// Liveness: the process is up
    #[oai(path = "/healthz", method = "get", tag = "Tag::Health")]
    async fn healthz(&self) -> Documented<HealthResponses> {
        routes::health::healthz().await.into()
    }

    /// Readiness: the database answers and is migrated, and the pool is not saturated
    #[oai(path = "/readyz", method = "get", tag = "Tag::Health")]
    async fn readyz(&self, state: Data<&AppState>) -> Documented<HealthResponses> {
        routes::health::readyz(&state).await.into()
    }

    /// Prometheus metrics
    #[oai(path = "/metrics", method = "get", tag = "Tag::Health")]
    async fn metrics(&self, state: Data<&AppState>) -> Documented<MetricsResponses> {
        routes::metrics::metrics(&state).await.into()
    }

    /// The reference setup page
    #[oai(path = "/setup", method = "get", tag = "Tag::Pages")]
    async fn setup_page(&self, state: Data<&AppState>) -> Documented<PageResponses> {
        routes::setup::page(&state).await.into()
    }

    /// The setup page's script
    #[oai(path = "/setup.js", method = "get", tag = "Tag::Pages")]
    async fn setup_script(&self) -> Documented<ScriptResponses> {
        routes::setup::script().await.into()
    }

    /// The operator console
    #[oai(path = "/admin", method = "get", tag = "Tag::Pages")]
    async fn admin_page(&self) -> Documented<PageResponses> {
        routes::setup::admin_page().await.into()
    }

    /// The operator console's script
    #[oai(path = "/admin.js", method = "get", tag = "Tag::Pages")]
    async fn admin_script(&self) -> Documented<ScriptResponses> {
        routes::setup::admin_script().await.into()
    }
}

/// The service: routes, `/openapi.json` and the docs UI.
pub fn service() -> poem_openapi::OpenApiService<AuthsyncApi, ()> {
    poem_openapi::OpenApiService::new(AuthsyncApi, "authsync", env!("CARGO_PKG_VERSION"))
        .description(
            "Keeps an application's Postgres in step with Clerk: signed webhooks in, typed jobs \
             out, a dashboard fallback for the moment after sign-up, and operator routes.",
        )
}
