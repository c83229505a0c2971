//! Many worker processes against one database: a stream of deliveries drained by 2 and by 4
//! real `worker` processes loses and doubles nothing and gives every process work; a rolling
//! restart (SIGTERM one worker at a time under continuous intake) fails and re-runs nothing.
//!
//! Which process ran a job: `apalis.jobs.lock_by` names the worker only while the job runs (the
//! result clears it), so each process' own count is read from its `/metrics`
//! (`authsync_jobs_total`, `WORKER_METRICS_PORT`), as an operator would. The sum over the
//! processes must equal the jobs done: a job that succeeded in two processes would show there.
//!
//! Connection use: the test server allows 100 connections and other tests run beside these,
//! so every worker runs with `WORKER_CONCURRENCY=2` and a pool of 5.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tests::processes::WorkerProcess;
use tests::queue::Status;
use tests::smtp_sink::SmtpSink;
use tests::*;

/// A worker with a small pool, mail to `smtp`, metrics on `metrics_port`.
fn start_worker(app: &TestApp, smtp: &str, metrics_port: u16) -> WorkerProcess {
    let port = metrics_port.to_string();
    WorkerProcess::start(
        &app.db.url,
        &[
            ("WORKER_CONCURRENCY", "2"),
            ("WORKER_URGENT_CONCURRENCY", "1"),
            ("DATABASE_MAX_CONNECTIONS", "5"),
            ("SMTP_URL", smtp),
            ("MAIL_FROM", "Authsync <hello@authsync.test>"),
            ("WORKER_METRICS_PORT", port.as_str()),
        ],
    )
}

/// Posts distinct `user.created` events (`user_<prefix><i>`, `<prefix><i>@example.com`) from
/// `senders` concurrent clients, each pausing `pause` between posts, until `limit` are sent or
/// `stop` is set; every answer must be 202. Counts accepted posts in `accepted` as they come
/// back, and returns the total.
fn stream(
    app: &TestApp,
    prefix: &'static str,
    senders: usize,
    pause: Duration,
    limit: usize,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<usize> {
    let (client, address) = (app.client.clone(), app.address.clone());
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        let tasks = (0..senders).map(|_| {
            let (client, address, next, stop, accepted) = (
                client.clone(),
                address.clone(),
                next.clone(),
                stop.clone(),
                accepted.clone(),
            );
            tokio::spawn(async move {
                let mut posted = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= limit || stop.load(Ordering::SeqCst) {
                        return posted;
                    }
                    let body = user_event(
                        "user.created",
                        &format!("user_{prefix}{i}"),
                        Some(&format!("{prefix}{i}@example.com")),
                        1,
                        None,
                    );
                    let req = signed_webhook(&client, &address, &new_svix_id(), &body);
                    let status = req.send().await.unwrap().status();
                    assert_eq!(status, 202, "event {i}");
                    posted += 1;
                    accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(pause).await;
                }
            })
        });
        let mut total = 0;
        for t in futures::future::join_all(tasks).await {
            total += t.unwrap();
        }
        total
    })
}

/// Every posted event processed, one user per Clerk id, one welcome email per user (one
/// delivery, one Message-ID), no job unfinished, failed, dead, or run more than once.
async fn assert_each_event_done_once(app: &TestApp, sink: &SmtpSink, prefix: &str, n: usize) {
    let expected: HashSet<String> = (0..n).map(|i| format!("user_{prefix}{i}")).collect();
    let rows = users(app.pool()).await;
    let found: HashSet<String> = rows
        .iter()
        .filter_map(|r| r.clerk_user_id.clone())
        .collect();
    assert_eq!(rows.len(), n, "one users row per Clerk id");
    assert_eq!(found, expected, "every posted user provisioned");

    let (processed, total): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'processed'), count(*) FROM webhook_events",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        (processed, total),
        (n as i64, n as i64),
        "every event processed"
    );

    let by_status = app.queue().jobs_by_state().await;
    assert!(
        by_status.iter().all(|(s, _)| *s == Status::Done),
        "every job done, none failed or dead: {by_status:?}"
    );
    let rerun: Vec<(String, String, i32)> = app
        .queue()
        .jobs(None)
        .await
        .into_iter()
        .filter(|j| j.attempts != 1)
        .take(5)
        .map(|j| (j.id, j.job_type, j.attempts))
        .collect();
    assert!(rerun.is_empty(), "every job ran exactly once: {rerun:?}");

    let mut ids_by_recipient: HashMap<String, HashSet<String>> = HashMap::new();
    let received = sink.received();
    for mail in &received {
        let id = mail
            .data
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
            .map(|l| &l["message-id:".len()..])
            .expect("every mail has a Message-ID")
            .trim()
            .to_owned();
        ids_by_recipient
            .entry(mail.to.join(","))
            .or_default()
            .insert(id);
    }
    assert_eq!(ids_by_recipient.len(), n, "every user got a welcome email");
    assert_eq!(received.len(), n, "each welcome email delivered once");
}

