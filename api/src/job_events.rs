//! Wakes long-polling requests when an urgent job records a result: the queue runtime's
//! job-done listener (one LISTEN connection per api process, `jobs::queue::wake`), fanned out
//! here to the requests waiting on that job id. No request queries in a loop; after a lost
//! connection every waiter is woken to re-read its job.
//!
//! Waits are also rationed, so a burst of long-polls stays cheap: at most
//! [`WaitLimits::per_user`] open waits per user and [`WaitLimits::total`] per process (beyond
//! that `429 too_many_waiters`, answered before any query), and the waits' queries share a
//! fixed part of the pool (half of it), so the rest stays free for other requests. A request
//! that presents the very token of an open wait (verified when that wait was admitted) is
//! refused without verifying it again: one user's flood then costs no signature checks, which
//! on a debug build made the difference between 2 s and 0.5 s of webhook latency during it.

use jobs::queue::wake::{spawn_job_done_listener, Heard};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

/// How often open long-polls re-read their job when no LISTEN is possible (transaction pooler
/// without `DATABASE_DIRECT_URL`): the extra latency a waiting user sees, at most.
pub const POLL_WITHOUT_LISTEN: Duration = Duration::from_millis(500);

/// How many long-polls may be open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitLimits {
    /// Per signed-in user (a few browser tabs).
    pub per_user: usize,
    /// Per api process.
    pub total: usize,
}

impl Default for WaitLimits {
    fn default() -> Self {
        Self {
            per_user: 4,
            total: 1_000,
        }
    }
}

/// Which limit a refused wait ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooManyWaiters {
    /// This user has its limit (the number) open.
    User(usize),
    Process,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_user: HashMap<String, usize>,
    /// The session token of each open wait (verified on admission): its user and how many
    /// open waits present it.
    by_token: HashMap<String, (String, usize)>,
}

/// Counts a refusal (`authsync_long_polls_refused_total{limit}`) and returns it.
fn refused(which: TooManyWaiters) -> TooManyWaiters {
    let limit = match which {
        TooManyWaiters::User(_) => "user",
        TooManyWaiters::Process => "process",
    };
    metrics::counter!("authsync_long_polls_refused_total", "limit" => limit).increment(1);
    which
}

#[derive(Clone)]
pub struct JobWaiters {
    waiting: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    open: Arc<Mutex<Open>>,
    limits: WaitLimits,
    queries: Arc<Semaphore>,
}

/// Interest in one job's result; dropping it (also when the client goes away mid-wait) drops
/// the job's entry once nobody else waits on it.
pub struct Subscription {
    waiting: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    job_id: String,
    notify: Option<Arc<Notify>>,
}

impl std::ops::Deref for Subscription {
    type Target = Notify;
    fn deref(&self) -> &Notify {
        self.notify.as_ref().expect("present until dropped")
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = self.waiting.lock().unwrap();
        drop(self.notify.take());
        if map
            .get(&self.job_id)
            .is_some_and(|n| Arc::strong_count(n) == 1)
        {
            map.remove(&self.job_id);
        }
    }
}

/// One admitted wait; dropping it frees its place.
pub struct WaitSlot {
    open: Arc<Mutex<Open>>,
    user: String,
    token: String,
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        metrics::gauge!("authsync_long_polls_open").decrement(1.0);
        let mut open = self.open.lock().unwrap();
        open.total -= 1;
        if let Some(n) = open.by_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.by_user.remove(&self.user);
            }
        }
        if let Some((_, n)) = open.by_token.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                open.by_token.remove(&self.token);
            }
        }
    }
}

impl JobWaiters {
    /// Waits limited by `limits`, their queries to half of `pool`'s connections.
    pub fn new(limits: WaitLimits, pool: &PgPool) -> Self {
        let share = (pool.options().get_max_connections() as usize / 2).max(1);
        Self {
            waiting: Default::default(),
            open: Default::default(),
            limits,
            queries: Arc::new(Semaphore::new(share)),
        }
    }

    /// Before verifying `token`: the limit a wait would surely run into — the process' (for
    /// anyone), or its user's when `token` is the token of an open wait of that user.
    pub fn refuse_early(&self, token: Option<&str>) -> Result<(), TooManyWaiters> {
        let open = self.open.lock().unwrap();
        if open.total >= self.limits.total {
            return Err(refused(TooManyWaiters::Process));
        }
        let user = token.and_then(|t| open.by_token.get(t)).map(|(u, _)| u);
        if user.is_some_and(|u| open.by_user.get(u).copied().unwrap_or(0) >= self.limits.per_user) {
            return Err(refused(TooManyWaiters::User(self.limits.per_user)));
        }
        Ok(())
    }

