//! Results of urgent jobs, as they are written: the completer announces each on
//! [`super::JOB_DONE_CHANNEL`] (payload: the job id); an api process listens here and wakes
//! the long-polling requests waiting on that job (their bookkeeping is the api's).

use super::listen::{listen, Heard};
use sqlx::PgPool;
use std::time::Duration;

/// Runs a listener for job results until the process ends, calling `heard` with each finished
/// job's id ([`Heard::Notification`]), or with [`Heard::Everything`] after a (re)connect, and
/// every `poll` when no LISTEN is possible (transaction pooler without `DATABASE_DIRECT_URL`).
pub fn spawn_job_done_listener(
    pool: PgPool,
    poll: Duration,
    heard: impl FnMut(Heard<'_>) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(listen(
        pool,
        super::JOB_DONE_CHANNEL,
        Some(poll),
        heard,
        std::future::pending(),
    ))
}
