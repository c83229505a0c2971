//! The worker inside its connection budget: a pool far smaller than its concurrency. Jobs
//! that find every connection busy wait for one instead of failing, and the urgent lane
//! still gets through a webhook backlog with the default pool.

use jobs::audit::Origin;
use jobs::config::DatabaseConfig;
use jobs::error::JobError;
use jobs::queue::{self, Job, Registry, WorkerSettings};
use jobs::JobContext;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tests::bodies::{JobStatus, SyncAnswer};
use tests::fake_clerk::FakeClerk;
use tests::queue::Status;
use tests::*;

/// A worker's pool as the worker binary builds it, of `max` connections.
fn worker_pool(url: &str, max: u32) -> sqlx::PgPool {
    let config = DatabaseConfig {
        url: url.to_owned().into(),
        max_connections: max,
        direct_url: None,
        pooler: false,
    };
    jobs::db::pool_waiting(&config, jobs::db::WORKER_ACQUIRE_TIMEOUT).unwrap()
}

/// Keeps its connection for a second, like a job whose transaction waits on a lock.
/// One attempt only: a job that could not get a connection would be dead, not retried.
#[derive(Serialize, Deserialize)]
struct HoldsConnection {
    origin: Origin,
}

impl Job for HoldsConnection {
    type Context = JobContext;
    const QUEUE: &'static str = "test.holds_connection";
    const MAX_ATTEMPTS: u32 = 1;
    fn metadata(&self) -> jobs::queue::Metadata {
        self.origin.metadata()
    }
    async fn handle(self, ctx: &JobContext) -> Result<(), JobError> {
        let mut tx = ctx.begin().await?;
        sqlx::query("SELECT pg_sleep(1)").execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[tokio::test]
async fn jobs_wait_for_a_connection_of_a_small_pool_instead_of_failing() {
    // Arrange: 24 slow jobs; 16 may run at once, and the pool has 3 connections (one of them
    // the LISTEN connection): the last of 16 waits about 8 s for its turn, longer than a request's
    // acquire timeout (5 s).
    let db = TestDb::new().await;
    let ctx = JobContext::new(worker_pool(&db.url, 3));
    {
        let mut conn = db.pool.acquire().await.unwrap();
        for _ in 0..24 {
            let job = HoldsConnection {
                origin: Origin::system(),
            };
            queue::enqueue_one(&mut conn, &job, None).await.unwrap();
        }
    }
    let mut registry = Registry::default();
    registry.register::<HoldsConnection>();

    // Act
    let worker = RunningWorker::start(
        ctx,
        registry,
        WorkerSettings {
            concurrency: 16,
            ..Default::default()
        },
    );
    tests::queue::Queue::on(&db.pool)
        .wait_for_idle(Duration::from_secs(90))
        .await;
    worker.stop().await;

    // Assert: every job succeeded at its first attempt.
    assert_eq!(
        tests::queue::Queue::on(&db.pool).jobs_by_state().await,
        [(Status::Done, 24)]
    );
}

const ALICE: &str = "user_2abcFakeAlice0000000000001";

#[tokio::test]
async fn an_urgent_job_gets_a_connection_of_the_default_pool_under_a_webhook_backlog() {
    // Arrange: 5,000 ProvisionUser jobs waiting, a worker with the default pool and
    // concurrency.
    let clerk = FakeClerk::start().await;
    clerk.put_user(fixture_json("user.created")["data"].clone());
    let app = TestApp::builder().clerk(&clerk).spawn().await;
    let template = match jobs::clerk::ClerkEvent::parse(&fixture("user.created"))
        .unwrap()
        .kind
    {
        jobs::clerk::EventKind::UserCreated(u) => u,
        _ => unreachable!(),
    };
    let planned: Vec<jobs::planner::PlannedJob> = (0..5000)
        .map(|i| {
            let mut u = template.clone();
            u.clerk_user_id =
                jobs::clerk::ids::ClerkUserId::parse(&format!("user_backlog{i}")).unwrap();
            u.email = None;
            jobs::planner::PlannedJob::ProvisionUser(
                jobs::handlers::provision_user::ProvisionUser {
                    user: u,
                    origin: Origin::system(),
                },
            )
        })
        .collect();
    let mut conn = app.pool().acquire().await.unwrap();
    queue::enqueue(&mut conn, &planned, None).await.unwrap();
    drop(conn);
    let mut ctx = JobContext::new(worker_pool(&app.db.url, worker::DEFAULT_POOL));
    ctx.clerk = app.ctx.clerk.clone();
    let worker = RunningWorker::start(ctx, queue::registry(), WorkerSettings::default());

    // Act: the user asks, and waits for the answer.
    let token = clerk.token(ALICE);
    let (_, started) = parse::<SyncAnswer>(app.sync(&token).await).await;
    let (_, done) = parse::<JobStatus>(app.job(&token, started.job_id(), Some(10_000)).await).await;

    // Assert: done while webhook jobs were still waiting.
    let backlog = app
        .queue()
        .unfinished(Some("authsync.provision_user"))
        .await;
    assert_eq!(done.state, "succeeded", "{done:?}");
    assert!(
        backlog > 0,
        "the backlog was gone before the urgent job ended"
    );
    worker.stop().await;
    app.queue()
        .delete_unfinished("authsync.provision_user")
        .await;
    app.drain().await;
}
