//! Wake-ups sent after commit, coalesced. apalis-postgres' insert trigger sent one `pg_notify`
//! per job row inside the inserting transaction; a NOTIFY makes its commit take a cluster-wide
//! lock, so every intake transaction queued behind every other (BENCHMARKS.md measures it).
//! Migration 0006 drops that trigger; whoever commits jobs calls [`Notifier::wake`] instead.
//! One task per process sends the NOTIFYs on its own connection, one statement for all queues
//! woken meanwhile, so a burst of commits costs one NOTIFY, not one each.
//!
//! A wake-up is a hint: if it is lost (connection trouble, crash right after commit), the
//! workers' poll still finds the job within its interval.

use sqlx::{Connection, PgConnection, PgPool};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;

use super::JOB_INSERT_CHANNEL as CHANNEL;

#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    pending: Mutex<BTreeSet<String>>,
    signal: Notify,
    started: OnceLock<()>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier")
    }
}

impl Notifier {
    /// The task starts on the first wake-up (inside the runtime).
    pub fn new(pool: PgPool) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                pending: Mutex::new(BTreeSet::new()),
                signal: Notify::new(),
                started: OnceLock::new(),
            }),
        }
    }

    /// Announces committed jobs on `queue` to every worker process. Call after the commit.
    pub fn wake(&self, queue: &str) {
        self.wake_all([queue]);
    }

    /// [`Notifier::wake`] for several queues.
    pub fn wake_all<'q>(&self, queues: impl IntoIterator<Item = &'q str>) {
        let mut added = false;
        {
            let mut pending = self.inner.pending.lock().expect("notifier lock");
            for q in queues {
                if !pending.contains(q) {
                    pending.insert(q.to_owned());
                    added = true;
                }
            }
        }
        if !added {
            // Queued for the next NOTIFY already.
            return;
        }
        self.inner.started.get_or_init(|| {
            // The task holds a weak reference: it ends when the last Notifier is dropped.
            tokio::spawn(run(Arc::downgrade(&self.inner)));
        });
        self.inner.signal.notify_one();
    }
}

async fn run(inner: std::sync::Weak<Inner>) {
    let mut conn: Option<PgConnection> = None;
    loop {
        let signalled = {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            // Holds the Notifier at most 5 s at a time, so the task ends after the last drop.
            let notified = async move { strong.signal.notified().await };
            tokio::time::timeout(Duration::from_secs(5), notified).await
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if signalled.is_err() {
            continue;
        }
        let queues: Vec<String> =
            std::mem::take(&mut *inner.pending.lock().expect("notifier lock"))
                .into_iter()
                .collect();
        if queues.is_empty() {
            continue;
        }
        if let Err(e) = send(&inner.pool, &mut conn, &queues).await {
            // The workers' poll covers what this would have announced.
            tracing::debug!(error = %e, "wake-up NOTIFY failed");
            conn = None;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn send(
    pool: &PgPool,
    conn: &mut Option<PgConnection>,
    queues: &[String],
) -> Result<(), sqlx::Error> {
    const NOTIFY: &str =
        "SELECT pg_notify($1, json_build_object('job_type', q)::text) FROM unnest($2::text[]) AS q";
    // Behind a transaction pooler the connection has no session of its own: the setting is
    // per transaction and the statement unnamed, inside it.
    let pooled = crate::db::pooler();
    if conn.is_none() {
        let mut c = PgConnection::connect_with(pool.connect_options().as_ref()).await?;
        if !pooled {
            // A hint, not data: its commit need not wait for the disk.
            sqlx::raw_sql("SET synchronous_commit = off")
                .execute(&mut c)
                .await?;
        }
        *conn = Some(c);
    }
    let c = conn.as_mut().expect("connected above");
    if pooled {
        let mut tx =
            sqlx::Connection::begin_with(c, "BEGIN; SET LOCAL synchronous_commit = off").await?;
        let notify = crate::db::query(NOTIFY).bind(CHANNEL).bind(queues);
        notify.execute(&mut *tx).await?;
        tx.commit().await?;
    } else {
        let notify = crate::db::query(NOTIFY).bind(CHANNEL).bind(queues);
        notify.execute(c).await?;
    }
    Ok(())
}
