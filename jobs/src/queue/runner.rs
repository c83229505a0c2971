//! Executes jobs: a fetch loop per queue with bounded concurrency, results written together
//! with the webhook event's bookkeeping, heartbeats and orphan recovery, graceful shutdown.

use super::registry::{Entry, Executed, Registry};
use super::{backoff, instance_name, wake};
use crate::context::JobContext;
use crate::error::JobError;
use futures::FutureExt;
use sqlx::postgres::types::PgHstore;
use sqlx::PgPool;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

/// Tuning for one worker process.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Jobs of one queue running at once in this process.
    pub concurrency: usize,
    /// Jobs of each urgent queue running at once in this process: reserved, so a backlog of
    /// webhook work never delays a user who is waiting.
    pub urgent_concurrency: usize,
    /// Most jobs fetched in one round trip.
    pub batch_size: usize,
    /// How often an idle queue looks for due work even without a notification
    /// (retries whose `run_at` has come, jobs recovered from dead workers).
    pub poll_interval: Duration,
    /// How often this process says it is alive and looks for dead workers' jobs.
    pub heartbeat_interval: Duration,
    /// A worker silent for this long is dead and its jobs run elsewhere.
    pub dead_after: Duration,
    /// How long SIGTERM waits for running jobs before leaving them to orphan recovery.
    pub shutdown_grace: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            urgent_concurrency: 4,
            batch_size: 64,
            poll_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(5),
            dead_after: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(25),
        }
    }
}

/// Why a worker process could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("registering the worker failed")]
    Register(#[source] sqlx::Error),
}

/// A process' workers: one per registered queue, all sharing one wake-up listener.
pub struct WorkerPool {
    ctx: JobContext,
    registry: Registry,
    settings: WorkerSettings,
    instance: String,
}

fn worker_id(queue: &str, instance: &str) -> String {
    format!("{queue}@{instance}")
}

async fn register(pool: &PgPool, queue: &str, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) \
         VALUES ($1, $2, 'authsync', '', now()) \
         ON CONFLICT (id) DO UPDATE SET last_seen = now()",
    )
    .bind(id)
    .bind(queue)
    .execute(pool)
    .await?;
    Ok(())
}

impl WorkerPool {
    pub fn new(ctx: JobContext, registry: Registry, settings: WorkerSettings) -> Self {
        Self {
            ctx,
            registry,
            settings,
            instance: instance_name(),
        }
    }

    /// This process' instance name (part of every worker id).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Runs until `shutdown` resolves, then stops fetching, lets running jobs finish within
    /// the grace period, and marks this instance's workers dead so anything left is recovered.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), WorkerError> {
        let pool = self.ctx.pool.clone();
        let ids: Vec<(String, &'static str)> = self
            .registry
            .entries()
            .iter()
            .map(|e| (worker_id(e.queue, &self.instance), e.queue))
            .collect();
        for (id, queue) in &ids {
            register(&pool, queue, id)
                .await
                .map_err(WorkerError::Register)?;
        }
        tracing::info!(instance = %self.instance, queues = ?self.registry.queues(), "worker started");

        let (stop_tx, stop_rx) = watch::channel(false);
        let wakers = wake::Wakers::new(self.registry.queues());
        let (recorder, writer) = Recorder::spawn(pool.clone());
        let mut tasks = JoinSet::new();
        tasks.spawn(wake::listen(pool.clone(), wakers.clone(), stop_rx.clone()));
        // Heartbeats go on until every running job's result is written: a worker that stopped
        // beating while still finishing jobs would look dead and have them taken over.
        let (beat_stop_tx, beat_stop_rx) = watch::channel(false);
        let beating = tokio::spawn(heartbeat(
            pool.clone(),
            ids.clone(),
            self.settings.clone(),
            beat_stop_rx,
        ));
        for entry in self.registry.entries() {
            let lp = QueueLoop {
                ctx: self.ctx.clone(),
                entry: entry.clone(),
                worker: worker_id(entry.queue, &self.instance),
                settings: self.settings.clone(),
                wake: wakers.get(entry.queue),
                recorder: recorder.clone(),
            };
            tasks.spawn(lp.run(stop_rx.clone()));
        }

        shutdown.await;
        let deadline = tokio::time::Instant::now() + self.settings.shutdown_grace;
        tracing::info!("shutdown requested: finishing running jobs");
        let _ = stop_tx.send(true);
        drop(recorder);
        while tasks.join_next().await.is_some() {}
        // Every queue loop has ended, so the writer ends once it has written what they handed
        // over, unless the database is unreachable: then orphan recovery has those jobs.
        let abort = writer.abort_handle();
        if tokio::time::timeout_at(deadline, writer).await.is_err() {
            abort.abort();
        }
        // Stopped rather than awaited: with the database unreachable, a beat could take as
        // long as the pool's acquire timeout.
        let _ = beat_stop_tx.send(true);
        beating.abort();
        // Anything still locked by us is now abandoned: let live workers take it at once.
        let names: Vec<String> = ids.into_iter().map(|(id, _)| id).collect();
        let _ = sqlx::query("UPDATE apalis.workers SET last_seen = 'epoch' WHERE id = ANY($1)")
            .bind(&names)
            .execute(&pool)
            .await;
        tracing::info!("worker stopped");
        Ok(())
    }
}

