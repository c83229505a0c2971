//! The set of job types a worker serves ([`Registry`]), built by the application in one
//! function (authsync: `jobs::queue::registry`).

use crate::db::TxLimits;
use crate::error::JobError;
use crate::job::{Context, Job};
use futures::future::BoxFuture;
use std::sync::Arc;

type Exec<C> = Arc<dyn Fn(C, Vec<u8>) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync>;

/// One registered queue.
pub struct Entry<C> {
    pub queue: &'static str,
    pub max_attempts: u32,
    pub urgent: bool,
    /// [`Job::DEADLINE`].
    pub deadline: std::time::Duration,
    /// [`Job::DB_LIMITS`].
    pub limits: TxLimits,
    exec: Exec<C>,
}

impl<C> Clone for Entry<C> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue,
            max_attempts: self.max_attempts,
            urgent: self.urgent,
            deadline: self.deadline,
            limits: self.limits,
            exec: self.exec.clone(),
        }
    }
}

impl<C: Context> Entry<C> {
    /// Decodes and runs one task payload, its transactions bounded by the job's limits.
    pub fn run(&self, ctx: C, payload: Vec<u8>) -> BoxFuture<'static, Result<(), JobError>> {
        (self.exec)(ctx.with_limits(self.limits), payload)
    }
}

/// The set of queues a worker serves, for jobs run with context `C`.
pub struct Registry<C> {
    entries: Vec<Entry<C>>,
}

impl<C> Default for Registry<C> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<C> Clone for Registry<C> {
    fn clone(&self) -> Self {
        Self {
            entries: self.entries.clone(),
        }
    }
}

impl<C: Context> Registry<C> {
    /// Adds a job type. A payload that does not decode fails fatally: retrying cannot fix it.
    pub fn register<J: Job<Context = C>>(&mut self) -> &mut Self {
        assert!(
            self.entries.iter().all(|e| e.queue != J::QUEUE),
            "queue {} registered twice",
            J::QUEUE
        );
        let exec: Exec<C> = Arc::new(|ctx, payload| {
            Box::pin(async move {
                match crate::json_error::from_slice::<J>(&payload) {
                    Ok(job) => job.handle(&ctx).await,
                    Err(e) => Err(JobError::Fatal(anyhow::anyhow!(
                        "job payload does not decode: {e}"
                    ))),
                }
            })
        });
        self.entries.push(Entry {
            queue: J::QUEUE,
            max_attempts: J::MAX_ATTEMPTS,
            urgent: J::URGENT,
            deadline: J::DEADLINE,
            limits: J::DB_LIMITS,
            exec,
        });
        self
    }
}

impl<C> Registry<C> {
    pub fn entries(&self) -> &[Entry<C>] {
        &self.entries
    }

    pub fn queues(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.queue).collect()
    }
}
