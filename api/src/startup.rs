//! Building and running the HTTP application. `Application::build` binds its own listener so
//! tests can ask for port 0 and read the real port back.

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::job_events::JobWaiters;
use crate::routes;
use crate::server::Timeouts;
use crate::session::SessionVerifier;
use crate::verify::WebhookVerifier;
use poem::endpoint::BoxEndpoint;
use poem::middleware::CatchPanic;
use poem::{Endpoint, EndpointExt, IntoResponse, Route};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// `CORS_ALLOWED_ORIGINS`, for `/v1/*` ([`crate::cors`]).
    pub cors: crate::cors::AllowedOrigins,
    /// For every route but webhook intake, which has its own connections (`intake`).
    pub pool: PgPool,
    pub verifier: Arc<WebhookVerifier>,
    pub body_limit: usize,
    /// Session-token verification; `None` when CLERK_JWKS_URL/CLERK_ISSUER are not set.
    pub sessions: Option<Arc<SessionVerifier>>,
    /// Whether CLERK_SECRET_KEY is set (the fallback can fetch users).
    pub clerk_api_enabled: bool,
    pub job_waiters: JobWaiters,
    /// Wakes the workers after a commit that enqueued jobs.
    pub notifier: jobs::queue::Notifier,
    /// Stores webhook deliveries, those of concurrent requests together.
    pub intake: jobs::intake::Intake,
    pub setup: routes::setup::SetupPage,
    pub ip_filter: crate::ip_filter::IpFilter,
    /// `ADMIN_TOKEN` for the operator routes.
    pub admin_token: Option<secrecy::SecretString>,
    /// Whether `pool` has been saturated, and for how long (`/readyz`).
    pub pool_watch: jobs::telemetry::PoolWatch,
    /// Saturated longer than this: `/readyz` answers 503.
    pub pool_saturated_after: Duration,
}

/// The bound, ready-to-run api.
pub struct Application {
    port: u16,
    listener: TcpListener,
    timeouts: Timeouts,
    app: BoxEndpoint<'static>,
}

/// Every route of the api: the OpenAPI service, its spec at `/openapi.json`, the docs UI at
/// `/docs`, the browser pages, and `/` with the friendly 404s around them.
pub fn routes(state: AppState) -> BoxEndpoint<'static> {
    let api = crate::openapi::service();
    let templates = routes::metrics::RouteTemplates::from_spec(&api.spec());
    let cors = state.cors.clone();
    let routes = routes::setup::pages(Route::new())
        .at("/openapi.json", api.spec_endpoint())
        .nest("/docs", api.swagger_ui())
        .nest("/", crate::openapi::endpoint(api))
        .around(routes::home::friendly)
        .data(state)
        .around(move |ep, req| crate::cors::handle(ep, req, cors.clone()));
    with_middleware(routes, templates)
}

/// What every route of the api goes through: a panic becomes a logged `500 internal` (not a
/// dropped connection), every response gets a request id and the security headers, and every
/// request is counted and timed by route template (named after `templates`) and status.
pub fn with_middleware(
    ep: impl Endpoint + 'static,
    templates: routes::metrics::RouteTemplates,
) -> BoxEndpoint<'static> {
    ep.with(CatchPanic::new().with_handler(panicked))
        .around(crate::request_id::with_request_id)
        .around(move |ep, req| routes::metrics::record_request(ep, req, templates.clone()))
        .map_to_response()
        .boxed()
}

fn panicked(panic: Box<dyn std::any::Any + Send>) -> poem::Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    ApiError::Internal(anyhow::anyhow!("the handler panicked: {what}")).into_response()
}

/// Says at start, in one line, whether the database is ready and if not what fixes it (`run
/// `api migrate``…), then again each time that changes, until it is ready. The api keeps
/// serving meanwhile: `/readyz` answers with the same reason, and the api recovers on its own
/// once the database is fixed (a release phase that migrates after the api started, a
/// database that comes up later).
async fn watch_database(pool: PgPool) {
    let mut said: Option<jobs::readiness::DbState> = None;
    loop {
        let state = jobs::readiness::check(&pool).await;
        if said.as_ref() != Some(&state) {
            match &state {
                jobs::readiness::DbState::Ready => tracing::info!("database ready"),
                other => tracing::error!(code = other.code(), "{}", other.message()),
            }
        }
        if state == jobs::readiness::DbState::Ready {
            return;
        }
        said = Some(state);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

impl Application {
    /// Binds the listener and builds the routes; `pool` is lazily connected. Webhook intake
    /// and the job-result listener get connections of their own, opened with `pool`'s
    /// options, so no other traffic can take theirs.
    pub async fn build(config: ApiConfig, pool: PgPool) -> std::io::Result<Self> {
        let listener = crate::server::bind(config.listen)?;
        // Every long-poll is a socket: 1,000 of them do not fit the common soft limit of 1,024.
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(n) if n < 4096 => tracing::warn!(
                open_files = n,
                "the open-files limit is low: long-polls and connections beyond it are refused"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the open-files limit could not be raised"),
        }
        let port = listener.local_addr()?.port();
        jobs::telemetry::metrics();
        let routes_pool = pool.options().get_max_connections();
        // Intake's own connections, the long-poll LISTEN connection and the Notifier's.
        let total = routes_pool + jobs::intake::INTAKE_CONNECTIONS + 1 + 1;
        tracing::info!(
            routes = routes_pool,
            intake = jobs::intake::INTAKE_CONNECTIONS,
            listen = 1,
            notify = 1,
            total,
            "database connections: {routes_pool} for routes, {} for webhook intake, 1 LISTEN, 1 for wake-up NOTIFYs: at most {total} in all",
            jobs::intake::INTAKE_CONNECTIONS
        );
        tokio::spawn(watch_database(pool.clone()));
        let pool_watch = jobs::telemetry::PoolWatch::spawn("main", pool.clone());
        let job_waiters = JobWaiters::new(config.wait_limits, &pool);
        job_waiters.spawn_listener(jobs::db::derived_pool(&pool, 1, "authsync-listener"));
        let intake_pool =
            jobs::db::derived_pool(&pool, jobs::intake::INTAKE_CONNECTIONS, "authsync-intake");
        if config.session.is_none() {
            tracing::info!("CLERK_JWKS_URL/CLERK_ISSUER not set: /v1/sync and /v1/jobs are off");
        }
        if !config.clerk_api_enabled {
            tracing::info!("CLERK_SECRET_KEY not set: the dashboard fallback cannot fetch users");
        }
        let notifier = jobs::queue::Notifier::new(pool.clone());
        let state = AppState {
            cors: config.cors_allowed_origins,
            intake: jobs::intake::Intake::spawn(intake_pool, notifier.clone())?,
            notifier,
            pool,
            verifier: config.verifier,
            body_limit: config.body_limit,
            sessions: config.session.map(|s| Arc::new(SessionVerifier::new(s))),
            clerk_api_enabled: config.clerk_api_enabled,
            job_waiters,
            setup: config.setup,
            ip_filter: config.ip_filter,
            admin_token: config.admin_token,
            pool_watch,
            pool_saturated_after: config.pool_saturated_after,
        };
        Ok(Self {
            port,
            listener,
            timeouts: config.timeouts,
            app: routes(state),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests (up to 10 s).
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        tracing::info!(port = self.port, "api listening");
        crate::server::serve(
            self.listener,
            self.app,
            self.timeouts,
            shutdown,
            Duration::from_secs(10),
        )
        .await
    }
}
