//! Wakes long-polling requests when an urgent job records a result: one LISTEN connection per
//! api process, fanned out to the requests waiting on that job id. No request queries in a
//! loop; a lost connection is re-established and every waiter is woken to re-read its job.

use jobs::queue::JOB_DONE_CHANNEL;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct JobWaiters {
    waiting: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl JobWaiters {
    /// The notifier for `job_id`; keep it while waiting.
    pub fn subscribe(&self, job_id: &str) -> Arc<Notify> {
        self.waiting
            .lock()
            .unwrap()
            .entry(job_id.to_owned())
            .or_default()
            .clone()
    }

    /// Drops the entry once nobody waits on it any more.
    pub fn release(&self, job_id: &str, notify: Arc<Notify>) {
        let mut map = self.waiting.lock().unwrap();
        drop(notify);
        if map.get(job_id).is_some_and(|n| Arc::strong_count(n) == 1) {
            map.remove(job_id);
        }
    }

    fn wake(&self, job_id: &str) {
        if let Some(n) = self.waiting.lock().unwrap().get(job_id) {
            n.notify_waiters();
        }
    }

    fn wake_all(&self) {
        self.waiting
            .lock()
            .unwrap()
            .values()
            .for_each(|n| n.notify_waiters());
    }

    /// Runs the listener until the process ends.
    pub fn spawn_listener(&self, pool: PgPool) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let listener = match PgListener::connect_with(&pool).await {
                    Ok(mut l) => l.listen(JOB_DONE_CHANNEL).await.map(|_| l),
                    Err(e) => Err(e),
                };
                match listener {
                    Ok(mut l) => {
                        this.wake_all();
                        loop {
                            match l.try_recv().await {
                                Ok(Some(n)) => this.wake(n.payload()),
                                Ok(None) => this.wake_all(),
                                Err(_) => break,
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "job-result listener unavailable; retrying")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}