async fn heartbeat(
    pool: PgPool,
    ids: Vec<(String, &'static str)>,
    settings: WorkerSettings,
    mut stop: watch::Receiver<bool>,
) {
    let names: Vec<String> = ids.iter().map(|(id, _)| id.clone()).collect();
    let mut tick = tokio::time::interval(settings.heartbeat_interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let beat = sqlx::query("UPDATE apalis.workers SET last_seen = now() WHERE id = ANY($1)")
            .bind(&names)
            .execute(&pool)
            .await;
        if let Err(e) = beat {
            tracing::warn!(error = %e, "heartbeat failed");
            continue;
        }
        for (id, queue) in &ids {
            // Re-register in case a retention job removed the row while we were unreachable.
            let _ = register(&pool, queue, id).await;
            let recovered = async {
                let mut conn = pool.acquire().await?;
                apalis_postgres::queries::reenqueue_orphaned(
                    &mut *conn,
                    queue,
                    settings.dead_after.as_secs(),
                )
                .await
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))
            }
            .await;
            match recovered {
                Ok(n) if n > 0 => {
                    tracing::warn!(queue, recovered = n, "requeued jobs of dead workers")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(queue, error = %e, "orphan recovery failed"),
            }
        }
    }
}

/// How long a queue loop with a backlog waits to gather free slots before fetching.
const GATHER: Duration = Duration::from_millis(5);

struct QueueLoop {
    ctx: JobContext,
    entry: Entry,
    worker: String,
    settings: WorkerSettings,
    wake: Arc<Notify>,
    recorder: Recorder,
}

impl QueueLoop {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let permits = if self.entry.urgent {
            self.settings.urgent_concurrency
        } else {
            self.settings.concurrency
        };
        let permits = permits.max(1);
        let sem = Arc::new(Semaphore::new(permits));
        let mut running = JoinSet::new();
        let span = tracing::info_span!("queue", queue = self.entry.queue);
        // Whether the last fetch filled every free slot: there is a backlog.
        let mut backlog = false;
        loop {
            while running.try_join_next().is_some() {}
            let first = tokio::select! {
                p = sem.clone().acquire_owned() => p.expect("semaphore never closes"),
                _ = stop.changed() => break,
            };
            if backlog {
                // Under a backlog, slots free up one job at a time; fetching for each would
                // cost a claim transaction per job (pg_stat_statements showed fetching as the
                // drain's biggest cost). Wait briefly for a quarter of the slots instead. Only
                // this loop takes permits, so the ones gathered here are still free below.
                let more = (permits / 4).saturating_sub(1) as u32;
                if more > 0 {
                    let _ = tokio::time::timeout(GATHER, sem.acquire_many(more)).await;
                }
            }
            let want = (1 + sem.available_permits()).min(self.settings.batch_size);
            let tasks = match fetch(&self.ctx.pool, self.entry.queue, &self.worker, want).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(parent: &span, error = %e, "fetching jobs failed; retrying");
                    drop(first);
                    tokio::select! {
                        _ = tokio::time::sleep(self.settings.poll_interval) => continue,
                        _ = stop.changed() => break,
                    }
                }
            };
            backlog = tasks.len() == want;
            if tasks.is_empty() {
                drop(first);
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = stop.changed() => break,
                }
                continue;
            }
            let mut permit = Some(first);
            for task in tasks {
                let p = match permit.take() {
                    Some(p) => p,
                    None => sem
                        .clone()
                        .try_acquire_owned()
                        .expect("fetched no more than free permits"),
                };
                let (ctx, entry, worker, recorder) = (
                    self.ctx.clone(),
                    self.entry.clone(),
                    self.worker.clone(),
                    self.recorder.clone(),
                );
                running.spawn(
                    async move {
                        execute(&ctx, &recorder, &entry, &worker, task).await;
                        drop(p);
                    }
                    .instrument(span.clone()),
                );
            }
        }
        let grace = tokio::time::sleep(self.settings.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = running.join_next() => if next.is_none() { break },
                _ = &mut grace => {
                    tracing::warn!(parent: &span, left = running.len(), "grace period over; leaving jobs to orphan recovery");
                    running.abort_all();
                    break;
                }
            }
        }
    }
}

