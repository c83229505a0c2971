//! authsync's job queue runtime, generic over the application's job context: typed jobs
//! ([`Job`]) in `apalis.jobs` (apalis-postgres 1.0 schema and row format), enqueued inside the
//! caller's transaction ([`enqueue`]), run by its own executor ([`WorkerPool`], [`drain`]).
//! It knows apalis-postgres' storage but no table of the application's: what the application
//! does when jobs finish arrives as a [`CompletionHook`], whatever a job carries for it as
//! opaque [`Metadata`]. `README.md` beside this crate is its contract with apalis.
//!
//! Why our own executor instead of apalis' `WorkerBuilder`: the stock 1.0 worker refetches a
//! failed job at once, its interval poll does not re-arm, its default is 25 attempts, its
//! per-row notify serialises commits, and it stops for good after a 12 s Postgres outage. We
//! keep apalis' schema, its fetch predicate, order and index, its worker registration and its
//! orphan recovery query; jobs are written the way its `push_tasks` writes them. The runtime is
//! split by service: [`claim`] (claiming in one statement), [`completer`] (classified results
//! recorded in batches with the hook's bookkeeping, backoff with jitter stored in `run_at`),
//! [`rescuer`] (heartbeats and orphan recovery) and [`wake`] (every wake-up), run by
//! [`runner`] with a deadline on every attempt ([`Job::DEADLINE`]) and limits on every
//! statement of its own ([`bounded`]).

pub mod backoff;
mod bounded;
mod claim;
mod completer;
pub mod db;
mod drain;
mod enqueue;
pub mod error;
mod job;
pub mod json_error;
pub mod registry;
mod rescuer;
pub mod runner;
pub mod schema;
pub mod status;
pub mod wake;

use std::future::Future;

pub use completer::{CompletionHook, RunOutcome};
pub use drain::{drain, DrainReport};
pub use enqueue::{enqueue_one, enqueue_unique, insert_jobs_sql, EnqueueError, Rows};
pub use error::JobError;
pub use job::{Context, Job, Metadata};
pub use registry::Registry;
pub use runner::{WorkerPool, WorkerSettings};
pub use status::{Predicate, Status};
pub use wake::{Notifier, JOB_DONE_CHANNEL};

tokio::task_local! {
    /// The id of the job whose handler runs in this task.
    static CURRENT_JOB_ID: String;
}

/// The `apalis.jobs.id` of the job whose handler is running (`None` when a handler is called
/// directly, outside the runner): for jobs whose results operators refer to by job id.
pub fn current_job_id() -> Option<String> {
    CURRENT_JOB_ID.try_with(Clone::clone).ok()
}

/// Runs `f` with [`current_job_id`] answering `id`.
pub(crate) fn with_job_id<F: Future>(id: String, f: F) -> impl Future<Output = F::Output> {
    CURRENT_JOB_ID.scope(id, f)
}

/// A worker name unique to this process instance: host, pid and a random suffix, so a
/// restarted process never inherits (or hides) a crashed one's jobs.
pub fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    let suffix: u32 = rand::random();
    format!("{host}-{}-{suffix:08x}", std::process::id())
}
