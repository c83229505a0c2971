//! Prompt wake-ups: one LISTEN connection per process turns apalis' insert notifications
//! into a per-queue [`Notify`]. A lost connection is re-established, and every queue is woken
//! after a reconnect because notifications sent meanwhile are gone. The queue loops' own poll
//! covers whatever no notification announces (retries coming due, recovered orphans).

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// apalis-postgres' insert trigger notifies on this channel with `{job_type, id, run_at}`.
pub const CHANNEL: &str = "apalis::job::insert";

#[derive(Clone)]
pub struct Wakers(Arc<HashMap<&'static str, Arc<Notify>>>);

impl Wakers {
    pub fn new(queues: Vec<&'static str>) -> Self {
        Self(Arc::new(
            queues
                .into_iter()
                .map(|q| (q, Arc::new(Notify::new())))
                .collect(),
        ))
    }

    pub fn get(&self, queue: &str) -> Arc<Notify> {
        self.0.get(queue).cloned().expect("queue registered")
    }

    fn wake(&self, queue: &str) {
        if let Some(n) = self.0.get(queue) {
            n.notify_one();
        }
    }

    fn wake_all(&self) {
        self.0.values().for_each(|n| n.notify_one());
    }
}

#[derive(serde::Deserialize)]
struct Insert {
    job_type: String,
}

/// LISTENs over [`crate::db::session_pool`]; behind a transaction pooler without
/// `DATABASE_DIRECT_URL` there is no session to LISTEN on, and the queues' poll alone wakes them.
pub async fn listen(pool: PgPool, wakers: Wakers, mut stop: watch::Receiver<bool>) {
    let Some(pool) = crate::db::session_pool(&pool) else {
        tracing::info!("transaction pooler without DATABASE_DIRECT_URL: workers poll for jobs");
        let _ = stop.wait_for(|s| *s).await;
        return;
    };
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(mut l) => match l.listen(CHANNEL).await {
                Ok(()) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN failed; polling until it works");
                    if wait_or_stop(&mut stop).await {
                        return;
                    }
                    continue;
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "listener connection failed; polling until it works");
                if wait_or_stop(&mut stop).await {
                    return;
                }
                continue;
            }
        };
        wakers.wake_all();
        loop {
            tokio::select! {
                n = listener.try_recv() => match n {
                    Ok(Some(n)) => {
                        if let Ok(ev) = serde_json::from_str::<Insert>(n.payload()) {
                            wakers.wake(&ev.job_type);
                        }
                    }
                    // The connection was lost; sqlx reconnects on the next call.
                    Ok(None) => wakers.wake_all(),
                    Err(e) => {
                        tracing::warn!(error = %e, "listener failed; reconnecting");
                        break;
                    }
                },
                _ = stop.changed() => return,
            }
        }
        if wait_or_stop(&mut stop).await {
            return;
        }
    }
}

/// Sleeps a second; true when asked to stop meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(1)) => false,
        _ = stop.changed() => true,
    }
}