/// A job claimed by this worker: what running and recording it needs.
#[derive(sqlx::FromRow)]
struct Claimed {
    id: String,
    /// The encoded job.
    #[sqlx(rename = "job")]
    args: Vec<u8>,
    /// Runs so far (`apalis.jobs.attempts`).
    attempts: i32,
    max_attempts: i32,
    metadata: Option<PgHstore>,
}

impl Claimed {
    fn meta(&self, key: &str) -> Option<String> {
        self.metadata.as_ref()?.get(key).cloned().flatten()
    }
}

/// Claims up to `n` due jobs of `queue` for `worker` and marks them running, in ONE prepared
/// statement: the rows apalis' `get_jobs` would pick (same predicate and order, so its partial
/// index `idx_apalis_jobs_fetch_partial` serves it), set `Running` as its `lock_tasks` would.
/// `get_jobs` is a SQL function, planned again on every call: with `lock_tasks` after it, the
/// pair cost about 2.7 ms of database time per fetch, the drain's largest cost
/// (BENCHMARKS.md). One statement is also atomic: no job is ever left claimed but not running.
async fn fetch(
    pool: &PgPool,
    queue: &str,
    worker: &str,
    n: usize,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE apalis.jobs AS j SET status = 'Running', lock_by = $1, lock_at = now() \
         FROM (SELECT id FROM apalis.jobs \
               WHERE job_type = $2 AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts)) \
                 AND run_at < now() \
               ORDER BY priority DESC, run_at ASC LIMIT $3 FOR UPDATE SKIP LOCKED) AS due \
         WHERE j.id = due.id \
         RETURNING j.id, j.job, j.attempts, j.max_attempts, j.metadata",
    )
    .bind(worker)
    .bind(queue)
    .bind(n.max(1) as i64)
    .fetch_all(pool)
    .await
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

/// Runs one task and records its outcome. Never panics and never loses the result: a
/// panicking handler counts as a retryable failure.
async fn execute(
    ctx: &JobContext,
    recorder: &Recorder,
    entry: &Entry,
    worker: &str,
    task: Claimed,
) -> RunOutcome {
    let id = task.id.clone();
    let attempts_before = task.attempts.max(0) as u32;
    let max_attempts = if task.max_attempts > 0 {
        task.max_attempts as u32
    } else {
        entry.max_attempts
    };
    let svix = task.meta("svix_id");
    let request_id = task.meta("request_id");
    let span = tracing::info_span!("job", job_id = %id, queue = entry.queue, svix_id = svix.as_deref(), request_id = request_id.as_deref(), attempt = attempts_before + 1);
    async move {
        let started = Instant::now();
        let executed = AssertUnwindSafe(super::with_job_id(id.clone(), entry.run(ctx.clone(), task.args)))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Executed {
                origin: None,
                result: Err(JobError::Retryable {
                    source: anyhow::anyhow!("job handler panicked"),
                    retry_after: None,
                }),
            });
        let svix_id = executed
            .origin
            .as_ref()
            .and_then(|o| o.svix_id.as_ref())
            .map(|s| s.to_string())
            .or(svix);
        let outcome = recorder
            .record(Finished::new(
                &id,
                worker,
                attempts_before + 1,
                max_attempts,
                svix_id,
                entry.urgent,
                &executed.result,
            ))
            .await;
        let ms = started.elapsed().as_millis() as u64;
        metrics::counter!("authsync_jobs_total", "queue" => entry.queue, "outcome" => outcome.name())
            .increment(1);
        metrics::histogram!("authsync_job_duration_seconds", "queue" => entry.queue)
            .record(started.elapsed().as_secs_f64());
        match (&executed.result, outcome) {
            (Ok(()), _) => tracing::info!(ms, "job succeeded"),
            (Err(e), RunOutcome::Retrying) => {
                tracing::warn!(ms, error = %e, "job failed; will retry")
            }
            (Err(e), _) => tracing::error!(ms, error = %e, ?outcome, "job failed for good"),
        }
        outcome
    }
    .instrument(span)
    .await
}

