//! The end-to-end test harness: a fresh database per test, the real api on port 0, signing
//! helpers for fixture bytes, a queue driver that runs due jobs to completion, and worker
//! processes for crash tests. A test that leaves failed or unfinished jobs behind fails.

pub mod browser;
pub mod db;
pub mod fake_clerk;
pub mod pgbouncer;
pub mod processes;
pub mod smtp_sink;

use api::config::ApiConfig;
use api::startup::Application;
use api::verify::{sign, WebhookVerifier};
use jobs::config::DatabaseConfig;
use jobs::queue::{drain, registry, DrainReport};
use jobs::JobContext;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use db::TestDb;

/// The webhook secret the test api trusts, and a second one (rotation).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const SECOND_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// The operator token of the test api.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// A secret the api does not know.
pub const FOREIGN_SECRET: &str = "whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldA==";

/// A Clerk fixture's exact bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/clerk/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// A fixture as JSON, to derive variants from.
pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Svix headers for `body`, signed with `secret` at `ts`.
pub fn svix_headers(
    secret: &str,
    svix_id: &str,
    ts: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("svix-id", svix_id.to_owned()),
        ("svix-timestamp", ts.to_string()),
        ("svix-signature", sign(secret, svix_id, ts, body).unwrap()),
    ]
}

