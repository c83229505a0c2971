//! authsync behind a real PgBouncer in `pool_mode = transaction`, in both pooler modes: with
//! `DATABASE_DIRECT_URL` (LISTEN and migrations over a direct connection) and without it
//! (`DATABASE_POOLER=transaction`: wake-ups by polling). The api and workers are real
//! processes, so each has its own process-wide pooler mode.

use std::time::{Duration, Instant};
use tests::bodies::{JobStatus, SyncAnswer};
use tests::db::TestDb;
use tests::fake_clerk::{self, FakeClerk};
use tests::pgbouncer::PgBouncer;
use tests::processes::{binary, ApiProcess, WorkerProcess};
use tests::queue::{Queue, Status};
use tests::*;

#[derive(Clone, Copy, Debug)]
enum Mode {
    WithDirectUrl,
    WithoutDirectUrl,
}

/// A migrated database, a PgBouncer in front of it, and the environment that points a
/// process at the pooler in `mode`.
struct Pooled {
    db: TestDb,
    bouncer: PgBouncer,
    env: Vec<(&'static str, String)>,
}

impl Pooled {
    async fn start(mode: Mode) -> Self {
        let db = TestDb::new().await;
        let bouncer = PgBouncer::start();
        let mut env = vec![("MAIL_DIR", mail_dir(&db))];
        match mode {
            Mode::WithDirectUrl => env.push(("DATABASE_DIRECT_URL", db.url.clone())),
            Mode::WithoutDirectUrl => env.push(("DATABASE_POOLER", "transaction".into())),
        }
        Self { db, bouncer, env }
    }

    fn url(&self) -> String {
        self.bouncer.url(&self.db.name)
    }