/// One finished run of a job, classified and ready to be written.
struct Finished {
    id: String,
    worker: String,
    outcome: RunOutcome,
    /// `apalis.jobs.status` to write.
    status: &'static str,
    last_result: serde_json::Value,
    /// Backoff before the next run (retries only).
    delay_ms: Option<i64>,
    error: Option<String>,
    /// The webhook event to keep up to date.
    svix_id: Option<String>,
    /// Announce the result on `JOB_DONE_CHANNEL` (urgent jobs).
    announce: bool,
}

impl Finished {
    /// Classifies run number `attempt` (1-based) of job `id`: success, a retry after a backoff,
    /// or final failure.
    fn new(
        id: &str,
        worker: &str,
        attempt: u32,
        max_attempts: u32,
        svix_id: Option<String>,
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
            (RunOutcome::Succeeded, _) => ("Done", serde_json::json!({"Ok": null})),
            (RunOutcome::Killed, Some(e)) => ("Killed", serde_json::json!({"Err": e})),
            (_, e) => ("Failed", serde_json::json!({"Err": e})),
        };
        Self {
            id: id.to_owned(),
            worker: worker.to_owned(),
            outcome,
            status,
            last_result,
            delay_ms: delay.map(|d| d.as_millis() as i64),
            error,
            svix_id,
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
            svix_id: self.svix_id.clone(),
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
struct Recorder {
    tx: mpsc::Sender<(Finished, oneshot::Sender<()>)>,
}

impl Recorder {
    fn spawn(pool: PgPool) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4 * RECORD_BATCH);
        (Self { tx }, tokio::spawn(write_results(pool, rx)))
    }

