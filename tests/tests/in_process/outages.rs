//! Outages of the services around us: a slow Clerk and a refusing SMTP server back off and
//! recover, and the urgent lane keeps serving the dashboard fallback meanwhile.

use jobs::mail::SmtpMailer;
use jobs::queue::WorkerSettings;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tests::bodies::{JobStatus, SyncAnswer};
use tests::fake_clerk::FakeClerk;
use tests::queue::{Queue, Status};
use tests::smtp_sink::SmtpSink;
use tests::*;

const USERS: usize = 48;

#[tokio::test]
async fn slow_clerk_and_smtp_outage_back_off_without_starving_the_urgent_lane() {
    let clerk = FakeClerk::start().await;
    let sink = SmtpSink::start().await;
    let mut app = TestApp::builder().clerk(&clerk).spawn().await;
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
        assert_eq!(app.post_webhook(&new_svix_id(), &body).await.status(), 202);
    }
    // The ordinary lane fills up with slow write-backs, and welcome emails start failing.
    let queue = app.queue();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let busy = queue
            .in_state(Some("authsync.sync_metadata"), Status::Running)
            .await;
        let refused = queue
            .in_state(Some("authsync.send_welcome_email"), Status::Failed)
            .await;
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
    let (_, started) = parse::<SyncAnswer>(app.sync(&token).await).await;
    let (_, done) = parse::<JobStatus>(app.job(&token, started.job_id(), Some(10_000)).await).await;
    assert_eq!(done.state, "succeeded", "{done:?}");
    assert_eq!(
        done.user.and_then(|u| u.clerk_user_id).as_deref(),
        Some("user_urgent")
    );
    // It finished while the slow write-backs were still queued or running ...
    let waiting = queue.unfinished(Some("authsync.sync_metadata")).await;
    assert!(waiting > 0, "the slow Clerk backlog was still there");
    // ... and the refused mails wait out a backoff stored in the database (their next run is
    // later than their failure), not a hot loop.
    let backing_off = queue.backing_off("authsync.send_welcome_email").await;
    assert!(backing_off > 0);
    let max_attempts = queue.most_attempts("authsync.send_welcome_email").await;
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
            Queue::on(&pool).end_backoffs().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    app.queue().wait_for_idle(Duration::from_secs(120)).await;
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
