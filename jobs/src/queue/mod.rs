//! The one module that knows apalis. Jobs live in `apalis.jobs` (apalis-postgres 1.0 schema
//! and queries); everything apalis-specific — queue names, ULID ids, enqueueing inside the
//! caller's transaction, backoff in `run_at`, worker naming, wake-ups, reading status — is here,
//! so handlers only see [`Job`] and [`crate::context::JobContext`].
//!
//! Why our own execution loop instead of apalis' `WorkerBuilder`: DESIGN.md lists what the
//! stock 1.0 worker gets wrong for us (immediate refetch of failed jobs, an interval poll that
//! does not re-arm, default 25 attempts, per-row notify). The loop in [`runner`] uses
//! apalis-postgres' own queries for fetching (`get_jobs`), locking, worker registration,
//! heartbeats and orphan recovery, and adds what is missing: classified results, backoff with
//! jitter stored in `run_at`, and event bookkeeping committed with the result.

pub mod backoff;
pub mod notifier;
pub mod registry;
pub mod runner;
pub mod status;
mod wake;

use crate::audit::Origin;
use crate::context::JobContext;
use crate::error::JobError;
use crate::planner::PlannedJob;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::metadata::MetadataStore;
use apalis_core::task::task_id::TaskId;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::PgConnection;
use std::collections::HashMap;
use std::future::Future;
use ulid::Ulid;

pub use notifier::Notifier;
pub use registry::{registry, Registry};

/// Channel on which results of urgent jobs are announced (payload: the job id).
pub const JOB_DONE_CHANNEL: &str = "authsync_job_done";
pub use runner::{drain, DrainReport, WorkerPool, WorkerSettings};

/// A typed job: its payload is `Self`, its queue a constant that must never change once deployed.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The `apalis.jobs.job_type` of this job.
    const QUEUE: &'static str;
    /// Runs before a retryable failure becomes final.
    const MAX_ATTEMPTS: u32;
    /// Urgent jobs (a user is waiting) get their own concurrency in every worker process and
    /// announce every result on [`JOB_DONE_CHANNEL`] for long-polling clients.
    const URGENT: bool = false;
    /// Who caused this job; the webhook it came from is kept up to date with its progress.
    fn origin(&self) -> &Origin;
    /// Does the work. Must be idempotent: a job may run more than once.
    fn handle(self, ctx: &JobContext) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// Enqueueing failed; nothing was written (the caller's transaction should roll back).
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("serialising the job payload failed")]
    Encode(#[from] serde_json::Error),
    #[error("inserting into apalis.jobs failed")]
    Push(#[from] apalis_postgres::Error),
}

/// A job about to be pushed: queue, id and encoded task.
struct Encoded {
    queue: &'static str,
    id: Ulid,
    task: apalis_postgres::PgTask,
}

fn encode<J: Job>(job: &J, request_id: Option<&str>) -> Result<Encoded, EnqueueError> {
    let id = Ulid::generate();
    let mut meta = HashMap::new();
    if let Some(svix) = &job.origin().svix_id {
        meta.insert("svix_id".to_owned(), svix.to_string());
    }
    if let Some(rid) = request_id {
        meta.insert("request_id".to_owned(), rid.to_owned());
    }
    let task = TaskBuilder::new(serde_json::to_vec(job)?)
        .task_id(TaskId::from_ulid(id))
        .max_attempts(J::MAX_ATTEMPTS as usize)
        .with_metadata(MetadataStore::from_map(meta))
        .build();
    Ok(Encoded {
        queue: J::QUEUE,
        id,
        task,
    })
}

fn encode_planned(job: &PlannedJob, request_id: Option<&str>) -> Result<Encoded, EnqueueError> {
    match job {
        PlannedJob::ProvisionUser(j) => encode(j, request_id),
        PlannedJob::SoftDelete(j) => encode(j, request_id),
        PlannedJob::SyncOrganization(j) => encode(j, request_id),
        PlannedJob::SyncMembership(j) => encode(j, request_id),
    }
}

/// Pushes planned jobs on the caller's connection (normally inside its transaction), one
/// multi-row insert per queue. Returns the job ids in plan order.
pub async fn enqueue(
    conn: &mut PgConnection,
    jobs: &[PlannedJob],
    request_id: Option<&str>,
) -> Result<Vec<Ulid>, EnqueueError> {
    let mut ids = Vec::with_capacity(jobs.len());
    let mut by_queue: Vec<(&'static str, Vec<apalis_postgres::PgTask>)> = Vec::new();
    for job in jobs {
        let enc = encode_planned(job, request_id)?;
        ids.push(enc.id);
        match by_queue.iter_mut().find(|(q, _)| *q == enc.queue) {
            Some((_, tasks)) => tasks.push(enc.task),
            None => by_queue.push((enc.queue, vec![enc.task])),
        }
    }
    for (queue, tasks) in by_queue {
        apalis_postgres::queries::push_tasks(conn, queue, tasks).await?;
    }
    Ok(ids)
}

/// Pushes one typed job outside the webhook path (tests, operators, the fallback).
pub async fn enqueue_one<J: Job>(
    conn: &mut PgConnection,
    job: &J,
    request_id: Option<&str>,
) -> Result<Ulid, EnqueueError> {
    let enc = encode(job, request_id)?;
    apalis_postgres::queries::push_tasks(conn, enc.queue, vec![enc.task]).await?;
    Ok(enc.id)
}

/// Pushes `job` unless a job of its queue with the same `key` exists already (apalis'
/// unique idempotency key): how several worker processes schedule one run per period.
/// Returns whether it was pushed.
pub async fn enqueue_unique<J: Job>(
    pool: &sqlx::PgPool,
    job: &J,
    key: &str,
) -> Result<bool, EnqueueError> {
    let mut enc = encode(job, None)?;
    enc.task = enc.task.into_builder().idempotency_key(key).build();
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| EnqueueError::Push(e.into()))?;
    match apalis_postgres::queries::push_tasks(&mut *conn, enc.queue, vec![enc.task]).await {
        Ok(()) => Ok(true),
        Err(apalis_postgres::Error::Database(sqlx::Error::Database(db)))
            if db.is_unique_violation() =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
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
