//! The queue machinery with test-only job types: backoff stored in the database, fatal
//! failures, exhaustion, panics, poison payloads, event bookkeeping, wake-ups and shutdown.
//! Over 400 lines: each queue behaviour has its own test here, sharing the test job types.

use jobs::audit::Origin;
use jobs::clerk::ids::SvixId;
use jobs::error::{JobError, ResultExt};
use jobs::queue::{self, drain, Job, Registry, WorkerSettings};
use jobs::JobContext;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tests::queue::{JobRow, Queue, Status};
use tests::*;

/// Fails retryably until it has run `fail_times` times, then succeeds.
#[derive(Serialize, Deserialize)]
struct Flaky {
    key: String,
    fail_times: i64,
    origin: Origin,
}

impl Job for Flaky {
    type Context = JobContext;
    const QUEUE: &'static str = "test.flaky";
    const MAX_ATTEMPTS: u32 = 3;
    fn metadata(&self) -> jobs::queue::Metadata {
        self.origin.metadata()
    }
    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        let runs: i64 = sqlx::query_scalar(
            "INSERT INTO test_runs (key, runs) VALUES ($1, 1) ON CONFLICT (key) DO UPDATE SET runs = test_runs.runs + 1 RETURNING runs",
        )
        .bind(&self.key)
        .fetch_one(&ctx.pool)
        .await?;
        if runs <= self.fail_times {
            return Err(std::io::Error::other(format!("transient failure {runs}"))).retryable();
        }
        Ok(())
    }
}

/// Panics on its first run.
#[derive(Serialize, Deserialize)]
struct Panicky {
    key: String,
    origin: Origin,
}

impl Job for Panicky {
    type Context = JobContext;
    const QUEUE: &'static str = "test.panicky";
    const MAX_ATTEMPTS: u32 = 3;
    fn metadata(&self) -> jobs::queue::Metadata {
        self.origin.metadata()
    }
    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        let first: bool = sqlx::query_scalar("INSERT INTO test_runs (key, runs) VALUES ($1, 1) ON CONFLICT (key) DO NOTHING RETURNING true")
            .bind(&self.key)
            .fetch_optional(&ctx.pool)
            .await?
            .unwrap_or(false);
        if first {
            panic!("handler bug");
        }
        Ok(())
    }
}

/// Sleeps, then records that it finished.
#[derive(Serialize, Deserialize)]
struct Slow {
    key: String,
    millis: u64,
    origin: Origin,
}

impl Job for Slow {
    type Context = JobContext;
    const QUEUE: &'static str = "test.slow";
    const MAX_ATTEMPTS: u32 = 3;
    fn metadata(&self) -> jobs::queue::Metadata {
        self.origin.metadata()
    }
    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_millis(self.millis)).await;
        sqlx::query("INSERT INTO test_runs (key, runs) VALUES ($1, 1) ON CONFLICT (key) DO UPDATE SET runs = test_runs.runs + 1")
            .bind(&self.key)
            .execute(&ctx.pool)
            .await?;
        Ok(())
    }
}

/// Succeeds, or fails fatally with the message it carries: good and bad results of one queue,
/// so they can share a batch of results.
#[derive(Serialize, Deserialize)]
struct Ends {
    fail_with: Option<String>,
    retryable: bool,
    origin: Origin,
}

impl Job for Ends {
    type Context = JobContext;
    const QUEUE: &'static str = "test.ends";
    const MAX_ATTEMPTS: u32 = 3;
    fn metadata(&self) -> jobs::queue::Metadata {
        self.origin.metadata()
    }
    async fn handle(self, _: &JobContext) -> Result<(), JobError> {
        match (self.fail_with, self.retryable) {
            (Some(message), true) => Err(std::io::Error::other(message)).retryable(),
            (Some(message), false) => Err(std::io::Error::other(message)).fatal(),
            (None, _) => Ok(()),
        }
    }
}

fn ok(origin: &Origin) -> Ends {
    Ends {
        fail_with: None,
        retryable: false,
        origin: origin.clone(),
    }
}

fn fails(message: &str, origin: &Origin) -> Ends {
    Ends {
        fail_with: Some(message.into()),
        retryable: false,
        origin: origin.clone(),
    }
}

fn retries(message: &str, origin: &Origin) -> Ends {
    Ends {
        fail_with: Some(message.into()),
        retryable: true,
        origin: origin.clone(),
    }
}

