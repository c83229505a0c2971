//! The console's views in real headless Chromium: search finds a user and opens their
//! timeline, an event opens with its jobs, new events and queue depths appear without a
//! reload, a reversed date range says so, Reconcile without `CLERK_SECRET_KEY` is disabled
//! and says why, the trends are drawn as SVG from the stats, times are relative with the
//! absolute time on hover, and event types never wrap inside a word.

use serde_json::Value;
use std::time::Duration;
use tests::browser::Browser;
use tests::*;

const WAIT: Duration = Duration::from_secs(30);

/// An api without the Backend API key, Alice provisioned, and a browser signed in with the
/// admin token, showing the event log.
async fn signed_in() -> (TestApp, Browser) {
    let app = TestApp::spawn().await;
    let alice = user_event(
        "user.created",
        "user_alice",
        Some("alice@example.com"),
        1,
        None,
    );
    assert_eq!(app.post_webhook("msg_alice", &alice).await.status(), 202);
    app.drain().await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/admin", app.address)).await;
    browser
        .wait_for("the sign-in card", WAIT, || async {
            browser.displayed("#login").await
        })
        .await;
    browser.type_into("#token", ADMIN_TOKEN).await;
    browser.click("#login-form button[type=submit]").await;
    browser
        .wait_for("the event log", WAIT, || async {
            browser
                .count("#events tr[data-svix-id=\"msg_alice\"]")
                .await
                == 1
        })
        .await;
    (app, browser)
}

async fn js_string(browser: &Browser, js: &str) -> String {
    match browser.script(js).await {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[tokio::test]
async fn search_finds_a_user_whose_page_shows_their_timeline_and_events_open_with_their_jobs() {
    let (app, browser) = signed_in().await;

    // An empty search says what to type.
    browser.click("#search-form button[type=submit]").await;
    browser
        .wait_for("the hint", WAIT, || async {
            browser
                .text("#search-error")
                .await
                .contains("email address")
        })
        .await;
    browser.type_into("#search-q", "alice@").await;
    browser.click("#search-form button[type=submit]").await;
    let found = "#search-users tr[data-clerk-user-id=\"user_alice\"]";
    browser
        .wait_for("Alice among the users found", WAIT, || async {
            browser.count(found).await == 1
        })
        .await;
    assert!(!browser.displayed("#search-error").await);
    browser.click(found).await;
    browser
        .wait_for("her page with its timeline", WAIT, || async {
            browser
                .text("#user-facts")
                .await
                .contains("alice@example.com")
                && browser.count("#timeline li[data-kind=event]").await == 1
        })
        .await;
    assert!(browser.count("#timeline li[data-kind=job]").await >= 1);
    assert!(browser.count("#timeline li[data-kind=audit]").await >= 1);
    assert!(browser
        .text("#timeline li[data-kind=event]")
        .await
        .contains("user.created"));
    assert!(browser.url().await.ends_with("#user=user_alice"));
    browser.screenshot("/tmp/authsync-console-user.png").await;

    // The event opens below its row with the jobs it caused, not as raw JSON below the table.
    browser
        .click("#events tr[data-svix-id=\"msg_alice\"] td.type")
        .await;
    browser
        .wait_for("the event's jobs", WAIT, || async {
            browser
                .count("#event-detail #event-jobs tr[data-job-id]")
                .await
                >= 1
        })
        .await;
    let job_ids: Vec<String> = app
        .queue()
        .jobs(None)
        .await
        .into_iter()
        .filter(|j| j.svix_id.as_deref() == Some("msg_alice"))
        .map(|j| j.id)
        .collect();
    assert_eq!(
        browser
            .count("#event-detail #event-jobs tr[data-job-id]")
            .await,
        job_ids.len()
    );
    assert_eq!(
        js_string(
            &browser,
            "return document.getElementById('event-detail').previousElementSibling.dataset.svixId"
        )
        .await,
        "msg_alice",
        "the detail sits right below its event"
    );
    assert!(browser.text("#event-payload").await.contains("user_alice"));
    browser.screenshot("/tmp/authsync-console-event.png").await;
}

#[tokio::test]
async fn the_console_updates_live_validates_filters_explains_disabled_reconcile_and_charts_stats() {
    let (app, browser) = signed_in().await;

    // Trends: an SVG drawn from /admin/api/stats (one event received so far).
    browser
        .wait_for("the volume chart", WAIT, || async {
            browser
                .count("#chart-volume svg polyline[data-series=received]")
                .await
                >= 1
        })
        .await;
    assert_eq!(
        js_string(
            &browser,
            "return document.querySelector('#chart-volume svg').dataset.received"
        )
        .await,
        "1"
    );
    assert_eq!(
        js_string(
            &browser,
            "return document.querySelector('#chart-volume svg').dataset.buckets"
        )
        .await,
        "48"
    );
    assert!(
        browser
            .count("#chart-latency svg polyline[data-series=p50]")
            .await
            >= 1
    );

    // Reconcile is not configured: the button is disabled and says why, beside it.
    assert_eq!(
        browser
            .script("return document.getElementById('reconcile-run').disabled")
            .await,
        Value::Bool(true)
    );
    assert!(browser
        .text("#reconcile-why")
        .await
        .contains("CLERK_SECRET_KEY"));

    // Times are relative; the absolute one is on hover.
    let cell = "#events tr[data-svix-id=\"msg_alice\"] time";
    let shown = browser.text(cell).await;
    assert!(shown == "just now" || shown.ends_with(" ago"), "{shown}");
    let title = js_string(
        &browser,
        &format!("return document.querySelector('{cell}').title"),
    )
    .await;
    assert!(title.contains(':'), "an absolute time: {title}");
    // Event types stay whole ("session.created", never "session.creat / ed").
    assert_eq!(
        js_string(
            &browser,
            "return getComputedStyle(document.querySelector('#events td.type')).whiteSpace"
        )
        .await,
        "nowrap"
    );

    // A new event and the queue's depth appear without a reload (no worker runs it).
    let bob = user_event("user.created", "user_bob", Some("bob@example.com"), 1, None);
    assert_eq!(app.post_webhook("msg_live", &bob).await.status(), 202);
    browser
        .wait_for("the new event in the log", WAIT, || async {
            browser.count("#events tr[data-svix-id=\"msg_live\"]").await == 1
        })
        .await;
    assert_eq!(
        js_string(
            &browser,
            "return document.querySelector('#events tbody tr').dataset.svixId"
        )
        .await,
        "msg_live",
        "newest first"
    );
    browser
        .wait_for("the pending job in the queue depths", WAIT, || async {
            browser
                .text("#queues tr[data-queue=\"authsync.provision_user\"] td.pending")
                .await
                == "1"
        })
        .await;

    // A reversed range says so instead of "No events match".
    browser
        .script(
            "document.getElementById('f-since').value = '2026-03-02T10:00';\
             document.getElementById('f-until').value = '2026-03-01T10:00'; return true",
        )
        .await;
    browser.click("#apply-filters").await;
    browser
        .wait_for("the range message", WAIT, || async {
            browser.text("#filter-error").await.contains("reversed")
        })
        .await;
    assert!(!browser.displayed("#events-empty").await);
    browser.screenshot("/tmp/authsync-console-live.png").await;
    app.drain().await;
}
