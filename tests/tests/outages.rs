//! Outages of the services around us: a slow Clerk and a refusing SMTP server back off and
//! recover, and the urgent lane keeps serving the dashboard fallback meanwhile.

use jobs::mail::SmtpMailer;
use jobs::queue::WorkerSettings;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tests::fake_clerk::FakeClerk;
use tests::smtp_sink::SmtpSink;
use tests::*;

const USERS: usize = 48;

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(app.pool()).await.unwrap()
}

#[tokio::test]
async fn slow_clerk_and_smtp_outage_back_off_without_starving_the_urgent_lane() {
    let clerk = FakeClerk::start().await;
    let sink = SmtpSink::start().await;
    let mut app = TestApp::spawn_with_clerk(&clerk).await;
    let mailer = SmtpMailer::new(&sink.url(), "authsync <hi@authsync.test>".parse().unwrap());
    app.ctx = app.ctx.clone().with_mailer(Arc::new(mailer.unwrap()));
    let user_json = |id: &str| {
        let mut u = fixture_json("user.created")["data"].clone();
        u["id"] = json!(id);
        u["email_addresses"][0]["email_address"] = json!(format!("{id}@example.com"));
        u
    };
    for i in 0..USERS {
        clerk.put_user(user_json(&format!("user_busy{i}")));
    }
    clerk.put_user(user_json("user_urgent"));
    // Clerk answers metadata writes after 5 s (48 of them keep the 16 ordinary slots busy for
    // 15 s, longer than the 10 s long poll below); the SMTP server refuses everything.
    clerk.slow_metadata_writes(Some(Duration::from_secs(5)));
    sink.refuse(usize::MAX / 2);

    let worker = RunningWorker::start(
        app.ctx.clone(),
        jobs::queue::registry(),
        WorkerSettings {
            poll_interval: Duration::from_millis(200),
            ..Default::default()
        },
    );
    for i in 0..USERS {
        let id = format!("user_busy{i}");
        let body = user_event(
            "user.created",
            &id,
            Some(&format!("{id}@example.com")),
            1,
            None,
        );
        assert_eq!(app.post_signed(&new_svix_id(), &body).await.status(), 202);
    }
    // The ordinary lane fills up with slow write-backs, and welcome emails start failing.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let busy = count(&app, "SELECT count(*) FROM apalis.jobs WHERE job_type = 'authsync.sync_metadata' AND status = 'Running'").await;
        let refused = count(&app, "SELECT count(*) FROM apalis.jobs WHERE job_type = 'authsync.send_welcome_email' AND status = 'Failed'").await;
        if busy >= 8 && refused >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the outage never showed ({busy} busy, {refused} refused)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The dashboard fallback for a new user: served by the reserved urgent lane.
    let token = clerk.token("user_urgent");
    let started: Value = app.sync(&token).await.json().await.unwrap();
    let job_id = started["job_id"].as_str().unwrap().to_owned();
    let done: Value = app
        .job(&token, &job_id, Some(10_000))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["user"]["clerk_user_id"], "user_urgent");
    // It finished while the slow write-backs were still queued or running ...
    let waiting = count(&app, "SELECT count(*) FROM apalis.jobs WHERE job_type = 'authsync.sync_metadata' AND status <> 'Done'").await;
    assert!(waiting > 0, "the slow Clerk backlog was still there");
    // ... and the refused mails wait out a backoff stored in the database (their next run is
    // later than their failure), not a hot loop.
    let backing_off = count(&app, "SELECT count(*) FROM apalis.jobs WHERE job_type = 'authsync.send_welcome_email' AND status = 'Failed' AND attempts < max_attempts AND run_at > done_at").await;
    assert!(backing_off > 0);
    let max_attempts = count(&app, "SELECT coalesce(max(attempts), 0)::int8 FROM apalis.jobs WHERE job_type = 'authsync.send_welcome_email'").await;
    assert!(
        max_attempts <= 3,
        "no retry storm: {max_attempts} attempts already"
    );

    // Recovery: Clerk is fast again, SMTP accepts; the backed-off retries come due.
    clerk.slow_metadata_writes(None);
    sink.refuse(0);
    let pool = app.pool().clone();
    let fast_forward = tokio::spawn(async move {
        loop {
            let _ = sqlx::query("UPDATE apalis.jobs SET run_at = now() WHERE status = 'Failed' AND attempts < max_attempts AND run_at > now()")
                .execute(&pool)
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    wait_for_idle_queue(app.pool(), Duration::from_secs(120)).await;
    fast_forward.abort();
    worker.stop().await;
    assert_eq!(users(app.pool()).await.len(), USERS + 1);
    let mut recipients: Vec<String> = sink.received().iter().map(|m| m.to.join(",")).collect();
    recipients.sort();
    let all = recipients.len();
    recipients.dedup();
    assert_eq!(
        (all, recipients.len()),
        (USERS + 1, USERS + 1),
        "one mail each"
    );
    assert!(sink.refused() > 0);
}
