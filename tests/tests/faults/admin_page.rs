//! The operator console at `/admin` in real headless Chromium: sign in with the admin token,
//! filter the event log, replay an event and watch its status change, retry a dead job.

use jobs::queue::WorkerSettings;
use std::time::Duration;
use tests::bodies::SyncAnswer;
use tests::browser::Browser;
use tests::fake_clerk::FakeClerk;
use tests::*;

const WAIT: Duration = Duration::from_secs(30);

/// Two processed user events, one ignored, one rejected, and one dead fallback job.
async fn setup() -> (FakeClerk, TestApp, String) {
    let clerk = FakeClerk::start().await;
    let app = TestApp::builder().clerk(&clerk).spawn().await;
    for (svix, id) in [("msg_alice", "user_alice"), ("msg_bob", "user_bob")] {
        let body = user_event(
            "user.created",
            id,
            Some(&format!("{id}@example.com")),
            1,
            None,
        );
        assert_eq!(app.post_webhook(svix, &body).await.status(), 202);
    }
    assert_eq!(
        app.post_webhook("msg_email", &fixture("email.created"))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post_webhook("msg_garbage", b"{\"type\": 42}")
            .await
            .status(),
        400
    );
    // A fallback for a user Clerk does not know: fatal, so the job is dead.
    let (status, started) = parse::<SyncAnswer>(app.sync(&clerk.token("user_ghost")).await).await;
    assert_eq!(status, 202);
    let dead_job = started.job_id().to_owned();
    let report = app.drain().await;
    assert_eq!(report.killed, 1, "{report:?}");
    (clerk, app, dead_job)
}

async fn bob_attempts(app: &TestApp) -> i32 {
    sqlx::query_scalar("SELECT attempts FROM webhook_events WHERE svix_id = 'msg_bob'")
        .fetch_one(app.pool())
        .await
        .unwrap()
}

async fn badge(browser: &Browser, svix: &str) -> String {
    browser
        .text(&format!("tr[data-svix-id=\"{svix}\"] td.status"))
        .await
}

