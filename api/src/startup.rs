//! Building and running the HTTP application. `Application::build` binds its own listener so
//! tests can ask for port 0 and read the real port back.

use crate::config::ApiConfig;
use crate::job_events::JobWaiters;
use crate::routes;
use crate::session::SessionVerifier;
use crate::verify::WebhookVerifier;
use poem::endpoint::BoxEndpoint;
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::{EndpointExt, Route, Server};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
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
}

/// The bound, ready-to-run api.
pub struct Application {
    port: u16,
    acceptor: TcpAcceptor,
    app: BoxEndpoint<'static>,
}

/// Every route of the api: the OpenAPI service, its spec at `/openapi.json` and the docs UI
/// at `/docs`.
pub fn routes(state: AppState) -> BoxEndpoint<'static> {
    let api = crate::openapi::service();
    Route::new()
        .at("/openapi.json", api.spec_endpoint())
        .nest("/docs", api.swagger_ui())
        .nest("/", api)
        .data(state)
        .around(crate::request_id::with_request_id)
        .map_to_response()
        .boxed()
}

impl Application {
    /// Binds the listener and builds the routes; `pool` is lazily connected.
    pub async fn build(config: ApiConfig, pool: PgPool) -> std::io::Result<Self> {
        let acceptor = TcpListener::bind(config.listen).into_acceptor().await?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(|s| s.port()))
            .unwrap_or(config.listen.port());
        jobs::telemetry::metrics();
        let job_waiters = JobWaiters::default();
        job_waiters.spawn_listener(pool.clone());
        if config.session.is_none() {
            tracing::info!("CLERK_JWKS_URL/CLERK_ISSUER not set: /v1/sync and /v1/jobs are off");
        }
        if !config.clerk_api_enabled {
            tracing::info!("CLERK_SECRET_KEY not set: the dashboard fallback cannot fetch users");
        }
        let notifier = jobs::queue::Notifier::new(pool.clone());
        let state = AppState {
            intake: jobs::intake::Intake::spawn(pool.clone(), notifier.clone()),
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
        };
        Ok(Self {
            port,
            acceptor,
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
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(self.app, shutdown, Some(Duration::from_secs(10)))
            .await
    }
}