fn test_registry() -> Registry {
    let mut r = Registry::default();
    r.register::<Flaky>()
        .register::<Ends>()
        .register::<Panicky>()
        .register::<Slow>();
    r
}

async fn setup() -> (TestDb, JobContext) {
    let db = TestDb::new().await;
    sqlx::query("CREATE TABLE test_runs (key text PRIMARY KEY, runs bigint NOT NULL)")
        .execute(&db.pool)
        .await
        .unwrap();
    let ctx = JobContext::new(db.pool.clone());
    (db, ctx)
}

/// An event row the job reports to, as intake would have written it.
async fn event(ctx: &JobContext) -> Origin {
    event_with_jobs(ctx, 1).await
}

/// An event row that `jobs` jobs report to.
async fn event_with_jobs(ctx: &JobContext, jobs: i32) -> Origin {
    let id = new_svix_id();
    sqlx::query("INSERT INTO webhook_events (svix_id, event_type, payload, status, pending_jobs) VALUES ($1, 'test', '{}', 'queued', $2)")
        .bind(&id)
        .bind(jobs)
        .execute(&ctx.pool)
        .await
        .unwrap();
    Origin {
        svix_id: Some(SvixId::parse(&id).unwrap()),
        ..Origin::system()
    }
}

async fn push<J: Job>(ctx: &JobContext, job: &J) -> String {
    let mut conn = ctx.pool.acquire().await.unwrap();
    let id = queue::enqueue_one(&mut conn, job, None)
        .await
        .unwrap()
        .to_string();
    ctx.notifier.wake(J::QUEUE);
    id
}

async fn job_row(ctx: &JobContext, id: &str) -> JobRow {
    Queue::on(&ctx.pool).job(id).await
}

async fn event_state(ctx: &JobContext, origin: &Origin) -> (String, i32, Option<String>) {
    sqlx::query_as("SELECT status, attempts, last_error FROM webhook_events WHERE svix_id = $1")
        .bind(origin.svix_id.as_ref().unwrap().as_str())
        .fetch_one(&ctx.pool)
        .await
        .unwrap()
}

async fn make_due(ctx: &JobContext, id: &str) {
    Queue::on(&ctx.pool).make_due(id).await;
}

#[tokio::test]
async fn a_retryable_failure_backs_off_in_the_database_then_succeeds() {
    let (_db, ctx) = setup().await;
    let origin = event(&ctx).await;
    let id = push(
        &ctx,
        &Flaky {
            key: "k".into(),
            fail_times: 1,
            origin: origin.clone(),
        },
    )
    .await;

    let report = drain(&ctx, &test_registry()).await.unwrap();
    assert_eq!(report.retrying, 1);
    let row = job_row(&ctx, &id).await;
    assert_eq!((row.status, row.attempts), (Status::Failed, 1));
    // First backoff: between half and all of one second, stored as run_at.
    assert!(
        row.due_in_ms > 0.0 && row.due_in_ms <= 1000.0,
        "due in {} ms",
        row.due_in_ms
    );
    let (status, attempts, err) = event_state(&ctx, &origin).await;
    assert_eq!((status.as_str(), attempts), ("queued", 1));
    assert!(err.unwrap().contains("transient failure 1"));
    // Not due yet: draining again runs nothing.
    assert_eq!(
        drain(&ctx, &test_registry()).await.unwrap(),
        Default::default()
    );

    make_due(&ctx, &id).await;
    let report = drain(&ctx, &test_registry()).await.unwrap();
    assert_eq!(report.succeeded, 1);
    let row = job_row(&ctx, &id).await;
    assert_eq!((row.status, row.attempts), (Status::Done, 2));
    let (status, attempts, _) = event_state(&ctx, &origin).await;
    assert_eq!((status.as_str(), attempts), ("processed", 2));
    let st = jobs::queue::status::job_status(&ctx.pool, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.state, jobs::queue::status::JobState::Succeeded);
}

