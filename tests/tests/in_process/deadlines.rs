//! Attempts that cannot finish: one that runs past its job's deadline, and a real
//! ProvisionUser blocked on a row lock. Both must give their slot back, fail retryably with an
//! error that names the cause, and run again.

use jobs::audit::Origin;
use jobs::clerk::ids::SvixId;
use jobs::db::TxLimits;
use jobs::error::JobError;
use jobs::queue::status::{job_status, JobState};
use jobs::queue::{self, Job, Registry, WorkerSettings};
use jobs::JobContext;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tests::bodies::JobList;
use tests::*;

/// Records each run; then hangs far past its deadline when `hang`, else finishes.
#[derive(Serialize, Deserialize)]
struct Hangs {
    key: String,
    hang: bool,
    origin: Origin,
}

impl Job for Hangs {
    type Context = JobContext;
    const QUEUE: &'static str = "test.hangs";
    const MAX_ATTEMPTS: u32 = 3;
    const DEADLINE: Duration = Duration::from_millis(500);
    fn metadata(&self) -> jobs::queue::Metadata {
        self.origin.metadata()
    }
    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        sqlx::query("INSERT INTO test_runs (key, runs) VALUES ($1, 1) ON CONFLICT (key) DO UPDATE SET runs = test_runs.runs + 1")
            .bind(&self.key)
            .execute(&ctx.pool)
            .await?;
        if self.hang {
            // A hung socket, as far as the runtime can tell: nothing ever comes back.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Ok(())
    }
}

async fn runs(ctx: &JobContext, key: &str) -> i64 {
    sqlx::query_scalar("SELECT coalesce((SELECT runs FROM test_runs WHERE key = $1), 0)")
        .bind(key)
        .fetch_one(&ctx.pool)
        .await
        .unwrap()
}

/// Polls `check` (bounded: the worker runs asynchronously) until it holds.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn state(ctx: &JobContext, id: &str) -> (JobState, i32, Option<String>) {
    let s = job_status(&ctx.pool, id).await.unwrap().unwrap();
    (s.state, s.attempts, s.error)
}

