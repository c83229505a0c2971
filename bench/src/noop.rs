//! `bench noop` and `bench noop-worker`: the queue runtime alone (authsync-queue with a job that
//! does nothing), the figure other Postgres queues publish (graphile-worker, pg-boss, apalis'
//! own benchmarks), so authsync's runtime can be set beside them. Handlers, the webhook
//! bookkeeping and mail are not in it: `bench/run`'s drain steps measure those.
//!
//! `bench noop --database-url URL --jobs N --workers W` enqueues N no-op jobs in one
//! transaction, starts W processes of `bench noop-worker` (this binary; the worker's default
//! settings and pool of 6 connections), and times from their start to the last job done.

use anyhow::{bail, Context as _, Result};
use authsync_queue::{
    db::TxLimits, Context, Job, JobError, Predicate, Registry, Rows, WorkerPool, WorkerSettings,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A job that does nothing; its number only makes each payload distinct.
#[derive(Serialize, Deserialize)]
struct Noop {
    n: u64,
}

#[derive(Clone)]
struct NoopContext(PgPool);

impl Context for NoopContext {
    fn pool(&self) -> &PgPool {
        &self.0
    }
    fn with_limits(self, _: TxLimits) -> Self {
        self
    }
}

impl Job for Noop {
    type Context = NoopContext;
    const QUEUE: &'static str = "bench.noop";
    const MAX_ATTEMPTS: u32 = 1;

    async fn handle(self, _: &NoopContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// The worker's own pool size (`worker::DEFAULT_POOL`).
const POOL: u32 = 6;

/// `bench noop-worker --database-url URL`: runs no-op jobs until SIGTERM.
pub async fn worker(database_url: &str) -> Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(POOL)
        .connect(database_url)
        .await?;
    let mut registry = Registry::default();
    registry.register::<Noop>();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    WorkerPool::new(NoopContext(pool), registry, WorkerSettings::default())
        .run(async move {
            term.recv().await;
        })
        .await?;
    Ok(())
}

/// `bench noop`: one timed drain; prints `{jobs, workers, seconds, jobs_per_sec}`.
pub async fn drain(database_url: &str, jobs: u64, workers: u32) -> Result<Value> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(database_url)
        .await?;
    sqlx::query("DELETE FROM apalis.jobs WHERE job_type = $1")
        .bind(Noop::QUEUE)
        .execute(&pool)
        .await?;
    let mut tx = pool.begin().await?;
    for start in (0..jobs).step_by(5_000) {
        let mut rows = Rows::default();
        for n in start..(start + 5_000).min(jobs) {
            rows.push(&Noop { n }, None, None)?;
        }
        rows.insert(&mut tx).await?;
    }
    tx.commit().await?;

    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let mut children: Vec<Child> = (0..workers)
        .map(|_| {
            Command::new(&exe)
                .args(["noop-worker", "--database-url", database_url])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .context("starting `bench noop-worker`")
        })
        .collect::<Result<_>>()?;
    let done_sql = format!(
        "SELECT count(*) FROM apalis.jobs WHERE job_type = $1 AND {}",
        Predicate::Done
    );
    let outcome = loop {
        let done: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(done_sql.as_str()))
            .bind(Noop::QUEUE)
            .fetch_one(&pool)
            .await?;
        if done as u64 >= jobs {
            break Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(600) {
            break Err(done);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for child in &mut children {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    for child in &mut children {
        let _ = child.wait();
    }
    let elapsed = match outcome {
        Ok(e) => e.as_secs_f64(),
        Err(done) => bail!("only {done} of {jobs} no-op jobs done after 600 s"),
    };
    Ok(json!({
        "jobs": jobs,
        "workers": workers,
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "jobs_per_sec": (jobs as f64 / elapsed * 100.0).round() / 100.0,
    }))
}
