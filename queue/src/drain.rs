//! [`drain`]: the test harness' way to run the queue without a worker pool or sleeping.

use crate::claim::fetch;
use crate::completer::{Recorder, RunOutcome};
use crate::instance_name;
use crate::job::Context;
use crate::registry::Registry;
use crate::rescuer::{register, worker_id};
use crate::runner::execute;

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
/// Results are written with the context's completion hook, as a worker writes them.
pub async fn drain<C: Context>(
    ctx: &C,
    registry: &Registry<C>,
) -> Result<DrainReport, sqlx::Error> {
    let instance = format!("drain-{}", instance_name());
    let mut report = DrainReport::default();
    let pool = ctx.pool();
    let (recorder, _writer) = Recorder::spawn(pool.clone(), ctx.completion_hook());
    for e in registry.entries() {
        register(pool, e.queue, &worker_id(e.queue, &instance)).await?;
    }
    loop {
        let mut ran = 0;
        for entry in registry.entries() {
            let worker = worker_id(entry.queue, &instance);
            let tasks = fetch(pool, entry.queue, &worker, 50).await?;
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