    fn env_with<'a>(&'a self, more: &[(&'static str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.extend_from_slice(more);
        env
    }

    fn worker(&self, more: &[(&'static str, &str)]) -> WorkerProcess {
        WorkerProcess::start(&self.url(), &self.env_with(more))
    }

    async fn api(&self, more: &[(&'static str, &str)]) -> ApiProcess {
        let api = ApiProcess::start_with(&self.url(), &self.env_with(more));
        wait_until_up(&api.address).await;
        api
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

fn mail_dir(db: &TestDb) -> String {
    std::env::temp_dir()
        .join(format!("authsync-pooler-mail-{}", db.name))
        .to_string_lossy()
        .into_owned()
}

async fn wait_until_up(address: &str) {
    let start = Instant::now();
    while reqwest::get(format!("{address}/healthz")).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "api never came up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts `user.created` for `user_pooled{i}`; the status, or 0 when no HTTP answer came.
async fn post(client: &reqwest::Client, address: &str, i: usize) -> (u16, String) {
    let svix_id = new_svix_id();
    let body = user_event(
        "user.created",
        &format!("user_pooled{i}"),
        Some(&format!("p{i}@example.com")),
        1,
        None,
    );
    let status = signed_webhook(client, address, &svix_id, &body)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16());
    (status, svix_id)
}

/// Posts events `range` from 8 concurrent senders.
async fn post_all(address: &str, range: std::ops::Range<usize>) -> Vec<(u16, String)> {
    let client = reqwest::Client::new();
    let ids: Vec<usize> = range.collect();
    let mut out = Vec::new();
    for chunk in ids.chunks(8) {
        let posts = chunk.iter().map(|&i| post(&client, address, i));
        out.extend(futures::future::join_all(posts).await);
    }
    out
}

/// Every event is processed and every user provisioned once.
async fn assert_all_processed(p: &Pooled, users: i64) {
    tests::queue::Queue::on(&p.db.pool)
        .wait_for_idle(Duration::from_secs(60))
        .await;
    assert_eq!(
        p.count("SELECT count(*) FROM users WHERE clerk_user_id LIKE 'user_pooled%'")
            .await,
        users
    );
    assert_eq!(
        p.count("SELECT count(*) FROM webhook_events WHERE status <> 'processed'")
            .await,
        0
    );
}

async fn intake_and_drain_by_two_workers(mode: Mode) {
    let p = Pooled::start(mode).await;
    let api = p.api(&[]).await;
    let ports = [free_port().to_string(), free_port().to_string()];
    let _workers = [
        p.worker(&[("WORKER_METRICS_PORT", &ports[0])]),
        p.worker(&[("WORKER_METRICS_PORT", &ports[1])]),
    ];
    for (status, id) in post_all(&api.address, 0..80).await {
        assert_eq!(status, 202, "{id}");
    }
    assert_all_processed(&p, 80).await;
    // Not one claim or result write failed and was retried (each new connection through the
    // pooler used to fail its first statement returning job metadata).
    for port in &ports {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for step in ["claim", "result"] {
            assert_eq!(
                sample(&text, "authsync_queue_errors_total", &[("step", step)]),
                Some(0.0),
                "{step} errors of the worker on port {port}:\n{text}"
            );
        }
    }
}

#[tokio::test]
async fn intake_and_a_two_worker_drain_work_through_pgbouncer_with_a_direct_url() {
    intake_and_drain_by_two_workers(Mode::WithDirectUrl).await;
}

#[tokio::test]
async fn intake_and_a_two_worker_drain_work_through_pgbouncer_without_a_direct_url() {
    intake_and_drain_by_two_workers(Mode::WithoutDirectUrl).await;
}

async fn killed_worker(mode: Mode) {
    let p = Pooled::start(mode).await;
    let api = p.api(&[]).await;
    // Hold the per-user locks the handlers take (directly, not through the pooler), so worker
    // A's jobs for these users are certainly in flight when A dies.
    let blocked: Vec<String> = (0..3).map(|i| format!("user_pooled{i}")).collect();
    let mut holder = p.db.pool.begin().await.unwrap();
    for id in &blocked {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(id)
            .execute(&mut *holder)
            .await
            .unwrap();
    }
    let mut a = p.worker(&[]);
    for (status, id) in post_all(&api.address, 0..40).await {
        assert_eq!(status, 202, "{id}");
    }
    let start = Instant::now();
    while Queue::on(&p.db.pool).in_state(None, Status::Running).await < blocked.len() as i64 {
        assert!(start.elapsed() < Duration::from_secs(30), "A never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.kill_9();
    holder.rollback().await.unwrap();
    let _b = p.worker(&[]);
    assert_all_processed(&p, 40).await;
    assert!(
        Queue::on(&p.db.pool).retried().await >= blocked.len() as i64,
        "the killed worker's jobs ran again"
    );
}

#[tokio::test]
async fn a_worker_killed_mid_stream_loses_nothing_through_pgbouncer_with_a_direct_url() {
    killed_worker(Mode::WithDirectUrl).await;
}

#[tokio::test]
async fn a_worker_killed_mid_stream_loses_nothing_through_pgbouncer_without_a_direct_url() {
    killed_worker(Mode::WithoutDirectUrl).await;
}

const ALICE: &str = "user_2abcFakeAlice0000000000001";

async fn fallback_long_poll(mode: Mode) {
    let clerk = FakeClerk::start().await;
    clerk.put_user(fixture_json("user.created")["data"].clone());
    let p = Pooled::start(mode).await;
    let (jwks, issuer) = (clerk.jwks_url(), clerk.issuer());
    let clerk_env = [
        ("CLERK_JWKS_URL", jwks.as_str()),
        ("CLERK_ISSUER", issuer.as_str()),
        ("CLERK_AUTHORIZED_PARTIES", fake_clerk::AUTHORIZED_PARTY),
        ("CLERK_SECRET_KEY", fake_clerk::SECRET_KEY),
        ("CLERK_API_URL", clerk.url.as_str()),
    ];
    let api = p.api(&clerk_env).await;
    let client = reqwest::Client::new();
    let token = clerk.token(ALICE);
    let resp = client
        .post(format!("{}/v1/sync", api.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (_, started) = parse::<SyncAnswer>(resp).await;
    let job_id = started.job_id().to_owned();
    // A long poll waits while no worker runs; a worker started meanwhile answers it.
    let poll = client
        .get(format!("{}/v1/jobs/{job_id}?wait_ms=10000", api.address))
        .bearer_auth(&token)
        .send();
    let _worker = p.worker(&clerk_env);
    let (_, done) = parse::<JobStatus>(poll.await.unwrap()).await;
    assert_eq!(done.state, "succeeded", "{done:?}");
    assert_eq!(
        done.user.and_then(|u| u.clerk_user_id).as_deref(),
        Some(ALICE)
    );
    tests::queue::Queue::on(&p.db.pool)
        .wait_for_idle(Duration::from_secs(30))
        .await;
}

#[tokio::test]
async fn the_dashboard_fallback_and_its_long_poll_work_through_pgbouncer_with_a_direct_url() {
    fallback_long_poll(Mode::WithDirectUrl).await;
}

#[tokio::test]
async fn the_dashboard_fallback_and_its_long_poll_work_through_pgbouncer_without_a_direct_url() {
    fallback_long_poll(Mode::WithoutDirectUrl).await;
}

async fn restart_during_intake(mode: Mode) {
    let mut p = Pooled::start(mode).await;
    let api = p.api(&[]).await;
    let address = api.address.clone();
    let stream = tokio::spawn(async move { post_all(&address, 0..400).await });
    // Restart once intake is well under way (seen in the database), while it goes on.
    while p.count("SELECT count(*) FROM webhook_events").await < 40 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bouncer = &mut p.bouncer;
    tokio::task::block_in_place(|| bouncer.restart(Duration::from_millis(700)));
    let answers = stream.await.unwrap();
    let accepted: Vec<&String> = answers
        .iter()
        .filter(|(s, _)| (200..300).contains(s))
        .map(|(_, id)| id)
        .collect();
    for (status, id) in &answers {
        assert!(
            (200..300).contains(status) || *status == 503,
            "{id}: {status}, only 2xx or 503 may come back"
        );
    }
    assert!(!accepted.is_empty());
    eprintln!(
        "{} accepted, {} answered 503 around the restart",
        accepted.len(),
        answers.len() - accepted.len()
    );
    let _worker = p.worker(&[]);
    tests::queue::Queue::on(&p.db.pool)
        .wait_for_idle(Duration::from_secs(60))
        .await;
    let processed: Vec<String> =
        sqlx::query_scalar("SELECT svix_id FROM webhook_events WHERE status = 'processed'")
            .fetch_all(&p.db.pool)
            .await
            .unwrap();
    for id in accepted {
        assert!(processed.contains(id), "accepted {id} was not processed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pgbouncer_restart_during_intake_loses_nothing_with_a_direct_url() {
    restart_during_intake(Mode::WithDirectUrl).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pgbouncer_restart_during_intake_loses_nothing_without_a_direct_url() {
    restart_during_intake(Mode::WithoutDirectUrl).await;
}

/// `api migrate` as a process; its exit status and standard error.
fn migrate(database_url: &str, env: &[(&str, &str)]) -> (bool, String) {
    let out = std::process::Command::new(binary("api"))
        .arg("migrate")
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn migrate_through_a_transaction_pooler_needs_the_direct_url_and_says_so() {
    let db = TestDb::empty().await;
    // One server connection: the migration certainly meets what the other client left there
    // (with more, it may get a fresh one and succeed by luck, as it once did on a busy machine).
    let bouncer = PgBouncer::start_with_pool_size(1);
    let url = bouncer.url(&db.name);
    // Another client leaves its named statements on the pooler's server connection, as
    // traffic does in production.
    {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        for sql in ["SELECT 1", "SELECT 2", "SELECT 3", "SELECT 4"] {
            let _: i32 = sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap();
        }
        c.close().await.unwrap();
    }
    for (env, case) in [
        (
            vec![("DATABASE_POOLER", "transaction")],
            "flagged: refused up front",
        ),
        (
            vec![],
            "unflagged: the prepared-statement error is explained",
        ),
    ] {
        let (ok, stderr) = migrate(&url, &env);
        assert!(!ok, "{case}");
        let said = format!("api: {}", jobs::db::MIGRATE_NEEDS_DIRECT_URL);
        assert!(stderr.lines().any(|l| l == said), "{case}: {stderr}");
    }
    let (ok, stderr) = migrate(&url, &[("DATABASE_DIRECT_URL", &db.url)]);
    assert!(ok, "{stderr}");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE tablename IN ('users', 'webhook_events', 'jobs')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(tables, 3);
}
