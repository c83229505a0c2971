//! Executes jobs: the worker pool of a process, with a claim loop per queue with bounded
//! concurrency ([`crate::claim`]), each attempt cut off at its job's deadline, results handed
//! to the completer ([`crate::completer`]), heartbeats and orphan recovery
//! ([`crate::rescuer`]), wake-ups ([`crate::wake`]), graceful shutdown.

use crate::claim::{fetch, Claimed};
pub use crate::completer::RunOutcome;
use crate::completer::{Finished, Recorder};
use crate::error::JobError;
use crate::job::{Context, Metadata};
use crate::registry::{Entry, Registry};
use crate::rescuer::{heartbeat, register, touch, worker_id};
use crate::{instance_name, wake};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify, Semaphore};
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

/// A process' workers: one per registered queue, all sharing one wake-up listener and one
/// completer, which runs the context's [`Context::completion_hook`] with every result.
pub struct WorkerPool<C> {
    ctx: C,
    registry: Registry<C>,
    settings: WorkerSettings,
    instance: String,
}

impl<C: Context> WorkerPool<C> {
    pub fn new(ctx: C, registry: Registry<C>, settings: WorkerSettings) -> Self {
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
        let pool = self.ctx.pool().clone();
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
        // The error counters exist from the start: a scrape shows 0, not nothing.
        for step in ["claim", "result"] {
            metrics::counter!("authsync_queue_errors_total", "step" => step).increment(0);
        }

        let (stop_tx, stop_rx) = watch::channel(false);
        let wakers = wake::Wakers::new(self.registry.queues());
        let (recorder, writer) = Recorder::spawn(pool.clone(), self.ctx.completion_hook());
        let mut tasks = JoinSet::new();
        tasks.spawn(wake::listen_for_jobs(
            pool.clone(),
            wakers.clone(),
            stop_rx.clone(),
        ));
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
        let _ = touch(&pool, &names, true).await;
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// How long a queue loop with a backlog waits to gather free slots before fetching.
const GATHER: Duration = Duration::from_millis(5);

struct QueueLoop<C> {
    ctx: C,
    entry: Entry<C>,
    worker: String,
    settings: WorkerSettings,
    wake: Arc<Notify>,
    recorder: Recorder,
}

impl<C: Context> QueueLoop<C> {
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
            let tasks = match fetch(self.ctx.pool(), self.entry.queue, &self.worker, want).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(parent: &span, error = %e, "fetching jobs failed; retrying");
                    metrics::counter!("authsync_queue_errors_total", "step" => "claim")
                        .increment(1);
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

/// Runs one task and records its outcome. Never panics and never loses the result: a
/// panicking handler counts as a retryable failure, and so does one still running at its
/// job's deadline, which is dropped there (its open transaction rolls back) so its slot is
/// free as soon as the failure is recorded.
pub(crate) async fn execute<C: Context>(
    ctx: &C,
    recorder: &Recorder,
    entry: &Entry<C>,
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
    let meta = Metadata::from_hstore(task.metadata);
    let span = tracing::info_span!("job", job_id = %id, queue = entry.queue, request_id = meta.get(Metadata::REQUEST_ID), meta = %meta, attempt = attempts_before + 1);
    async move {
        let started = Instant::now();
        let attempt = AssertUnwindSafe(crate::with_job_id(
            id.clone(),
            entry.run(ctx.clone(), task.args),
        ))
        .catch_unwind();
        let result = match tokio::time::timeout(entry.deadline, attempt).await {
            Ok(Ok(result)) => result,
            Ok(Err(_panic)) => Err(JobError::Retryable {
                source: anyhow::anyhow!("job handler panicked"),
                retry_after: None,
            }),
            Err(_elapsed) => Err(JobError::deadline_exceeded(entry.deadline)),
        };
        let outcome = recorder
            .record(Finished::new(
                &id,
                worker,
                attempts_before + 1,
                max_attempts,
                entry.urgent,
                &result,
            ))
            .await;
        let ms = started.elapsed().as_millis() as u64;
        metrics::counter!("authsync_jobs_total", "queue" => entry.queue, "outcome" => outcome.name())
            .increment(1);
        metrics::histogram!("authsync_job_duration_seconds", "queue" => entry.queue)
            .record(started.elapsed().as_secs_f64());
        match (&result, outcome) {
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