/// A fresh svix id.
/// A local port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A webhook delivery of `body` to the api at `address`, signed now with the test secret.
pub fn signed_webhook(
    client: &reqwest::Client,
    address: &str,
    svix_id: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let mut req = client
        .post(format!("{address}/webhooks/clerk"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in svix_headers(SECRET, svix_id, now_secs(), body) {
        req = req.header(k, v);
    }
    req
}

pub fn new_svix_id() -> String {
    format!("msg_{}", ulid::Ulid::generate())
}

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

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_on(TestDb::new().await).await
    }

    /// The api against an existing database (or, for outage tests, an unreachable URL).
    pub async fn spawn_on(db: TestDb) -> Self {
        let url = db.url.clone();
        Self::spawn_with_api_database(db, url).await
    }

    /// The api pointed at `api_database_url` (e.g. an unreachable one) while the harness
    /// keeps `db` for its own checks.
    pub async fn spawn_with_api_database(db: TestDb, api_database_url: String) -> Self {
        Self::spawn_full(db, api_database_url, None).await
    }

    /// The api and the queue driver talking to a fake Clerk (JWKS and Backend API).
    pub async fn spawn_with_clerk(clerk: &fake_clerk::FakeClerk) -> Self {
        let db = TestDb::new().await;
        let url = db.url.clone();
        Self::spawn_full(db, url, Some(clerk)).await
    }

    async fn spawn_full(
        db: TestDb,
        api_database_url: String,
        clerk: Option<&fake_clerk::FakeClerk>,
    ) -> Self {
        Self::spawn_configured(db, api_database_url, clerk, |_| {}).await
    }

    /// [`TestApp::spawn_with_clerk`] with the api's configuration adjusted by `configure`.
    pub async fn spawn_with_clerk_and(
        clerk: &fake_clerk::FakeClerk,
        configure: impl FnOnce(&mut ApiConfig),
    ) -> Self {
        let db = TestDb::new().await;
        let url = db.url.clone();
        Self::spawn_configured(db, url, Some(clerk), configure).await
    }

    /// The api with its configuration adjusted by `configure`.
    pub async fn spawn_with(configure: impl FnOnce(&mut ApiConfig)) -> Self {
        let db = TestDb::new().await;
        let url = db.url.clone();
        Self::spawn_configured(db, url, None, configure).await
    }

    async fn spawn_configured(
        db: TestDb,
        api_database_url: String,
        clerk: Option<&fake_clerk::FakeClerk>,
        configure: impl FnOnce(&mut ApiConfig),
    ) -> Self {
        let mut config = ApiConfig {
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
        };
        configure(&mut config);
        let pool = jobs::db::pool(&config.database).unwrap();
        let app = Application::build(config, pool).await.unwrap();
        let address = format!("http://127.0.0.1:{}", app.port());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Self {
            address,
            ctx: match clerk {
                Some(c) => JobContext::new(db.pool.clone()).with_clerk(Arc::new(
                    jobs::clerk::api::HttpClerkApi::new(
                        &c.url,
                        fake_clerk::SECRET_KEY.to_owned().into(),
                    ),
                )),
                None => JobContext::new(db.pool.clone()),
            },
            db,
            client: reqwest::Client::new(),
            allow_unfinished_jobs: false,
            _shutdown: tx,
        }
    }

    /// Posts `body` with the given headers to the webhook route.
    pub async fn post_webhook_with(
        &self,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/webhooks/clerk", self.address))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.body(body).send().await.expect("api reachable")
    }

    /// Posts `body` signed now with the test secret under `svix_id`.
    pub async fn post_signed(&self, svix_id: &str, body: &[u8]) -> reqwest::Response {
        signed_webhook(&self.client, &self.address, svix_id, body)
            .send()
            .await
            .expect("api reachable")
    }

    /// Runs every due job to completion (no sleeping) and reports what happened.
    pub async fn drain(&self) -> DrainReport {
        drain(&self.ctx, &registry())
            .await
            .expect("draining the queue")
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.db.pool
    }

    /// `POST /v1/sync` with a bearer token.
    pub async fn sync(&self, token: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/sync", self.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `GET /v1/jobs/{id}` with a bearer token and an optional `wait_ms`.
    pub async fn job(&self, token: &str, id: &str, wait_ms: Option<u64>) -> reqwest::Response {
        let mut url = format!("{}/v1/jobs/{id}", self.address);
        if let Some(w) = wait_ms {
            url.push_str(&format!("?wait_ms={w}"));
        }
        self.client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if self.allow_unfinished_jobs || std::thread::panicking() {
            return;
        }
        let url = self.db.url.clone();
        let left = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async move {
                let pool = sqlx::PgPool::connect(&url).await.ok()?;
                sqlx::query_as::<_, (String, String, i64)>(
                    "SELECT job_type, status, count(*) FROM apalis.jobs WHERE status <> 'Done' GROUP BY 1, 2",
                )
                .fetch_all(&pool)
                .await
                .ok()
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

/// A `user.created`/`user.updated` body for `clerk_id` with the given primary email (None:
/// phone-only), Clerk version `updated_at` and `public_metadata.role`.
pub fn user_event(
    event_type: &str,
    clerk_id: &str,
    email: Option<&str>,
    updated_at: i64,
    role: Option<&str>,
) -> Vec<u8> {
    let mut v = fixture_json("user.created");
    v["type"] = event_type.into();
    v["timestamp"] = updated_at.into();
    let d = &mut v["data"];
    d["id"] = clerk_id.into();
    d["updated_at"] = updated_at.into();
    d["first_name"] = format!("First{updated_at}").into();
    match email {
        Some(e) => {
            d["email_addresses"][0]["email_address"] = e.into();
        }
        None => {
            d["email_addresses"] = serde_json::json!([]);
            d["primary_email_address_id"] = serde_json::Value::Null;
        }
    }
    d["public_metadata"] = match role {
        Some(r) => serde_json::json!({ "role": r }),
        None => serde_json::json!({}),
    };
    serde_json::to_vec(&v).unwrap()
}

/// A `user.deleted` body for `clerk_id` at `timestamp`.
pub fn user_deleted(clerk_id: &str, timestamp: i64) -> Vec<u8> {
    let mut v = fixture_json("user.deleted");
    v["data"]["id"] = clerk_id.into();
    v["timestamp"] = timestamp.into();
    serde_json::to_vec(&v).unwrap()
}

/// The columns a user of the service checks, for comparing outcomes.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    pub clerk_user_id: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub role: String,
    pub clerk_updated_at: Option<i64>,
    pub deleted_at_ms: Option<i64>,
}

/// Every user row, ordered by Clerk id.
pub async fn users(pool: &sqlx::PgPool) -> Vec<UserRow> {
    sqlx::query_as(
        "SELECT clerk_user_id, email, email_verified, first_name, role, clerk_updated_at, \
         (extract(epoch from deleted_at) * 1000)::bigint AS deleted_at_ms FROM users ORDER BY clerk_user_id NULLS FIRST, email",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// One user's row by Clerk id.
pub async fn user(pool: &sqlx::PgPool, clerk_id: &str) -> Option<UserRow> {
    users(pool)
        .await
        .into_iter()
        .find(|u| u.clerk_user_id.as_deref() == Some(clerk_id))
}

/// Audit actions recorded for `subject`, oldest first.
pub async fn audit_actions(pool: &sqlx::PgPool, subject: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_log WHERE subject = $1 ORDER BY id")
        .bind(subject)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Parses a body, plans it and runs its jobs directly (no queue): the handlers alone.
pub async fn apply_directly(ctx: &JobContext, svix_id: &str, body: &[u8]) {
    use jobs::planner::{plan, PlannedJob};
    use jobs::queue::Job;
    let event = jobs::clerk::ClerkEvent::parse(body).unwrap();
    let svix = jobs::clerk::ids::SvixId::parse(svix_id).unwrap();
    for job in plan(&svix, &event) {
        let r = match job {
            PlannedJob::ProvisionUser(j) => j.handle(ctx).await,
            PlannedJob::SoftDelete(j) => j.handle(ctx).await,
            PlannedJob::SyncOrganization(j) => j.handle(ctx).await,
            PlannedJob::SyncMembership(j) => j.handle(ctx).await,
        };
        r.unwrap();
    }
}

/// Waits (bounded) until no job is pending, queued, running or due for retry.
pub async fn wait_for_idle_queue(pool: &sqlx::PgPool, limit: std::time::Duration) {
    let start = std::time::Instant::now();
    loop {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE status NOT IN ('Done', 'Killed') AND NOT (status = 'Failed' AND attempts >= max_attempts)")
            .fetch_one(pool)
            .await
            .unwrap();
        if open == 0 {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{open} jobs still open after {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A `WorkerPool` running in this process; dropping it also asks it to stop.
pub struct RunningWorker {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Result<(), jobs::queue::runner::WorkerError>>,
}

impl RunningWorker {
    pub fn start(
        ctx: JobContext,
        registry: jobs::queue::Registry,
        settings: jobs::queue::WorkerSettings,
    ) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(jobs::queue::WorkerPool::new(ctx, registry, settings).run(
            async {
                let _ = stopped.await;
            },
        ));
        Self { stop, handle }
    }

    /// Graceful shutdown; fails the test if the pool ended with an error.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.handle.await.unwrap().unwrap();
    }
}
