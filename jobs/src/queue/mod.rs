//! The one module that knows apalis. Jobs live in `apalis.jobs` (apalis-postgres 1.0 schema
//! and queries); everything apalis-specific — queue names, ULID ids, enqueueing inside the
//! caller's transaction, backoff in `run_at`, worker naming, wake-ups, reading status — is here,
//! so handlers only see [`Job`] and [`crate::context::JobContext`].
//!
//! Why our own execution loop instead of apalis' `WorkerBuilder`: DESIGN.md lists what the
//! stock 1.0 worker gets wrong for us (immediate refetch of failed jobs, an interval poll that
//! does not re-arm, default 25 attempts, per-row notify). We keep apalis' schema, its fetch
//! predicate, order and index, its worker registration and its orphan recovery query; jobs are
//! written the way its `push_tasks` writes them. The loop in [`runner`] adds what is missing:
//! claiming in one statement, classified results recorded in batches with the webhook event's
//! bookkeeping, backoff with jitter stored in `run_at`, a deadline on every attempt
//! ([`Job::DEADLINE`]) and limits on every statement of its own ([`bounded`]).

pub mod backoff;
mod bounded;
mod drain;
mod heartbeat;
pub mod notifier;
pub mod registry;
mod results;
pub mod runner;
pub mod status;
mod wake;

use crate::audit::Origin;
use crate::context::JobContext;
use crate::error::JobError;
use crate::planner::PlannedJob;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::postgres::types::PgHstore;
use sqlx::PgConnection;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;
use ulid::Ulid;

pub use notifier::Notifier;
pub use registry::{registry, Registry};

/// Channel on which results of urgent jobs are announced (payload: the job id).
pub const JOB_DONE_CHANNEL: &str = "authsync_job_done";
pub use drain::{drain, DrainReport};
pub use runner::{WorkerPool, WorkerSettings};

/// A typed job: its payload is `Self`, its queue a constant that must never change once deployed.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The `apalis.jobs.job_type` of this job.
    const QUEUE: &'static str;
    /// Runs before a retryable failure becomes final.
    const MAX_ATTEMPTS: u32;
    /// Urgent jobs (a user is waiting) get their own concurrency in every worker process and
    /// announce every result on [`JOB_DONE_CHANNEL`] for long-polling clients.
    const URGENT: bool = false;
    /// How long one attempt may run. Past it the attempt is abandoned (the handler's future is
    /// dropped, rolling back its open transaction), its slot is freed at once and it counts
    /// as a retryable failure ("deadline of 60 s exceeded") that backs off like any other and
    /// counts towards `MAX_ATTEMPTS`. A handler stuck on a hung socket would otherwise keep its
    /// slot for good: its worker goes on heartbeating, so orphan recovery never takes it.
    const DEADLINE: Duration = Duration::from_secs(60);
    /// `lock_timeout` and `statement_timeout` of the transactions the handler opens with
    /// [`JobContext::begin`]; both well inside [`Job::DEADLINE`], so a blocked statement ends
    /// with a database error that names the cause rather than with the deadline.
    const DB_LIMITS: crate::db::TxLimits = crate::db::TxLimits::JOB;
    /// Who caused this job; the webhook it came from is kept up to date with its progress.
    fn origin(&self) -> &Origin;
    /// Does the work. Must be idempotent: a job may run more than once.
    fn handle(self, ctx: &JobContext) -> impl Future<Output = Result<(), JobError>> + Send;
}

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