    /// Hands a result over and waits until it is written (or found no longer ours). The job
    /// keeps its concurrency slot meanwhile, so a database outage stops fetching too.
    async fn record(&self, run: Finished) -> RunOutcome {
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

async fn write_results(pool: PgPool, mut rx: mpsc::Receiver<(Finished, oneshot::Sender<()>)>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while rx.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let runs: Vec<&Finished> = batch.iter().map(|(f, _)| f).collect();
        let mut given_up = Vec::new();
        let held = match write_retrying(&pool, &runs).await {
            Ok(held) => held,
            // One refused row fails the whole statement: write the results one at a time, so
            // it cannot hold up the others.
            Err(e) => {
                tracing::warn!(error = %e, results = runs.len(), "the database refused a batch of job results; recording them one by one");
                let mut held = Vec::new();
                for run in runs {
                    match write_alone(&pool, run).await {
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
async fn write_alone(pool: &PgPool, run: &Finished) -> Option<Vec<String>> {
    let mut e = match write_retrying(pool, &[run]).await {
        Ok(held) => return Some(held),
        Err(e) => e,
    };
    if run.error.is_some() {
        tracing::error!(job_id = %run.id, error = %e, original = ?run.error, "the database refused this job's error text; storing the outcome without it");
        let plain = run.with_error(format!(
            "the job's error could not be stored ({e}); see the worker's log"
        ));
        match write_retrying(pool, &[&plain]).await {
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
async fn write_retrying(pool: &PgPool, runs: &[&Finished]) -> Result<Vec<String>, sqlx::Error> {
    let mut wait = Duration::from_millis(250);
    loop {
        match record(pool, runs).await {
            Ok(held) => return Ok(held),
            Err(e) if crate::db::refused(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, ?wait, "recording job results failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Writes results and their webhook events' progress in ONE statement, for the jobs each run's
/// worker still holds (a job recovered from us and taken by another worker is theirs to
/// record). Returns the ids written. Several results of one event are summed: attempts,
/// finished jobs; any final failure marks the event failed, and its error is the one kept.
/// Event rows are locked in svix-id order first, so two processes writing results of the same
/// events wait for each other instead of deadlocking.
async fn record(pool: &PgPool, runs: &[&Finished]) -> Result<Vec<String>, sqlx::Error> {
    const SQL: &str = "\
        WITH r AS (\
          SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::bigint[], \
                               $6::text[], $7::text[], $8::text[], $9::boolean[]) \
            AS r (id, worker, status, last_result, delay_ms, svix_id, outcome, error, announce)), \
        done AS (\
          UPDATE apalis.jobs AS j SET status = r.status, attempts = j.attempts + 1, \
            last_result = r.last_result, done_at = now(), lock_by = NULL, \
            run_at = CASE WHEN r.delay_ms IS NULL THEN j.run_at \
                          ELSE now() + make_interval(secs => r.delay_ms / 1000.0) END \
          FROM r WHERE j.id = r.id AND j.lock_by = r.worker \
          RETURNING j.id, r.svix_id, r.outcome, r.error, r.announce), \
        per_event AS (\
          SELECT svix_id, count(*)::int AS runs, \
                 count(*) FILTER (WHERE outcome = 'succeeded')::int AS ok, \
                 bool_or(outcome IN ('exhausted', 'killed')) AS failed, \
                 (array_agg(error ORDER BY outcome IN ('exhausted', 'killed') DESC) \
                    FILTER (WHERE error IS NOT NULL))[1] AS error \
          FROM done WHERE svix_id IS NOT NULL GROUP BY svix_id), \
        locked AS MATERIALIZED (\
          SELECT w.svix_id FROM webhook_events AS w JOIN per_event USING (svix_id) \
          ORDER BY w.svix_id FOR NO KEY UPDATE OF w), \
        events AS (\
          UPDATE webhook_events AS w SET attempts = w.attempts + e.runs, \
            pending_jobs = GREATEST(w.pending_jobs - e.ok, 0), \
            last_error = CASE WHEN w.status = 'failed' AND NOT e.failed THEN w.last_error \
                              ELSE COALESCE(e.error, w.last_error) END, \
            status = CASE WHEN e.failed THEN 'failed' \
                          WHEN e.ok > 0 AND w.status = 'queued' AND w.pending_jobs <= e.ok THEN 'processed' \
                          ELSE w.status END, \
            processed_at = CASE WHEN NOT e.failed AND e.ok > 0 AND w.status = 'queued' \
                                     AND w.pending_jobs <= e.ok THEN now() \
                                ELSE w.processed_at END \
          FROM per_event AS e JOIN locked USING (svix_id) WHERE w.svix_id = e.svix_id) \
        SELECT id, CASE WHEN announce THEN pg_notify($10, id)::text END AS announced FROM done";
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let workers: Vec<&str> = runs.iter().map(|r| r.worker.as_str()).collect();
    let statuses: Vec<&str> = runs.iter().map(|r| r.status).collect();
    let results: Vec<&serde_json::Value> = runs.iter().map(|r| &r.last_result).collect();
    let delays: Vec<Option<i64>> = runs.iter().map(|r| r.delay_ms).collect();
    let svix: Vec<Option<&str>> = runs.iter().map(|r| r.svix_id.as_deref()).collect();
    let outcomes: Vec<&str> = runs.iter().map(|r| r.outcome.name()).collect();
    let errors: Vec<Option<&str>> = runs.iter().map(|r| r.error.as_deref()).collect();
    let announce: Vec<bool> = runs.iter().map(|r| r.announce).collect();
    sqlx::query_scalar(SQL)
        .bind(ids)
        .bind(workers)
        .bind(statuses)
        .bind(results)
        .bind(delays)
        .bind(svix)
        .bind(outcomes)
        .bind(errors)
        .bind(announce)
        .bind(super::JOB_DONE_CHANNEL)
        .fetch_all(pool)
        .await
}

/// What [`drain`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainReport {
    pub succeeded: usize,
    pub retrying: usize,
    pub exhausted: usize,
    pub killed: usize,
}

/// Runs every due job of every registered queue in this task until none is due: the test
/// harness' way to drive the queue without sleeping. Retries whose backoff has not elapsed
/// are left for later and counted in `retrying`.
pub async fn drain(ctx: &JobContext, registry: &Registry) -> Result<DrainReport, sqlx::Error> {
    let instance = format!("drain-{}", instance_name());
    let mut report = DrainReport::default();
    let (recorder, _writer) = Recorder::spawn(ctx.pool.clone());
    for e in registry.entries() {
        register(&ctx.pool, e.queue, &worker_id(e.queue, &instance)).await?;
    }
    loop {
        let mut ran = 0;
        for entry in registry.entries() {
            let worker = worker_id(entry.queue, &instance);
            let tasks = fetch(&ctx.pool, entry.queue, &worker, 50).await?;
            ran += tasks.len();
            let outcomes = futures::future::join_all(
                tasks
                    .into_iter()
                    .map(|t| execute(ctx, &recorder, entry, &worker, t)),
            )
            .await;
            for o in outcomes {
                match o {
                    RunOutcome::Succeeded => report.succeeded += 1,
                    RunOutcome::Retrying => report.retrying += 1,
                    RunOutcome::Exhausted => report.exhausted += 1,
                    RunOutcome::Killed => report.killed += 1,
                }
            }
        }
        if ran == 0 {
            return Ok(report);
        }
    }
}