#[tokio::test]
async fn an_operator_filters_replays_and_retries_in_the_browser() {
    let (clerk, app, dead_job) = setup().await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/admin", app.address)).await;

    // Without credentials the page asks for them; a wrong token is refused.
    browser
        .wait_for("the sign-in card", WAIT, || async {
            browser.displayed("#login").await
        })
        .await;
    browser.type_into("#token", "not-the-token").await;
    browser.click("#login-form button[type=submit]").await;
    browser
        .wait_for("the refusal", WAIT, || async {
            browser.text("#login-message").await == "That token was not accepted."
        })
        .await;
    assert!(!browser.displayed("#console").await);
    browser.type_into("#token", ADMIN_TOKEN).await;
    browser.click("#login-form button[type=submit]").await;
    browser
        .wait_for("the event log", WAIT, || async {
            browser.count("#events tbody tr").await == 4
        })
        .await;
    assert_eq!(badge(&browser, "msg_alice").await, "processed");
    assert_eq!(badge(&browser, "msg_email").await, "ignored");
    assert_eq!(badge(&browser, "msg_garbage").await, "rejected");
    let reason: String =
        sqlx::query_scalar("SELECT last_error FROM webhook_events WHERE svix_id = 'msg_garbage'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert!(!reason.is_empty());
    assert_eq!(
        browser
            .text("tr[data-svix-id=\"msg_garbage\"] td.error-text")
            .await,
        reason
    );

    // Filter by status, then by type.
    browser.click("#f-status option[value=rejected]").await;
    browser.click("#apply-filters").await;
    browser
        .wait_for("only the rejected event", WAIT, || async {
            browser.count("#events tbody tr").await == 1
                && browser.count("tr[data-svix-id=\"msg_garbage\"]").await == 1
        })
        .await;
    browser.click("#f-status option[value=\"\"]").await;
    browser.type_into("#f-type", "user.created").await;
    browser.click("#apply-filters").await;
    browser
        .wait_for("only user.created events", WAIT, || async {
            browser.count("#events tbody tr").await == 2
                && browser.count("tr[data-svix-id=\"msg_bob\"]").await == 1
        })
        .await;

    let attempts_before = bob_attempts(&app).await;
    // Replay: the event goes back to queued (no worker yet) and its detail shows the payload.
    browser
        .click("tr[data-svix-id=\"msg_bob\"] button.replay")
        .await;
    browser
        .wait_for("the queued badge", WAIT, || async {
            badge(&browser, "msg_bob").await == "queued"
        })
        .await;
    assert!(browser.text("#flash").await.contains("1 job(s) queued"));
    browser.click("tr[data-svix-id=\"msg_bob\"] td.mono").await;
    browser
        .wait_for("the payload", WAIT, || async {
            browser.text("#event-payload").await.contains("user_bob")
        })
        .await;

    // A worker runs the replayed job; the page follows the event to processed.
    let worker = RunningWorker::start(
        app.ctx.clone(),
        jobs::queue::registry(),
        WorkerSettings {
            poll_interval: Duration::from_millis(100),
            ..Default::default()
        },
    );
    browser
        .wait_for("the processed badge", WAIT, || async {
            badge(&browser, "msg_bob").await == "processed"
        })
        .await;
    let attempts_after = bob_attempts(&app).await;
    assert!(attempts_after > attempts_before, "the replay ran its jobs");
    assert_eq!(
        browser
            .text("tr[data-svix-id=\"msg_bob\"] td.attempts")
            .await,
        attempts_after.to_string()
    );

    // The dead job, retried once Clerk knows the user.
    let row = format!("#jobs-table tr[data-job-id=\"{dead_job}\"]");
    assert!(browser
        .text(&format!("{row} td.error-text"))
        .await
        .contains("no user"));
    let mut ghost = fixture_json("user.created")["data"].clone();
    ghost["id"] = serde_json::json!("user_ghost");
    ghost["email_addresses"][0]["email_address"] = serde_json::json!("ghost@example.com");
    clerk.put_user(ghost);
    browser.click(&format!("{row} button.retry")).await;
    browser
        .wait_for("the retried job to leave the list", WAIT, || async {
            browser.count(&row).await == 0
        })
        .await;
    app.queue().wait_for_idle(WAIT).await;
    assert!(user(app.pool(), "user_ghost").await.is_some());
    browser.screenshot("/tmp/authsync-admin.png").await;
    worker.stop().await;
}

#[tokio::test]
async fn the_console_page_carries_no_data_and_a_strict_policy() {
    let app = TestApp::spawn().await;
    let resp = app.admin_page().await;
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let script = app.admin_script().await;
    assert_eq!(script.status(), 200);
    assert!(script.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
}

/// The console signed in by an admin's `__session` cookie (no token): its own POSTs pass the
/// cross-site check, and a run's held deletions are confirmed with its Confirm button.
#[tokio::test]
async fn an_admin_signed_in_by_cookie_confirms_held_deletions_in_the_browser() {
    let clerk = FakeClerk::start().await;
    let mut app = TestApp::builder().clerk(&clerk).spawn().await;
    app.ctx.reconcile.max_deletions = 1;
    let with_clerk = app.ctx.clerk.take();
    for (id, role) in [
        ("user_admin", Some("admin")),
        ("user_gone1", None),
        ("user_gone2", None),
    ] {
        let body = user_event(
            "user.created",
            id,
            Some(&format!("{id}@example.com")),
            1,
            role,
        );
        assert_eq!(app.post_webhook(&new_svix_id(), &body).await.status(), 202);
    }
    app.drain().await;
    app.ctx.clerk = with_clerk;
    let mut admin = fixture_json("user.created")["data"].clone();
    admin["id"] = serde_json::json!("user_admin");
    admin["email_addresses"][0]["email_address"] = serde_json::json!("user_admin@example.com");
    admin["updated_at"] = serde_json::json!(1);
    clerk.put_user(admin);
    // A run finds two users gone: over the limit of one, so both are held.
    let job = jobs::handlers::reconcile::Reconcile {
        page_size: 500,
        origin: jobs::audit::Origin::system(),
    };
    let mut conn = app.pool().acquire().await.unwrap();
    let run = jobs::queue::enqueue_one(&mut conn, &job, None)
        .await
        .unwrap()
        .to_string();
    drop(conn);
    app.drain().await;
    assert_eq!(
        users(app.pool())
            .await
            .iter()
            .filter(|u| u.deleted_at_ms.is_some())
            .count(),
        0
    );

    let browser = Browser::start().await;
    browser.goto(&format!("{}/admin", app.address)).await;
    browser
        .add_cookie("__session", &clerk.token("user_admin"))
        .await;
    browser.goto(&format!("{}/admin", app.address)).await;
    let row = format!("#reconcile-runs tr[data-job-id=\"{run}\"]");
    browser
        .wait_for("the run with its held deletions", WAIT, || async {
            browser.text(&format!("{row} td.held")).await == "2 waiting"
        })
        .await;
    browser.click(&format!("{row} button.confirm")).await;
    browser
        .wait_for("the confirmation", WAIT, || async {
            browser
                .text("#flash")
                .await
                .contains("Confirmed 2 deletion(s)")
        })
        .await;
    browser
        .wait_for("the run to show them confirmed", WAIT, || async {
            browser.text(&format!("{row} td.held")).await == "2 confirmed"
                && browser.count(&format!("{row} button.confirm")).await == 0
        })
        .await;
    app.drain().await;
    let deleted: Vec<Option<String>> = users(app.pool())
        .await
        .into_iter()
        .filter(|u| u.deleted_at_ms.is_some())
        .map(|u| u.clerk_user_id)
        .collect();
    assert_eq!(
        deleted,
        [Some("user_gone1".to_owned()), Some("user_gone2".to_owned())]
    );
}