    /// Admits one more wait for `user`, whose session `token` has just been verified, or
    /// says which limit is reached.
    pub fn admit(&self, user: &str, token: &str) -> Result<WaitSlot, TooManyWaiters> {
        let mut open = self.open.lock().unwrap();
        if open.by_user.get(user).copied().unwrap_or(0) >= self.limits.per_user {
            return Err(refused(TooManyWaiters::User(self.limits.per_user)));
        }
        if open.total >= self.limits.total {
            return Err(refused(TooManyWaiters::Process));
        }
        metrics::gauge!("authsync_long_polls_open").increment(1.0);
        open.total += 1;
        *open.by_user.entry(user.to_owned()).or_default() += 1;
        open.by_token
            .entry(token.to_owned())
            .or_insert_with(|| (user.to_owned(), 0))
            .1 += 1;
        Ok(WaitSlot {
            open: self.open.clone(),
            user: user.to_owned(),
            token: token.to_owned(),
        })
    }

    /// Held by a wait while it queries: waits never hold more than their share of the pool.
    pub async fn query_permit(&self) -> SemaphorePermit<'_> {
        self.queries
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    /// The notifier for `job_id`; keep it while waiting.
    pub fn subscribe(&self, job_id: &str) -> Subscription {
        let notify = self
            .waiting
            .lock()
            .unwrap()
            .entry(job_id.to_owned())
            .or_default()
            .clone();
        Subscription {
            waiting: self.waiting.clone(),
            job_id: job_id.to_owned(),
            notify: Some(notify),
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

    /// Runs the listener until the process ends, over [`jobs::db::session_pool`]. Behind a
    /// transaction pooler without `DATABASE_DIRECT_URL` there is no LISTEN: every open wait is
    /// woken every [`POLL_WITHOUT_LISTEN`] to re-read its job instead.
    pub fn spawn_listener(&self, pool: PgPool) {
        let this = self.clone();
        spawn_job_done_listener(pool, POLL_WITHOUT_LISTEN, move |heard| match heard {
            Heard::Notification(job_id) => this.wake(job_id),
            Heard::Everything => this.wake_all(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiters(per_user: usize, total: usize) -> JobWaiters {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .connect_lazy("postgres://localhost/none")
            .unwrap();
        JobWaiters::new(WaitLimits { per_user, total }, &pool)
    }

    #[tokio::test]
    async fn waits_are_limited_per_user_and_per_process_and_freed_on_drop() {
        let w = waiters(2, 3);
        let a1 = w.admit("a", "ta").unwrap();
        let _a2 = w.admit("a", "ta2").unwrap();
        assert_eq!(w.admit("a", "ta").err(), Some(TooManyWaiters::User(2)));
        let _b1 = w.admit("b", "tb").unwrap();
        assert_eq!(w.admit("c", "tc").err(), Some(TooManyWaiters::Process));
        assert_eq!(w.admit("a", "ta").err(), Some(TooManyWaiters::User(2)));
        drop(a1);
        let _a3 = w.admit("a", "ta").unwrap();
        assert_eq!(w.admit("c", "tc").err(), Some(TooManyWaiters::Process));
    }

    #[tokio::test]
    async fn a_job_entry_goes_when_its_last_waiter_goes_even_mid_wait() {
        let w = waiters(4, 10);
        let first = w.subscribe("job1");
        let second = w.subscribe("job1");
        drop(first);
        assert!(
            w.waiting.lock().unwrap().contains_key("job1"),
            "one still waits"
        );
        // A client that goes away mid-wait drops the future holding its subscription.
        let waiting = tokio::spawn(async move { second.notified().await });
        tokio::task::yield_now().await;
        waiting.abort();
        let _ = waiting.await;
        assert!(
            w.waiting.lock().unwrap().is_empty(),
            "no entry is left behind"
        );
    }

    #[tokio::test]
    async fn only_the_token_of_an_open_wait_is_refused_before_verification() {
        let w = waiters(2, 5);
        assert_eq!(w.refuse_early(Some("ta")), Ok(()));
        let a1 = w.admit("a", "ta").unwrap();
        // One wait open: the user is below the limit.
        assert_eq!(w.refuse_early(Some("ta")), Ok(()));
        let a2 = w.admit("a", "ta").unwrap();
        assert_eq!(w.refuse_early(Some("ta")), Err(TooManyWaiters::User(2)));
        // Another token (even of the same user) is verified first; no token is too.
        assert_eq!(w.refuse_early(Some("other")), Ok(()));
        assert_eq!(w.refuse_early(None), Ok(()));
        drop((a1, a2));
        assert_eq!(w.refuse_early(Some("ta")), Ok(()));
        // A full process refuses anyone.
        let _held: Vec<_> = (0..5)
            .map(|i| w.admit(&format!("u{i}"), &format!("t{i}")).unwrap())
            .collect();
        assert_eq!(w.refuse_early(None), Err(TooManyWaiters::Process));
    }

    #[tokio::test]
    async fn waits_query_through_half_of_the_pool() {
        let w = waiters(4, 1000);
        let permits: Vec<_> = futures::future::join_all((0..5).map(|_| w.query_permit())).await;
        assert_eq!(permits.len(), 5);
        assert!(w.queries.try_acquire().is_err());
    }
}
