//! What the runtime needs to know about a job type ([`Job`]) and about the context its
//! handlers run with ([`Context`]), and the opaque metadata a job carries ([`Metadata`]).

use crate::db::TxLimits;
use crate::error::JobError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// What every handler of one application gets (`jobs::JobContext` for authsync): the pool the
/// runtime claims and records with, and per-attempt transaction limits.
pub trait Context: Clone + Send + Sync + 'static {
    /// The pool the runtime claims jobs and writes results with.
    fn pool(&self) -> &PgPool;
    /// This context for one attempt of a job with these limits ([`Job::DB_LIMITS`]).
    fn with_limits(self, limits: TxLimits) -> Self;
    /// The application's effect on completion, written in the same statement as the results
    /// (see [`crate::CompletionHook`]); none by default.
    fn completion_hook(&self) -> Option<&'static dyn crate::CompletionHook> {
        None
    }
}

/// A typed job: its payload is `Self`, its queue a constant that must never change once
/// deployed. Its policies are values the runtime reads: attempts, urgency, deadline, database
/// limits.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// What the handler runs with.
    type Context: Context;
    /// The `apalis.jobs.job_type` of this job.
    const QUEUE: &'static str;
    /// Runs before a retryable failure becomes final.
    const MAX_ATTEMPTS: u32;
    /// Urgent jobs (a user is waiting) get their own concurrency in every worker process and
    /// announce every result on [`crate::JOB_DONE_CHANNEL`] for long-polling clients.
    const URGENT: bool = false;
    /// How long one attempt may run. Past it the attempt is abandoned (the handler's future is
    /// dropped, rolling back its open transaction), its slot is freed at once and it counts
    /// as a retryable failure ("deadline of 60 s exceeded") that backs off like any other and
    /// counts towards `MAX_ATTEMPTS`. A handler stuck on a hung socket would otherwise keep its
    /// slot for good: its worker goes on heartbeating, so orphan recovery never takes it.
    const DEADLINE: Duration = Duration::from_secs(60);
    /// `lock_timeout` and `statement_timeout` of the transactions the handler opens through
    /// its context ([`Context::with_limits`]); both well inside [`Job::DEADLINE`], so a blocked
    /// statement ends with a database error that names the cause rather than with the deadline.
    const DB_LIMITS: TxLimits = TxLimits::JOB;
    /// Opaque metadata stored with the job (`apalis.jobs.metadata`), handed back to the
    /// [`crate::CompletionHook`] when it finishes and logged with every attempt.
    fn metadata(&self) -> Metadata {
        Metadata::default()
    }
    /// Does the work. Must be idempotent: a job may run more than once.
    fn handle(self, ctx: &Self::Context) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// Key/value metadata of a job, stored in the hstore `apalis.jobs.metadata` as apalis-postgres
/// stores its own. The runtime reads only [`Metadata::REQUEST_ID`] (for logs); the rest
/// belongs to the application.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// The request that enqueued the job (logged with each attempt).
    pub const REQUEST_ID: &'static str = "request_id";

    /// Adds (or replaces) `key`.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub(crate) fn into_hstore(self) -> sqlx::postgres::types::PgHstore {
        sqlx::postgres::types::PgHstore(self.0.into_iter().map(|(k, v)| (k, Some(v))).collect())
    }

    pub(crate) fn from_hstore(h: Option<sqlx::postgres::types::PgHstore>) -> Self {
        Self(
            h.map(|h| h.0.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
                .unwrap_or_default(),
        )
    }
}

/// `key=value key=value`, for logs.
impl fmt::Display for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}