/// `authsync_jobs_total` of the worker whose metrics listen on `port`, by outcome.
async fn jobs_run(port: u16) -> HashMap<String, u64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("worker metrics reachable")
        .text()
        .await
        .unwrap();
    let mut by_outcome = HashMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("authsync_jobs_total{"))
    {
        let outcome = line
            .split("outcome=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("?")
            .to_owned();
        let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        *by_outcome.entry(outcome).or_default() += n as u64;
    }
    by_outcome
}

async fn processes_share_a_stream(workers: usize, events: usize) {
    let app = TestApp::spawn().await;
    let sink = SmtpSink::start().await;
    let smtp = sink.url();
    let ports: Vec<u16> = (0..workers).map(|_| free_port()).collect();
    let procs: Vec<WorkerProcess> = ports
        .iter()
        .map(|p| start_worker(&app, &smtp, *p))
        .collect();
    for w in &procs {
        w.wait_registered(app.pool()).await;
    }

    let never = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicUsize::new(0));
    let posted = stream(&app, "scale", 8, Duration::ZERO, events, never, counter)
        .await
        .unwrap();
    assert_eq!(posted, events);
    app.queue().wait_for_idle(Duration::from_secs(60)).await;

    assert_each_event_done_once(&app, &sink, "scale", events).await;
    let jobs_done = app.queue().count(None).await;
    let mut shares = Vec::new();
    for (w, port) in procs.iter().zip(&ports) {
        let by_outcome = jobs_run(*port).await;
        assert!(
            by_outcome.keys().all(|o| o == "succeeded"),
            "worker {} recorded failed attempts: {by_outcome:?}",
            w.pid()
        );
        shares.push(by_outcome.get("succeeded").copied().unwrap_or(0));
    }
    eprintln!("{workers} workers, {jobs_done} jobs: per process {shares:?}");
    assert!(
        shares.iter().all(|&s| s > 0),
        "every worker process ran jobs: {shares:?}"
    );
    assert_eq!(
        shares.iter().sum::<u64>(),
        jobs_done as u64,
        "each job succeeded in exactly one process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_drain_a_stream_each_event_once_and_both_get_work() {
    processes_share_a_stream(2, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_worker_processes_drain_a_stream_each_event_once_and_all_get_work() {
    processes_share_a_stream(4, 400).await;
}

/// Three workers; while deliveries keep coming in, one at a time: its replacement starts, it is
/// sent SIGTERM and exits, the replacement registers, a second passes, then the next. Graceful shutdown
/// finishes what a worker runs, so nothing fails and nothing runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_intake_fails_loses_and_repeats_nothing() {
    let app = TestApp::spawn().await;
    let sink = SmtpSink::start().await;
    let smtp = sink.url();
    let mut procs: Vec<WorkerProcess> = (0..3)
        .map(|_| start_worker(&app, &smtp, free_port()))
        .collect();
    for w in &procs {
        w.wait_registered(app.pool()).await;
    }
    // At most 100 deliveries a second, well within what three debug workers drain.
    let (stop, accepted) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let intake = stream(
        &app,
        "roll",
        2,
        Duration::from_millis(20),
        usize::MAX,
        stop.clone(),
        accepted.clone(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarts = std::time::Instant::now();
    for (i, slot) in procs.iter_mut().enumerate() {
        let before = accepted.load(Ordering::SeqCst);
        let mut old = std::mem::replace(slot, start_worker(&app, &smtp, free_port()));
        // Its grace period for running jobs is 25 s; it has only short jobs to finish.
        let status =
            tokio::task::spawn_blocking(move || old.terminate_within(Duration::from_secs(40)))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("worker {i} still running 40 s after SIGTERM"));
        assert!(
            status.success(),
            "worker {i} exits cleanly on SIGTERM: {status}"
        );
        slot.wait_registered(app.pool()).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Under continuous intake: deliveries were accepted during this step.
        let during = accepted.load(Ordering::SeqCst) - before;
        assert!(
            during > 0,
            "no delivery accepted while worker {i} restarted"
        );
    }
    stop.store(true, Ordering::SeqCst);
    let posted = intake.await.unwrap();
    app.queue().wait_for_idle(Duration::from_secs(60)).await;
    eprintln!(
        "rolling restart of 3 workers in {:?} during {posted} deliveries",
        restarts.elapsed()
    );

    assert_each_event_done_once(&app, &sink, "roll", posted).await;
}
