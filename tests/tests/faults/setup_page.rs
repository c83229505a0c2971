//! The reference setup page in real headless Chromium: success redirects; ten failed attempts
//! show the error state with the job reference, and "Try again" starts over.

use jobs::queue::WorkerSettings;
use std::time::Duration;
use tests::browser::Browser;
use tests::fake_clerk::{FakeClerk, Scripted};
use tests::queue::Queue;
use tests::*;

const ALICE: &str = "user_2abcFakeAlice0000000000001";

async fn setup() -> (FakeClerk, TestApp, RunningWorker) {
    let clerk = FakeClerk::start().await;
    clerk.put_user(fixture_json("user.created")["data"].clone());
    let app = TestApp::builder().clerk(&clerk).spawn().await;
    let settings = WorkerSettings {
        poll_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let worker = RunningWorker::start(app.ctx.clone(), jobs::queue::registry(), settings);
    (clerk, app, worker)
}

#[tokio::test]
async fn the_setup_page_provisions_and_redirects() {
    let (clerk, app, _stop) = setup().await;
    let browser = Browser::start().await;
    browser
        .goto(&format!(
            "{}/setup?token={}",
            app.address,
            clerk.token(ALICE)
        ))
        .await;
    browser
        .wait_for("the redirect", Duration::from_secs(30), || async {
            browser.url().await.ends_with("/setup-done")
        })
        .await;
    assert!(user(app.pool(), ALICE).await.is_some());
    app.queue().wait_for_idle(Duration::from_secs(20)).await;
}

#[tokio::test]
async fn after_ten_failed_attempts_the_page_shows_the_reference_and_can_try_again() {
    let (clerk, mut app, _stop) = setup().await;
    // Clerk's API fails ten times in a row.
    clerk.script((0..10).map(|_| Scripted::Status {
        code: 500,
        retry_after: None,
    }));
    // Skip the backoff waits (up to minutes) so ten attempts fit in a test.
    let pool = app.pool().clone();
    let fast_forward = tokio::spawn(async move {
        loop {
            Queue::on(&pool).end_backoffs().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let browser = Browser::start().await;
    browser
        .goto(&format!(
            "{}/setup?token={}",
            app.address,
            clerk.token(ALICE)
        ))
        .await;
    browser
        .wait_for("the error state", Duration::from_secs(60), || async {
            browser.displayed("#failed").await
        })
        .await;
    fast_forward.abort();
    browser.screenshot("/tmp/authsync-setup-failed.png").await;

    let job_id: String =
        sqlx::query_scalar("SELECT job_id FROM sync_jobs WHERE clerk_user_id = $1")
            .bind(ALICE)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(browser.text("#failed-attempt").await, "Attempt 10/10");
    assert_eq!(browser.text("#reference").await, job_id);
    assert!(browser.displayed("#home").await);
    assert!(!browser.displayed("#working").await);

    // Clerk is healthy again: "Try again" starts a new job that succeeds.
    browser.click("#retry").await;
    browser
        .wait_for(
            "the redirect after retrying",
            Duration::from_secs(30),
            || async { browser.url().await.ends_with("/setup-done") },
        )
        .await;
    assert!(user(app.pool(), ALICE).await.is_some());
    app.queue().wait_for_idle(Duration::from_secs(20)).await;
    app.allow_unfinished_jobs = true; // the first job failed for good, on purpose
}

/// Without session verification the page cannot work: the person signing up reads that
/// account setup is unavailable, in their words; which variables are missing is for the
/// operator, in the api's log.
#[tokio::test]
async fn without_session_verification_the_page_speaks_to_the_user_not_the_operator() {
    let app = TestApp::builder().spawn().await; // no CLERK_JWKS_URL / CLERK_ISSUER
    let browser = Browser::start().await;
    browser
        .goto(&format!("{}/setup?token=whatever", app.address))
        .await;
    browser
        .wait_for("the error state", Duration::from_secs(20), || async {
            browser.displayed("#failed").await
        })
        .await;
    browser
        .screenshot("/tmp/authsync-setup-unavailable.png")
        .await;
    let message = browser.text("#failed-message").await;
    assert_eq!(
        message,
        "Account setup is not available right now. Please try again later, or contact support if this goes on."
    );
    for operator_word in ["CLERK", "configured", "deployment", "session verification"] {
        assert!(!message.contains(operator_word), "{message}");
    }
    assert!(!browser.displayed("#reference-line").await);
    assert!(browser.displayed("#home").await);
}
