//! LISTEN with reconnects, for both listeners of the runtime: the workers' (job inserts, woken
//! per queue: [`Wakers`], [`listen_for_jobs`]) and the api's (results of urgent jobs:
//! [`super::job_done`]). A lost connection is re-established, and everything is woken after a
//! reconnect because notifications sent meanwhile are gone. Behind a transaction pooler
//! without `DATABASE_DIRECT_URL` there is no session to LISTEN on: then only polling wakes.

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// What a listener heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard<'a> {
    /// One notification, with its payload.
    Notification(&'a str),
    /// Anything may have happened (a (re)connect, or a poll without LISTEN): re-check all.
    Everything,
}

/// LISTENs on `channel` over [`crate::db::session_pool`] until `stop` resolves, reporting to
/// `heard`. Without a session to LISTEN on, reports [`Heard::Everything`] every `poll` (or
/// nothing, when `poll` is `None`: the listener's users poll on their own).
pub(crate) async fn listen(
    pool: PgPool,
    channel: &'static str,
    poll: Option<Duration>,
    mut heard: impl FnMut(Heard<'_>) + Send,
    stop: impl Future<Output = ()> + Send,
) {
    tokio::pin!(stop);
    let Some(pool) = crate::db::session_pool(&pool) else {
        tracing::info!(
            channel,
            "transaction pooler without DATABASE_DIRECT_URL: polling instead of LISTEN"
        );
        let Some(poll) = poll else {
            return stop.await;
        };
        let mut tick = tokio::time::interval(poll);
        loop {
            tokio::select! {
                _ = tick.tick() => heard(Heard::Everything),
                _ = &mut stop => return,
            }
        }
    };
    loop {
        let listener = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(channel).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match listener.await {
            Ok(mut listener) => {
                heard(Heard::Everything);
                loop {
                    tokio::select! {
                        n = listener.try_recv() => match n {
                            Ok(Some(n)) => heard(Heard::Notification(n.payload())),
                            // The connection was lost; sqlx reconnects on the next call.
                            Ok(None) => heard(Heard::Everything),
                            Err(e) => {
                                tracing::warn!(channel, error = %e, "listener failed; reconnecting");
                                break;
                            }
                        },
                        _ = &mut stop => return,
                    }
                }
            }
            Err(e) => {
                tracing::warn!(channel, error = %e, "LISTEN unavailable; polling until it works")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = &mut stop => return,
        }
    }
}

/// One [`Notify`] per queue of a worker process.
#[derive(Clone)]
pub(crate) struct Wakers(Arc<HashMap<&'static str, Arc<Notify>>>);

impl Wakers {
    pub(crate) fn new(queues: Vec<&'static str>) -> Self {
        Self(Arc::new(
            queues
                .into_iter()
                .map(|q| (q, Arc::new(Notify::new())))
                .collect(),
        ))
    }

    pub(crate) fn get(&self, queue: &str) -> Arc<Notify> {
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

/// The workers' listener: turns [`super::JOB_INSERT_CHANNEL`] notifications into per-queue
/// wake-ups until `stop` changes. The queue loops' own poll covers whatever no notification
/// announces (retries coming due, recovered orphans, and everything without LISTEN).
pub(crate) async fn listen_for_jobs(pool: PgPool, wakers: Wakers, mut stop: watch::Receiver<bool>) {
    let heard = |h: Heard<'_>| match h {
        Heard::Notification(payload) => {
            if let Ok(ev) = serde_json::from_str::<Insert>(payload) {
                wakers.wake(&ev.job_type);
            }
        }
        Heard::Everything => wakers.wake_all(),
    };
    let stop = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    listen(pool, super::JOB_INSERT_CHANNEL, None, heard, stop).await
}
