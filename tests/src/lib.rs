//! The end-to-end test harness: a fresh database per test, the real api on port 0 ([`TestApp`],
//! one helper per route, typed answers in [`bodies`]), signing helpers for fixture bytes, the
//! queue as tests see it ([`queue`]), and worker processes for crash tests. A test that leaves
//! failed or unfinished jobs behind fails. Silent unless `TEST_LOG=1` ([`telemetry`]).

pub mod app;
pub mod bodies;
pub mod browser;
pub mod db;
pub mod fake_clerk;
pub mod pgbouncer;
pub mod processes;
pub mod queue;
pub mod routes;
pub mod smtp_sink;
pub mod telemetry;

use api::verify::sign;
use jobs::JobContext;
use std::time::{SystemTime, UNIX_EPOCH};

pub use app::{TestApp, TestAppBuilder};
pub use db::TestDb;
pub use routes::{error_code, parse, Auth};

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

/// A fresh svix id.
pub fn new_svix_id() -> String {
    format!("msg_{}", ulid::Ulid::generate())
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
            PlannedJob::RecordActivity(j) => j.handle(ctx).await,
        };
        r.unwrap();
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

/// In Prometheus text, the value of the sample of `name` whose labels include all of `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        let (metric, rest) = key.split_once('{').unwrap_or((key, ""));
        (metric == name
            && labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
        .then(|| value.parse().ok())?
    })
}