/// Enqueueing failed; nothing was written (the caller's transaction should roll back).
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("serialising the job payload failed")]
    Encode(#[from] serde_json::Error),
    #[error("inserting into apalis.jobs failed")]
    Push(#[from] sqlx::Error),
}

/// Jobs encoded as the columns of `apalis.jobs` rows, as apalis-postgres' own `push_tasks`
/// writes them (status `Pending`, no attempts, priority 0, metadata in an hstore), for one
/// multi-row insert of any mix of queues.
#[derive(Default)]
pub(crate) struct Rows {
    ids: Vec<Ulid>,
    id_texts: Vec<String>,
    queues: Vec<&'static str>,
    payloads: Vec<Vec<u8>>,
    max_attempts: Vec<i32>,
    metadata: Vec<PgHstore>,
    keys: Vec<Option<String>>,
}

impl Rows {
    fn push<J: Job>(
        &mut self,
        job: &J,
        request_id: Option<&str>,
        key: Option<&str>,
    ) -> Result<Ulid, EnqueueError> {
        let id = Ulid::generate();
        let mut meta = BTreeMap::new();
        if let Some(svix) = &job.origin().svix_id {
            meta.insert("svix_id".to_owned(), Some(svix.to_string()));
        }
        if let Some(rid) = request_id {
            meta.insert("request_id".to_owned(), Some(rid.to_owned()));
        }
        self.payloads.push(serde_json::to_vec(job)?);
        self.ids.push(id);
        self.id_texts.push(id.to_string());
        self.queues.push(J::QUEUE);
        self.max_attempts.push(J::MAX_ATTEMPTS as i32);
        self.metadata.push(PgHstore(meta));
        self.keys.push(key.map(str::to_owned));
        Ok(id)
    }

    pub(crate) fn planned(
        jobs: &[PlannedJob],
        request_id: Option<&str>,
    ) -> Result<Self, EnqueueError> {
        let mut rows = Self::default();
        for job in jobs {
            match job {
                PlannedJob::ProvisionUser(j) => rows.push(j, request_id, None),
                PlannedJob::SoftDelete(j) => rows.push(j, request_id, None),
                PlannedJob::SyncOrganization(j) => rows.push(j, request_id, None),
                PlannedJob::SyncMembership(j) => rows.push(j, request_id, None),
            }?;
        }
        Ok(rows)
    }

    /// Appends copies of `other`'s rows.
    pub(crate) fn extend(&mut self, other: &Rows) {
        self.ids.extend_from_slice(&other.ids);
        self.id_texts.extend_from_slice(&other.id_texts);
        self.queues.extend_from_slice(&other.queues);
        self.payloads.extend_from_slice(&other.payloads);
        self.max_attempts.extend_from_slice(&other.max_attempts);
        self.metadata
            .extend(other.metadata.iter().map(|m| PgHstore(m.0.clone())));
        self.keys.extend_from_slice(&other.keys);
    }

    /// The job ids, in the order the jobs were added.
    pub(crate) fn ids(&self) -> &[Ulid] {
        &self.ids
    }

    /// Binds the six arrays that [`insert_jobs_sql`]`(first)` reads, in order.
    pub(crate) fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.id_texts)
            .bind(&self.queues)
            .bind(&self.payloads)
            .bind(&self.max_attempts)
            .bind(&self.metadata)
            .bind(&self.keys)
    }

    async fn insert(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        static SQL: LazyLock<String> = LazyLock::new(|| insert_jobs_sql(1));
        self.bind(crate::db::query(SQL.as_str()))
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// `INSERT INTO apalis.jobs … SELECT … FROM unnest(…)` reading the six arrays of [`Rows::bind`]
/// as parameters `$first` to `$first + 5`. Callers may append a `WHERE` clause (the `unnest`
/// is aliased `r`).
pub(crate) fn insert_jobs_sql(first: usize) -> String {
    let p: Vec<String> = (first..first + 6).map(|n| format!("${n}")).collect();
    format!(
        "INSERT INTO apalis.jobs \
         (id, job_type, job, status, attempts, max_attempts, run_at, priority, metadata, idempotency_key) \
         SELECT r.id, r.job_type, r.job, 'Pending', 0, r.max_attempts, now(), 0, r.metadata, r.idempotency_key \
         FROM unnest({}::text[], {}::text[], {}::bytea[], {}::integer[], {}::hstore[], {}::text[]) \
         AS r (id, job_type, job, max_attempts, metadata, idempotency_key)",
        p[0], p[1], p[2], p[3], p[4], p[5]
    )
}

/// Pushes planned jobs on the caller's connection (normally inside its transaction), in one
/// multi-row insert. Returns the job ids in plan order.
pub async fn enqueue(
    conn: &mut PgConnection,
    jobs: &[PlannedJob],
    request_id: Option<&str>,
) -> Result<Vec<Ulid>, EnqueueError> {
    let rows = Rows::planned(jobs, request_id)?;
    rows.insert(conn).await?;
    Ok(rows.ids)
}

/// Pushes one typed job outside the webhook path (tests, operators, the fallback).
pub async fn enqueue_one<J: Job>(
    conn: &mut PgConnection,
    job: &J,
    request_id: Option<&str>,
) -> Result<Ulid, EnqueueError> {
    let mut rows = Rows::default();
    let id = rows.push(job, request_id, None)?;
    rows.insert(conn).await?;
    Ok(id)
}

/// Pushes `job` unless a job of its queue with the same `key` exists already (apalis'
/// unique idempotency key): how several worker processes schedule one run per period.
/// Returns whether it was pushed.
pub async fn enqueue_unique<J: Job>(
    pool: &sqlx::PgPool,
    job: &J,
    key: &str,
) -> Result<bool, EnqueueError> {
    let mut rows = Rows::default();
    rows.push(job, None, Some(key))?;
    // In a transaction of its own, as every statement behind a transaction pooler (crate::db).
    let mut tx = pool.begin().await?;
    match rows.insert(&mut tx).await {
        Ok(()) => {
            tx.commit().await?;
            Ok(true)
        }
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
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