#[tokio::test]
async fn retries_stop_at_max_attempts_and_the_event_is_marked_failed() {
    let (_db, ctx) = setup().await;
    let origin = event(&ctx).await;
    let id = push(
        &ctx,
        &Flaky {
            key: "k".into(),
            fail_times: 99,
            origin: origin.clone(),
        },
    )
    .await;
    for _ in 0..Flaky::MAX_ATTEMPTS {
        make_due(&ctx, &id).await;
        drain(&ctx, &test_registry()).await.unwrap();
    }
    let row = job_row(&ctx, &id).await;
    assert_eq!(
        (row.status, row.attempts, row.max_attempts),
        (Status::Failed, 3, 3)
    );
    make_due(&ctx, &id).await;
    assert_eq!(
        drain(&ctx, &test_registry()).await.unwrap(),
        Default::default(),
        "a dead job is not fetched again"
    );
    let (status, attempts, err) = event_state(&ctx, &origin).await;
    assert_eq!((status.as_str(), attempts), ("failed", 3));
    assert!(err.unwrap().contains("transient failure 3"));
    let st = jobs::queue::status::job_status(&ctx.pool, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.state, jobs::queue::status::JobState::Failed);
    assert!(st.error.unwrap().contains("transient failure 3"));
}

#[tokio::test]
async fn a_fatal_failure_stops_at_once() {
    let (_db, ctx) = setup().await;
    let origin = event(&ctx).await;
    let id = push(&ctx, &fails("invalid data", &origin)).await;
    let report = drain(&ctx, &test_registry()).await.unwrap();
    assert_eq!(report.killed, 1);
    let row = job_row(&ctx, &id).await;
    assert_eq!((row.status, row.attempts), (Status::Killed, 1));
    make_due(&ctx, &id).await;
    assert_eq!(
        drain(&ctx, &test_registry()).await.unwrap(),
        Default::default()
    );
    let (status, _, err) = event_state(&ctx, &origin).await;
    assert_eq!(status, "failed");
    assert!(err.unwrap().contains("invalid data"));
}

