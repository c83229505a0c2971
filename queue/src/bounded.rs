//! Bounds on the queue runtime's own statements (claims, results, heartbeats), so one hung
//! statement cannot stall a worker process for good. Each runs in its own transaction opened
//! with `SET LOCAL lock_timeout / statement_timeout` (per transaction, never session state:
//! transaction poolers), and under a client-side backstop a little longer than the statement
//! timeout, for what the server cannot end itself: a dead socket, a stalled server.
//!
//! Every caller already treats an error as "try again later": a failed claim waits one poll
//! interval, a failed result write backs off and retries (the job keeps its slot meanwhile),
//! a failed heartbeat is logged and the next one follows.

use crate::db::TxLimits;
use std::future::Future;
use std::time::Duration;

/// Claiming due jobs. The claim skips locked rows (`SKIP LOCKED`), so it only waits for a lock
/// on the table itself; it normally takes a millisecond.
pub(crate) const CLAIM: TxLimits = TxLimits::new(2_000, 10_000);
/// Writing a batch of results: it locks the jobs' webhook events, which intake, operator
/// routes and other workers' result writes hold for milliseconds. A timeout is retried.
pub(crate) const RESULTS: TxLimits = TxLimits::new(5_000, 15_000);
/// Heartbeats, registration, orphan recovery, marking the instance dead at shutdown: short
/// enough that a slow beat still lands well within `dead_after` (20 s by default).
pub(crate) const HEARTBEAT: TxLimits = TxLimits::new(2_000, 8_000);

/// How much longer than its `statement_timeout` a transaction may take on the client's clock.
const BACKSTOP_MARGIN: Duration = Duration::from_secs(5);

/// Runs `work` (which opens its transaction with `limits` through [`crate::db::begin`]),
/// giving up after the backstop with a timed-out I/O error.
pub(crate) async fn bounded<T>(
    limits: TxLimits,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let backstop = limits.statement_timeout + BACKSTOP_MARGIN;
    match tokio::time::timeout(backstop, work).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from the database within {backstop:?}"),
        ))),
    }
}
