//! The completer: classifying a finished run ([`Finished`]) and writing results in batches,
//! together with the application's bookkeeping ([`CompletionHook`]), from one writer task per
//! process ([`Recorder`]). Each write is one bounded transaction ([`crate::bounded::RESULTS`]).

use crate::backoff;
use crate::bounded::{bounded, RESULTS};
use crate::error::JobError;
use crate::status::Status;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the application does when jobs finish, in the SAME statement that writes their
/// results (one round trip and one commit per batch, however many results it holds).
///
/// [`CompletionHook::ctes`] is appended to the result statement's `WITH` list, after the CTE
/// `done`: the results just written, one row per job, with the columns `id text`,
/// `metadata hstore` (the job's [`crate::Metadata`]), `outcome text` (`succeeded`, `retrying`,
/// `exhausted` or `killed`) and `error text` (NULL on success). Its CTEs may modify the
/// application's tables; nothing else reads them. Parameters are not available to it.
pub trait CompletionHook: Send + Sync + 'static {
    /// CTEs, each written `, name AS (…)`.
    fn ctes(&self) -> &'static str;
}

/// How one run ended, as written to `apalis.jobs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded,
    /// Failed; runs again after the backoff.
    Retrying,
    /// Failed with no attempts left.
    Exhausted,
    /// Failed fatally: no retry.
    Killed,
}

impl RunOutcome {
    /// The `outcome` label of `authsync_jobs_total`, also what the result writer stores.
    pub fn name(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Retrying => "retrying",
            RunOutcome::Exhausted => "exhausted",
            RunOutcome::Killed => "killed",
        }
    }
}

/// One finished run of a job, classified and ready to be written.
pub(crate) struct Finished {
    id: String,
    worker: String,
    outcome: RunOutcome,
    /// `apalis.jobs.status` to write.
    status: Status,
    last_result: serde_json::Value,
    /// Backoff before the next run (retries only).
    delay_ms: Option<i64>,
    error: Option<String>,
    /// Announce the result on `JOB_DONE_CHANNEL` (urgent jobs).
    announce: bool,
}

impl Finished {
    /// Classifies run number `attempt` (1-based) of job `id`: success, a retry after a backoff,
    /// or final failure.
    pub(crate) fn new(
        id: &str,
        worker: &str,
        attempt: u32,
        max_attempts: u32,
        announce: bool,
        result: &Result<(), JobError>,
    ) -> Self {
        let (outcome, delay, error) = match result {
            Ok(()) => (RunOutcome::Succeeded, None, None),
            Err(e @ JobError::Retryable { retry_after, .. }) if attempt < max_attempts => (
                RunOutcome::Retrying,
                Some(backoff::delay(attempt, *retry_after, &mut rand::rng())),
                Some(error_text(e)),
            ),
            Err(e @ JobError::Retryable { .. }) => {
                (RunOutcome::Exhausted, None, Some(error_text(e)))
            }
            Err(e @ JobError::Fatal(_)) => (RunOutcome::Killed, None, Some(error_text(e))),
        };
        let (status, last_result) = match (&outcome, &error) {
            (RunOutcome::Succeeded, _) => (Status::Done, serde_json::json!({"Ok": null})),
            (RunOutcome::Killed, Some(e)) => (Status::Killed, serde_json::json!({"Err": e})),
            (_, e) => (Status::Failed, serde_json::json!({"Err": e})),
        };
        Self {
            id: id.to_owned(),
            worker: worker.to_owned(),
            outcome,
            status,
            last_result,
            delay_ms: delay.map(|d| d.as_millis() as i64),
            error,
            announce,
        }
    }

    /// The same result with another error text.
    fn with_error(&self, error: String) -> Self {
        Self {
            id: self.id.clone(),
            worker: self.worker.clone(),
            last_result: serde_json::json!({ "Err": &error }),
            error: Some(error),
            status: self.status.clone(),
            ..*self
        }
    }
}

/// An error as stored: at most 2,000 characters, and without NUL, which Postgres text cannot
/// hold (one such message must not make a whole batch of results unwritable).
fn error_text(e: &JobError) -> String {
    let s = e.to_string().replace('\0', "\u{FFFD}");
    match s.char_indices().nth(2000) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// Most results written by one statement.
const RECORD_BATCH: usize = 256;

/// Writes job results for every queue loop of a process. Runs finish one at a time, but their
/// results go to the database together: whatever finished while the previous write was in
/// flight is written by the next one, in one statement (one round trip, one commit). An idle
/// worker therefore writes a lone result at once, and a busy one stops paying a transaction
/// per job for its bookkeeping (BENCHMARKS.md, drain table).
#[derive(Clone)]
pub(crate) struct Recorder {
    tx: mpsc::Sender<(Finished, oneshot::Sender<()>)>,
}

/// Where results go: the pool and the result statement (with the hook's CTEs).
struct Target {
    pool: PgPool,
    sql: Arc<str>,
}

impl Recorder {
    pub(crate) fn spawn(
        pool: PgPool,
        hook: Option<&'static dyn CompletionHook>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4 * RECORD_BATCH);
        let target = Target {
            pool,
            sql: result_sql(hook.map_or("", |h| h.ctes())).into(),
        };
        (Self { tx }, tokio::spawn(write_results(target, rx)))
    }

    /// Hands a result over and waits until it is written (or found no longer ours). The job
    /// keeps its concurrency slot meanwhile, so a database outage stops fetching too.
    pub(crate) async fn record(&self, run: Finished) -> RunOutcome {
        let outcome = run.outcome;
        let (done, written) = oneshot::channel();
        let id = run.id.clone();
        if self.tx.send((run, done)).await.is_err() || written.await.is_err() {
            // Only at shutdown, when the writer was stopped with the database unreachable:
            // the job stays locked by this (now dead) worker and orphan recovery runs it again.
            tracing::warn!(job_id = %id, "worker stopping; job result not recorded");
        }
        outcome
    }
}

async fn write_results(target: Target, mut rx: mpsc::Receiver<(Finished, oneshot::Sender<()>)>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while rx.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let runs: Vec<&Finished> = batch.iter().map(|(f, _)| f).collect();
        let mut given_up = Vec::new();
        let held = match write_retrying(&target, &runs).await {
            Ok(held) => held,
            // One refused row fails the whole statement: write the results one at a time, so
            // it cannot hold up the others.
            Err(e) => {
                tracing::warn!(error = %e, results = runs.len(), "the database refused a batch of job results; recording them one by one");
                let mut held = Vec::new();
                for run in runs {
                    match write_alone(&target, run).await {
                        Some(h) => held.extend(h),
                        None => given_up.push(run.id.clone()),
                    }
                }
                held
            }
        };
        for (run, done) in batch.drain(..) {
            if !held.contains(&run.id) && !given_up.contains(&run.id) {
                tracing::warn!(
                    job_id = %run.id,
                    "job no longer held by this worker; result not recorded"
                );
            }
            let _ = done.send(());
        }
    }
}