#[tokio::test]
async fn an_attempt_past_its_deadline_frees_its_slot_and_is_retried_until_dead() {
    let db = TestDb::new().await;
    sqlx::query("CREATE TABLE test_runs (key text PRIMARY KEY, runs bigint NOT NULL)")
        .execute(&db.pool)
        .await
        .unwrap();
    let ctx = JobContext::new(db.pool.clone());
    let svix = new_svix_id();
    sqlx::query("INSERT INTO webhook_events (svix_id, event_type, payload, status, pending_jobs) VALUES ($1, 'test', '{}', 'queued', 1)")
        .bind(&svix)
        .execute(&ctx.pool)
        .await
        .unwrap();
    let origin = Origin {
        svix_id: Some(SvixId::parse(&svix).unwrap()),
        ..Origin::system()
    };
    let mut registry = Registry::default();
    registry.register::<Hangs>();
    // One slot: while the hung attempt holds it, nothing else of its queue can run.
    let settings = WorkerSettings {
        concurrency: 1,
        poll_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let worker = RunningWorker::start(ctx.clone(), registry, settings);
    let mut conn = ctx.pool.acquire().await.unwrap();
    let hung = Hangs {
        key: "hung".into(),
        hang: true,
        origin: origin.clone(),
    };
    let hung_id = queue::enqueue_one(&mut conn, &hung, None)
        .await
        .unwrap()
        .to_string();
    ctx.notifier.wake(Hangs::QUEUE);
    let c = &ctx;
    eventually(
        "the hanging job starts",
        Duration::from_secs(10),
        move || async move { runs(c, "hung").await == 1 },
    )
    .await;

    let quick = Hangs {
        key: "quick".into(),
        hang: false,
        origin: Origin::system(),
    };
    let quick_id = queue::enqueue_one(&mut conn, &quick, None)
        .await
        .unwrap()
        .to_string();
    let (quick_id, hung) = (quick_id.as_str(), hung_id.as_str());
    ctx.notifier.wake(Hangs::QUEUE);

    eventually(
        "another job of the queue gets the slot",
        Duration::from_secs(20),
        move || async move { state(c, quick_id).await.0 == JobState::Succeeded },
    )
    .await;
    eventually(
        "the hanging job is retried until dead",
        Duration::from_secs(30),
        move || async move { state(c, hung).await.0 == JobState::Failed },
    )
    .await;
    worker.stop().await;

    let (_, attempts, error) = state(&ctx, &hung_id).await;
    assert_eq!(attempts, Hangs::MAX_ATTEMPTS as i32);
    assert_eq!(runs(&ctx, "hung").await, Hangs::MAX_ATTEMPTS as i64);
    let error = error.unwrap();
    assert!(error.contains("deadline of 500 ms exceeded"), "{error}");
    let (status, last_error): (String, Option<String>) =
        sqlx::query_as("SELECT status, last_error FROM webhook_events WHERE svix_id = $1")
            .bind(&svix)
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert!(last_error.unwrap().contains("deadline of 500 ms exceeded"));
}

#[tokio::test]
async fn a_provision_blocked_on_a_row_lock_times_out_then_succeeds_once_released() {
    let app = TestApp::spawn().await;
    let clerk_id = "user_2lockedRowTest0000000000";
    let created = user_event(
        "user.created",
        clerk_id,
        Some("locked@example.com"),
        1_000,
        None,
    );
    assert_eq!(
        app.post_webhook(&new_svix_id(), &created).await.status(),
        202
    );
    assert_eq!(app.drain().await.succeeded, 1);

    // Another transaction holds the user's row (a long report, a stuck session…).
    let mut blocker = app.pool().begin().await.unwrap();
    sqlx::query("SELECT id FROM users WHERE clerk_user_id = $1 FOR UPDATE")
        .bind(clerk_id)
        .execute(&mut *blocker)
        .await
        .unwrap();
    let updated = user_event(
        "user.updated",
        clerk_id,
        Some("locked@example.com"),
        2_000,
        None,
    );
    let svix = new_svix_id();
    assert_eq!(app.post_webhook(&svix, &updated).await.status(), 202);

    let report = tokio::time::timeout(Duration::from_secs(40), app.drain())
        .await
        .expect("the blocked job gives up on the lock instead of waiting for good");
    assert_eq!((report.succeeded, report.retrying), (0, 1));
    let failed = app.queue().retrying_jobs().await;
    let [failed] = failed.as_slice() else {
        panic!("one failed job: {failed:?}")
    };
    let id = failed.id.clone();
    let (job_state, attempts, error) = state(&app.ctx, &id).await;
    assert_eq!((job_state, attempts), (JobState::Retrying, 1));
    let error = error.unwrap();
    assert!(error.contains("lock timeout"), "{error}");
    let (_, listed) = parse::<JobList>(app.admin_jobs(ADMIN_TOKEN, "state=retrying").await).await;
    let last_error = listed.jobs[0].last_error.as_deref().unwrap();
    assert!(last_error.contains("lock timeout"), "{listed:?}");
    assert_eq!(
        user(app.pool(), clerk_id)
            .await
            .unwrap()
            .first_name
            .as_deref(),
        Some("First1000")
    );

    blocker.rollback().await.unwrap();
    app.queue().make_due(&id).await;
    assert_eq!(app.drain().await.succeeded, 1);
    assert_eq!(state(&app.ctx, &id).await.0, JobState::Succeeded);
    assert_eq!(
        user(app.pool(), clerk_id)
            .await
            .unwrap()
            .first_name
            .as_deref(),
        Some("First2000")
    );
    let status: String = sqlx::query_scalar("SELECT status FROM webhook_events WHERE svix_id = $1")
        .bind(&svix)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(status, "processed");
}

/// Behind a transaction pooler the server connection goes to someone else after each
/// transaction: the limits must live and die with the transaction, not stay on the connection.
#[tokio::test]
async fn job_limits_hold_inside_the_transaction_and_leave_nothing_on_the_connection() {
    let db = TestDb::new().await;
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .unwrap();
    let ctx = JobContext::new(one.clone()).with_limits(TxLimits::new(1_500, 20_000));
    const SHOW: &str =
        "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')";
    let mut tx = ctx.begin().await.unwrap();
    let inside: (String, String) = sqlx::query_as(SHOW).fetch_one(&mut *tx).await.unwrap();
    assert_eq!(inside, ("1500ms".to_owned(), "20s".to_owned()));
    tx.commit().await.unwrap();
    let after: (String, String) = sqlx::query_as(SHOW).fetch_one(&one).await.unwrap();
    assert_eq!(after, ("0".to_owned(), "0".to_owned()));
}