/// Results are written in batches: many jobs of one event finishing together must still add
/// up on the event, and one failure among them must still mark it failed.
#[tokio::test]
async fn results_of_many_jobs_of_one_event_add_up_on_the_event() {
    let (_db, ctx) = setup().await;
    let all_ok = event_with_jobs(&ctx, 40).await;
    let one_fails = event_with_jobs(&ctx, 5).await;
    for _ in 0..40 {
        push(&ctx, &ok(&all_ok)).await;
    }
    push(&ctx, &ok(&one_fails)).await;
    push(&ctx, &retries("zz: a transient failure", &one_fails)).await;
    push(&ctx, &fails("invalid data", &one_fails)).await;
    push(&ctx, &ok(&one_fails)).await;
    let report = drain(&ctx, &test_registry()).await.unwrap();
    assert_eq!(
        (report.succeeded, report.retrying, report.killed),
        (42, 1, 1)
    );
    let pending = |o: Origin| {
        let pool = ctx.pool.clone();
        async move {
            sqlx::query_scalar::<_, i32>(
                "SELECT pending_jobs FROM webhook_events WHERE svix_id = $1",
            )
            .bind(o.svix_id.unwrap().as_str())
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        event_state(&ctx, &all_ok).await,
        ("processed".into(), 40, None)
    );
    assert_eq!(pending(all_ok).await, 0);
    let (status, attempts, err) = event_state(&ctx, &one_fails).await;
    assert_eq!((status.as_str(), attempts), ("failed", 4));
    let err = err.unwrap();
    assert!(
        err.contains("invalid data"),
        "the error that failed the event is kept, not the retry's: {err}"
    );
    assert_eq!(
        pending(one_fails).await,
        3,
        "two finished, three still owed"
    );
}

/// Postgres text cannot hold NUL. A handler error containing one is stored with a replacement
/// character, and the results written beside it are not held up.
#[tokio::test]
async fn an_error_message_with_a_nul_byte_is_stored_and_does_not_block_other_results() {
    let (_db, ctx) = setup().await;
    let origin = event(&ctx).await;
    let bad = push(&ctx, &fails("bad\0byte", &origin)).await;
    let mut good = Vec::new();
    for _ in 0..10 {
        good.push(push(&ctx, &ok(&Origin::system())).await);
    }
    let report = tokio::time::timeout(Duration::from_secs(60), drain(&ctx, &test_registry()))
        .await
        .expect("every result is written")
        .unwrap();
    assert_eq!((report.succeeded, report.killed), (10, 1));
    for id in &good {
        assert_eq!(job_row(&ctx, id).await.status, Status::Done);
    }
    let row = job_row(&ctx, &bad).await;
    assert_eq!(row.status, Status::Killed);
    assert!(row.error().unwrap().contains("bad\u{FFFD}byte"), "{row:?}");
    let (status, _, err) = event_state(&ctx, &origin).await;
    assert_eq!(status, "failed");
    assert!(err.unwrap().contains("bad\u{FFFD}byte"));
}

#[tokio::test]
async fn a_payload_that_does_not_decode_fails_fatally_instead_of_looping() {
    let (_db, ctx) = setup().await;
    let task = apalis_core_task(b"{\"not\":\"a flaky job\"}".to_vec());
    let mut conn = ctx.pool.acquire().await.unwrap();
    apalis_postgres::queries::push_tasks(&mut *conn, Flaky::QUEUE, vec![task])
        .await
        .unwrap();
    let report = drain(&ctx, &test_registry()).await.unwrap();
    assert_eq!(report.killed, 1);
    let rows = Queue::on(&ctx.pool).jobs(None).await;
    let [row] = rows.as_slice() else {
        panic!("one job: {rows:?}")
    };
    assert_eq!(row.status, Status::Killed);
    assert!(row.error().unwrap().contains("does not decode"), "{row:?}");
}

fn apalis_core_task(bytes: Vec<u8>) -> apalis_postgres::PgTask {
    apalis_core::task::builder::TaskBuilder::new(bytes)
        .task_id(apalis_core::task::task_id::TaskId::from_ulid(
            ulid::Ulid::generate(),
        ))
        .max_attempts(3)
        .build()
}

#[tokio::test]
async fn a_panicking_handler_is_a_retryable_failure_not_a_stuck_job() {
    let (_db, ctx) = setup().await;
    let id = push(
        &ctx,
        &Panicky {
            key: "p".into(),
            origin: Origin::system(),
        },
    )
    .await;
    assert_eq!(drain(&ctx, &test_registry()).await.unwrap().retrying, 1);
    make_due(&ctx, &id).await;
    assert_eq!(drain(&ctx, &test_registry()).await.unwrap().succeeded, 1);
    assert_eq!(job_row(&ctx, &id).await.status, Status::Done);
}

async fn wait_until_done(ctx: &JobContext, id: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if job_row(ctx, id).await.status == Status::Done {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "job {id} not done within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_idle_worker_is_woken_by_notify_not_by_its_poll() {
    let (_db, ctx) = setup().await;
    // A poll far longer than the wait below: only the notification can wake the worker.
    let settings = WorkerSettings {
        poll_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let worker = RunningWorker::start(ctx.clone(), test_registry(), settings);
    // Let it go idle first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = push(
        &ctx,
        &Slow {
            key: "s".into(),
            millis: 0,
            origin: Origin::system(),
        },
    )
    .await;
    wait_until_done(&ctx, &id, Duration::from_secs(10)).await;
    worker.stop().await;
}

#[tokio::test]
async fn a_retry_coming_due_is_found_by_the_poll() {
    let (_db, ctx) = setup().await;
    let settings = WorkerSettings {
        poll_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let worker = RunningWorker::start(ctx.clone(), test_registry(), settings);
    // Fails once; the retry is due about a second later and nothing notifies about it.
    let id = push(
        &ctx,
        &Flaky {
            key: "f".into(),
            fail_times: 1,
            origin: Origin::system(),
        },
    )
    .await;
    wait_until_done(&ctx, &id, Duration::from_secs(15)).await;
    assert_eq!(job_row(&ctx, &id).await.attempts, 2);
    worker.stop().await;
}

#[tokio::test]
async fn shutdown_lets_running_jobs_finish() {
    let (_db, ctx) = setup().await;
    let worker = RunningWorker::start(ctx.clone(), test_registry(), WorkerSettings::default());
    let id = push(
        &ctx,
        &Slow {
            key: "slow".into(),
            millis: 1500,
            origin: Origin::system(),
        },
    )
    .await;
    // Wait until it is running, then ask to stop.
    let start = Instant::now();
    while job_row(&ctx, &id).await.status != Status::Running {
        assert!(start.elapsed() < Duration::from_secs(10), "never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.stop().await;
    assert_eq!(
        job_row(&ctx, &id).await.status,
        Status::Done,
        "the running job finished before exit"
    );
}

#[tokio::test]
async fn concurrency_is_bounded_per_queue() {
    let (_db, ctx) = setup().await;
    let settings = WorkerSettings {
        concurrency: 3,
        ..Default::default()
    };
    let mut ids = Vec::new();
    for i in 0..9 {
        ids.push(
            push(
                &ctx,
                &Slow {
                    key: format!("c{i}"),
                    millis: 300,
                    origin: Origin::system(),
                },
            )
            .await,
        );
    }
    let worker = RunningWorker::start(ctx.clone(), test_registry(), settings);
    let mut max_running = 0i64;
    let start = Instant::now();
    loop {
        let queue = Queue::on(&ctx.pool);
        let (running, done) = (
            queue.in_state(None, Status::Running).await,
            queue.in_state(None, Status::Done).await,
        );
        max_running = max_running.max(running);
        if done == 9 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(max_running <= 3, "{max_running} ran at once");
    assert!(max_running >= 2, "jobs should overlap");
    worker.stop().await;
}

/// Every index on the queue table costs an entry on each insert, claim and result (none of
/// them can be a HOT update). apalis' migrations leave two indexes duplicated; ours drop them
/// and keep partial indexes for the columns only some rows use. The one on the `svix_id`
/// metadata (migration …0012) is the price of an event's jobs for operators (the event detail,
/// a user's timeline, search) without reading the whole table.
#[tokio::test]
async fn the_queue_table_carries_each_index_once() {
    let (_db, ctx) = setup().await;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname, regexp_replace(indexdef, '^.* USING ', '') FROM pg_indexes \
         WHERE schemaname = 'apalis' AND tablename = 'jobs' ORDER BY indexname",
    )
    .fetch_all(&ctx.pool)
    .await
    .unwrap();
    let defs: Vec<&str> = indexes.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(
        defs,
        [
            "btree (job_type, idempotency_key) WHERE (idempotency_key IS NOT NULL)",
            "btree (lock_by) WHERE (lock_by IS NOT NULL)",
            "btree (((metadata -> 'svix_id'::text))) WHERE ((metadata -> 'svix_id'::text) IS NOT NULL)",
            "btree (job_type, priority DESC, run_at) WHERE ((status = 'Pending'::text) OR ((status = 'Failed'::text) AND (attempts < max_attempts)))",
            "btree (id)",
        ],
        "{indexes:?}"
    );
}

/// A result the database refuses (here: a trigger rejecting one error text) is written one at
/// a time: the outcome is kept without the text, and the results beside it are not held up.
/// One it refuses in any form is given up: the job stays claimed, for orphan recovery.
#[tokio::test]
async fn a_result_the_database_refuses_keeps_its_outcome_and_holds_up_nothing() {
    let (_db, ctx) = setup().await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.last_error LIKE '%refuse me%' OR NEW.event_type = 'refuse-all' THEN \
             RAISE EXCEPTION 'refused by a test trigger'; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER refuse BEFORE UPDATE ON webhook_events FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .execute(&ctx.pool)
    .await
    .unwrap();
    let origin = event(&ctx).await;
    let bad = push(&ctx, &fails("refuse me", &origin)).await;
    // An event whose every update the trigger refuses: its job's result cannot be written at
    // all, with or without an error text.
    let hopeless = new_svix_id();
    sqlx::query("INSERT INTO webhook_events (svix_id, event_type, payload, status, pending_jobs) VALUES ($1, 'refuse-all', '{}', 'queued', 1)")
        .bind(&hopeless)
        .execute(&ctx.pool)
        .await
        .unwrap();
    let hopeless_origin = Origin {
        svix_id: Some(SvixId::parse(&hopeless).unwrap()),
        ..Origin::system()
    };
    let stuck = push(&ctx, &ok(&hopeless_origin)).await;
    let mut good = Vec::new();
    for _ in 0..10 {
        let origin = event(&ctx).await;
        good.push((push(&ctx, &ok(&origin)).await, origin));
    }
    let report = tokio::time::timeout(Duration::from_secs(60), drain(&ctx, &test_registry()))
        .await
        .expect("no result waits for one the database refuses")
        .unwrap();
    assert_eq!((report.succeeded, report.killed), (11, 1));
    // The hopeless one is not lost: it stays claimed, and runs again once this worker is gone.
    assert_eq!(job_row(&ctx, &stuck).await.status, Status::Running);
    for (id, origin) in &good {
        assert_eq!(job_row(&ctx, id).await.status, Status::Done);
        assert_eq!(event_state(&ctx, origin).await.0, "processed");
    }
    let row = job_row(&ctx, &bad).await;
    assert_eq!(row.status, Status::Killed);
    let stored = row.error().unwrap();
    assert!(stored.contains("could not be stored"), "{row:?}");
    assert!(stored.contains("refused by a test trigger"), "{row:?}");
    let (status, _, err) = event_state(&ctx, &origin).await;
    assert_eq!(status, "failed");
    assert!(err.unwrap().contains("could not be stored"));
}
