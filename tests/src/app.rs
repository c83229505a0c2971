//! [`TestApp`]: the real api on port 0 with its own database, built by [`TestAppBuilder`], a
//! queue driver that runs due jobs to completion, and a check on drop that fails a test which
//! left failed or unfinished jobs behind.

use crate::db::TestDb;
use crate::fake_clerk::{self, FakeClerk};
use crate::queue::Queue;
use crate::{ADMIN_TOKEN, SECOND_SECRET, SECRET};
use api::config::ApiConfig;
use api::startup::Application;
use api::verify::WebhookVerifier;
use jobs::config::DatabaseConfig;
use jobs::queue::{drain, registry, DrainReport};
use jobs::JobContext;
use std::sync::Arc;

/// The running api with its own database.
pub struct TestApp {
    pub address: String,
    pub db: TestDb,
    pub ctx: JobContext,
    pub client: reqwest::Client,
    /// Set by tests that leave failed jobs on purpose.
    pub allow_unfinished_jobs: bool,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// An adjustment of the api's configuration.
type Configure<'a> = Box<dyn FnOnce(&mut ApiConfig) + 'a>;

/// How a [`TestApp`] is made: `TestApp::builder().clerk(&fake).configure(|c| ..).spawn()`.
#[derive(Default)]
pub struct TestAppBuilder<'a> {
    clerk: Option<&'a FakeClerk>,
    db: Option<TestDb>,
    api_database_url: Option<String>,
    configure: Vec<Configure<'a>>,
}

impl<'a> TestAppBuilder<'a> {
    /// The api's sessions and the queue driver's Backend API client talk to `clerk`.
    pub fn clerk(mut self, clerk: &'a FakeClerk) -> Self {
        self.clerk = Some(clerk);
        self
    }

    /// An existing database (default: a fresh migrated one).
    pub fn db(mut self, db: TestDb) -> Self {
        self.db = Some(db);
        self
    }

    /// Points the api at `url` (e.g. an unreachable one) while the harness keeps its
    /// database for its own checks.
    pub fn api_database(mut self, url: impl Into<String>) -> Self {
        self.api_database_url = Some(url.into());
        self
    }

    /// Adjusts the api's configuration (after the harness' defaults; in call order).
    pub fn configure(mut self, configure: impl FnOnce(&mut ApiConfig) + 'a) -> Self {
        self.configure.push(Box::new(configure));
        self
    }

    pub async fn spawn(self) -> TestApp {
        crate::telemetry::init();
        let db = match self.db {
            Some(db) => db,
            None => TestDb::new().await,
        };
        let api_database_url = self.api_database_url.unwrap_or_else(|| db.url.clone());
        let clerk = self.clerk;
        let mut config = default_config(api_database_url, clerk);
        for configure in self.configure {
            configure(&mut config);
        }
        let pool = jobs::db::pool(&config.database).unwrap();
        // Pooler mode is process-wide (`jobs::db::pooler()`): set here, it would change every
        // other test of this binary. Such a test runs the api as a process (tests/faults/).
        assert!(
            !jobs::db::pooler(),
            "an in-process api in transaction-pooler mode: run it as a process"
        );
        let app = Application::build(config, pool).await.unwrap();
        let address = format!("http://127.0.0.1:{}", app.port());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        let ctx = JobContext::new(db.pool.clone());
        TestApp {
            address,
            ctx: match clerk {
                Some(c) => ctx.with_clerk(Arc::new(jobs::clerk::api::HttpClerkApi::new(
                    &c.url,
                    fake_clerk::SECRET_KEY.to_owned().into(),
                ))),
                None => ctx,
            },
            db,
            client: reqwest::Client::new(),
            allow_unfinished_jobs: false,
            _shutdown: tx,
        }
    }
}

/// The harness' api: both test secrets, the admin token, sessions from `clerk` if any.
fn default_config(api_database_url: String, clerk: Option<&FakeClerk>) -> ApiConfig {
    ApiConfig {
        cors_allowed_origins: Default::default(),
        ip_filter: Default::default(),
        admin_token: Some(ADMIN_TOKEN.to_owned().into()),
        session: clerk.map(|c| api::session::SessionConfig {
            jwks_url: c.jwks_url(),
            issuer: c.issuer(),
            authorized_parties: vec![fake_clerk::AUTHORIZED_PARTY.to_owned()],
            key_ttl: api::session::KEY_TTL,
        }),
        clerk_api_enabled: clerk.is_some(),
        setup: api::routes::setup::SetupPage {
            redirect_url: "/setup-done".into(),
            home_url: "/".into(),
        },
        database: DatabaseConfig {
            url: api_database_url.into(),
            max_connections: 20,
            direct_url: None,
            pooler: false,
        },
        listen: "127.0.0.1:0".parse().unwrap(),
        verifier: Arc::new(
            WebhookVerifier::from_secrets(&format!("{SECRET} {SECOND_SECRET}")).unwrap(),
        ),
        body_limit: api::config::DEFAULT_BODY_LIMIT,
        wait_limits: Default::default(),
        timeouts: Default::default(),
        pool_saturated_after: jobs::telemetry::POOL_SATURATED_AFTER,
    }
}

impl TestApp {
    pub fn builder<'a>() -> TestAppBuilder<'a> {
        TestAppBuilder::default()
    }

    /// The api with the harness' defaults and a fresh database.
    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    /// Runs every due job to completion (no sleeping) and reports what happened.
    pub async fn drain(&self) -> DrainReport {
        drain(&self.ctx, &registry())
            .await
            .expect("draining the queue")
    }

    /// [`TestApp::drain`] without the Backend API client (no metadata write-back).
    pub async fn drain_without_clerk(&self) -> DrainReport {
        let mut ctx = self.ctx.clone();
        ctx.clerk = None;
        drain(&ctx, &registry()).await.expect("draining the queue")
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.db.pool
    }

    /// The test database's queue.
    pub fn queue(&self) -> Queue<'_> {
        Queue::on(&self.db.pool)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if self.allow_unfinished_jobs || std::thread::panicking() {
            return;
        }
        let url = self.db.url.clone();
        let left = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let pool = sqlx::PgPool::connect(&url).await.ok()?;
                    Queue::on(&pool).leftovers().await.ok()
                })
        })
        .join()
        .ok()
        .flatten()
        .unwrap_or_default();
        assert!(
            left.is_empty(),
            "test left unfinished or failed jobs behind: {left:?}"
        );
    }
}