/// Writes one result the database refused in a batch. If it refuses it alone too, the same
/// outcome without its error text; if it refuses even that, gives up (None): the job stays
/// `Running` under this worker, which is logged as an error, and orphan recovery runs it again
/// once this process is gone. Nothing else waits for it meanwhile.
async fn write_alone(target: &Target, run: &Finished) -> Option<Vec<String>> {
    let mut e = match write_retrying(target, &[run]).await {
        Ok(held) => return Some(held),
        Err(e) => e,
    };
    if run.error.is_some() {
        tracing::error!(job_id = %run.id, error = %e, original = ?run.error, "the database refused this job's error text; storing the outcome without it");
        let plain = run.with_error(format!(
            "the job's error could not be stored ({e}); see the worker's log"
        ));
        match write_retrying(target, &[&plain]).await {
            Ok(held) => return Some(held),
            Err(again) => e = again,
        }
    }
    tracing::error!(job_id = %run.id, error = %e, outcome = run.outcome.name(), "the database refuses this job's result; it stays Running until this worker process stops, then runs again elsewhere");
    None
}

/// Writes `runs`. The results are known; only the database is missing: keep trying while it
/// is unreachable or busy (the jobs stay locked by this live worker meanwhile, so nothing else
/// would ever record them), so a database restart never leaves them `Running` for good. If
/// this process dies or shuts down first, orphan recovery runs the jobs again (handlers are
/// idempotent). Fails only when the database [refuses](crate::db::refused) the values.
async fn write_retrying(target: &Target, runs: &[&Finished]) -> Result<Vec<String>, sqlx::Error> {
    let mut wait = Duration::from_millis(250);
    loop {
        match record(target, runs).await {
            Ok(held) => return Ok(held),
            Err(e) if crate::db::refused(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, ?wait, "recording job results failed; retrying");
                metrics::counter!("authsync_queue_errors_total", "step" => "result").increment(1);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The result statement: writes results for the jobs each run's worker still holds (a job
/// recovered from us and taken by another worker is theirs to record), announces urgent ones
/// on [`crate::JOB_DONE_CHANNEL`], runs the hook's `ctes`, and returns the ids written.
fn result_sql(ctes: &str) -> String {
    format!(
        "WITH r AS (\
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::bigint[], \
                                $6::text[], $7::text[], $8::boolean[]) \
             AS r (id, worker, status, last_result, delay_ms, outcome, error, announce)), \
         done AS (\
           UPDATE apalis.jobs AS j SET status = r.status, attempts = j.attempts + 1, \
             last_result = r.last_result, done_at = now(), lock_by = NULL, \
             run_at = CASE WHEN r.delay_ms IS NULL THEN j.run_at \
                           ELSE now() + make_interval(secs => r.delay_ms / 1000.0) END \
           FROM r WHERE j.id = r.id AND j.lock_by = r.worker \
           RETURNING j.id, j.metadata, r.outcome, r.error, r.announce) \
         {ctes} \
         SELECT id, CASE WHEN announce THEN pg_notify($9, id)::text END AS announced FROM done"
    )
}

/// Writes `runs` in ONE statement ([`result_sql`]).
async fn record(target: &Target, runs: &[&Finished]) -> Result<Vec<String>, sqlx::Error> {
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let workers: Vec<&str> = runs.iter().map(|r| r.worker.as_str()).collect();
    let statuses: Vec<String> = runs.iter().map(|r| r.status.to_string()).collect();
    let results: Vec<&serde_json::Value> = runs.iter().map(|r| &r.last_result).collect();
    let delays: Vec<Option<i64>> = runs.iter().map(|r| r.delay_ms).collect();
    let outcomes: Vec<&str> = runs.iter().map(|r| r.outcome.name()).collect();
    let errors: Vec<Option<&str>> = runs.iter().map(|r| r.error.as_deref()).collect();
    let announce: Vec<bool> = runs.iter().map(|r| r.announce).collect();
    let query = crate::db::query_scalar(sqlx::AssertSqlSafe(target.sql.clone()))
        .bind(ids)
        .bind(workers)
        .bind(statuses)
        .bind(results)
        .bind(delays)
        .bind(outcomes)
        .bind(errors)
        .bind(announce)
        .bind(crate::JOB_DONE_CHANNEL);
    bounded(RESULTS, async {
        let mut tx = crate::db::begin(&target.pool, RESULTS).await?;
        let written = query.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(written)
    })
    .await
}
