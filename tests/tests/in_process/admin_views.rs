//! The operator's look-ups and trends: search by address, Clerk id, svix id or job id; one
//! user's timeline; an event with its jobs; jobs by state; stats per time bucket. Every new
//! parameter's bad values are 400 `invalid_query`, each case with its own reason.

use jobs::queue::Status;
use serde_json::json;
use tests::bodies::{EventDetail, JobList, SearchResult, Stats, SyncAnswer, UserDetail};
use tests::fake_clerk::FakeClerk;
use tests::*;

const ORG_ID: &str = "org_console";

/// Alice and Bob (webhooks), Alice's organization with her membership, all processed.
async fn setup() -> (FakeClerk, TestApp) {
    let clerk = FakeClerk::start().await;
    let app = TestApp::builder().clerk(&clerk).spawn().await;
    for (svix, id, email) in [
        ("msg_alice", "user_alice", "Alice@Example.com"),
        ("msg_bob", "user_bob", "bob@example.com"),
    ] {
        let body = user_event("user.created", id, Some(email), 1, None);
        assert_eq!(app.post_webhook(svix, &body).await.status(), 202);
    }
    let mut org = fixture_json("organization.created");
    org["data"]["id"] = json!(ORG_ID);
    let mut member = fixture_json("organizationMembership.created");
    member["data"]["organization"]["id"] = json!(ORG_ID);
    member["data"]["public_user_data"]["user_id"] = json!("user_alice");
    for (svix, body) in [("msg_org", org), ("msg_member", member)] {
        let body = serde_json::to_vec(&body).unwrap();
        assert_eq!(app.post_webhook(svix, &body).await.status(), 202);
    }
    app.drain_without_clerk().await;
    (clerk, app)
}

async fn search(app: &TestApp, q: &str) -> SearchResult {
    let (status, found) = parse::<SearchResult>(app.admin_search(ADMIN_TOKEN, Some(q)).await).await;
    assert_eq!(status, 200, "{q}");
    found
}

#[tokio::test]
async fn search_finds_users_events_and_jobs_by_whatever_the_operator_has() {
    let (_clerk, app) = setup().await;
    let alice_job = app.queue().jobs(Some("authsync.provision_user")).await;
    let alice_job = alice_job
        .iter()
        .find(|j| j.svix_id.as_deref() == Some("msg_alice"))
        .expect("Alice's ProvisionUser job")
        .id
        .clone();

    // The start of an address, in any case.
    let found = search(&app, "ALICE@").await;
    assert_eq!(found.clerk_user_ids(), ["user_alice"]);
    assert_eq!(found.q, "ALICE@");
    // A Clerk user id: the user, the events about them (newest first) and their jobs.
    let found = search(&app, "user_alice").await;
    assert_eq!(found.clerk_user_ids(), ["user_alice"]);
    assert_eq!(found.svix_ids(), ["msg_member", "msg_alice"]);
    assert!(found.job_ids().contains(&alice_job.as_str()), "{found:?}");
    assert!(found
        .jobs
        .iter()
        .all(|j| { matches!(j.svix_id.as_deref(), Some("msg_member" | "msg_alice")) }));
    // An organization id: its members and its events.
    let found = search(&app, ORG_ID).await;
    assert_eq!(found.clerk_user_ids(), ["user_alice"]);
    assert_eq!(found.svix_ids(), ["msg_org"]);
    // A svix id: the event and its jobs.
    let found = search(&app, "msg_alice").await;
    assert_eq!(found.svix_ids(), ["msg_alice"]);
    assert!(found.job_ids().contains(&alice_job.as_str()), "{found:?}");
    assert!(found
        .jobs
        .iter()
        .all(|j| j.svix_id.as_deref() == Some("msg_alice")));
    // A job id, with spaces around it as pasted: that job alone.
    let found = search(&app, &format!("  {alice_job} ")).await;
    assert_eq!(found.job_ids(), [alice_job.as_str()]);
    assert!(found.users.is_empty() && found.events.is_empty());
    // Nothing matches: an empty answer, not an error.
    let found = search(&app, "nobody@nowhere.test").await;
    assert!(found.users.is_empty() && found.events.is_empty() && found.jobs.is_empty());
    // `%` and `_` are characters of the address, not patterns.
    assert!(search(&app, "%").await.users.is_empty());
    assert!(search(&app, "_lice").await.users.is_empty());
}

#[tokio::test]
async fn a_bad_search_term_is_refused_with_its_reason() {
    let (_clerk, app) = setup().await;
    let long = "a".repeat(321);
    for (q, reason) in [
        (None, "required"),
        (Some(""), "required"),
        (Some("   "), "required"),
        (Some("alice bob"), "without spaces"),
        (Some("alice\tbob"), "without spaces"),
        (Some(long.as_str()), "at most 320"),
    ] {
        let (status, body) =
            parse::<tests::bodies::ErrorBody>(app.admin_search(ADMIN_TOKEN, q).await).await;
        assert_eq!(
            (status, body.error.code.as_str()),
            (400, "invalid_query"),
            "{q:?}"
        );
        assert!(
            body.error.message.contains(reason),
            "{q:?}: {}",
            body.error.message
        );
    }
}

#[tokio::test]
async fn a_users_page_holds_their_events_jobs_audit_and_activity_newest_first() {
    let clerk = FakeClerk::start().await;
    let mut app = TestApp::builder().clerk(&clerk).spawn().await;
    app.allow_unfinished_jobs = true; // the dead fallback job below stays for the page
                                      // A fallback before Clerk knows the user: fatal, so the job is dead with its error.
    let (status, started) = parse::<SyncAnswer>(app.sync(&clerk.token("user_alice")).await).await;
    assert_eq!(status, 202);
    let fallback = started.job_id().to_owned();
    assert_eq!(app.drain().await.killed, 1);
    for (svix, event, version) in [("msg_a1", "user.created", 1), ("msg_a2", "user.updated", 2)] {
        let body = user_event(
            event,
            "user_alice",
            Some("alice@example.com"),
            version,
            None,
        );
        assert_eq!(app.post_webhook(svix, &body).await.status(), 202);
        // One at a time: run together, the update may apply first and the late create change
        // nothing (no `user.updated` audit entry then).
        app.drain_without_clerk().await;
    }
    sqlx::query(
        "INSERT INTO user_activity (clerk_user_id, kind, session_id, occurred_at, client_ip, user_agent, svix_id) \
         VALUES ('user_alice', 'session.created', 'sess_1', now(), '203.0.113.7', 'Firefox', 'msg_s1')",
    )
    .execute(app.pool())
    .await
    .unwrap();

    let (status, page) = parse::<UserDetail>(app.admin_user(ADMIN_TOKEN, "user_alice").await).await;
    assert_eq!(status, 200);
    assert_eq!(page.user.email.as_deref(), Some("alice@example.com"));
    assert!(page.user.deleted_at.is_none());
    let labels: Vec<String> = page.timeline.iter().map(|e| e.label()).collect();
    for want in [
        "event user.created",
        "event user.updated",
        "job authsync.provision_user",
        "job authsync.provision_user.urgent",
        "audit user.created",
        "audit user.updated",
        "activity session.created",
    ] {
        assert!(labels.iter().any(|l| l == want), "{want} in {labels:?}");
    }
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = page
        .timeline
        .iter()
        .map(|e| chrono::DateTime::parse_from_rfc3339(e.at()).unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {labels:?}"
    );
    assert_eq!(labels[0], "activity session.created", "the latest thing");
    // The dead fallback job carries its attempts and error.
    let dead = page.timeline.iter().find_map(|e| match e {
        tests::bodies::TimelineEntry::Job { job, .. } if job.job_id == fallback => Some(job),
        _ => None,
    });
    let dead = dead.expect("the fallback job");
    assert_eq!((dead.state.as_str(), dead.dead), ("failed", true));
    assert!(dead.last_error.as_deref().unwrap().contains("no user"));

    assert_eq!(
        error_code(app.admin_user(ADMIN_TOKEN, "user_nobody").await).await,
        (404, "not_found".to_owned())
    );
}

#[tokio::test]
async fn an_events_detail_lists_the_jobs_it_caused_replays_included() {
    let (_clerk, app) = setup().await;
    let (_, detail) = parse::<EventDetail>(app.admin_event(ADMIN_TOKEN, "msg_alice").await).await;
    assert!(!detail.jobs.is_empty());
    assert!(detail
        .jobs
        .iter()
        .all(|j| j.svix_id.as_deref() == Some("msg_alice")
            && j.state == "succeeded"
            && j.done_at.is_some()));
    let before = detail.jobs.len();
    assert_eq!(app.replay(ADMIN_TOKEN, "msg_alice").await.status(), 202);
    let (_, detail) = parse::<EventDetail>(app.admin_event(ADMIN_TOKEN, "msg_alice").await).await;
    assert_eq!(detail.jobs.len(), before + 1);
    assert_eq!(
        detail.jobs[0].state, "queued",
        "the replayed job, latest first"
    );
    app.drain_without_clerk().await;
    // Another event's jobs are not listed.
    let (_, bob) = parse::<EventDetail>(app.admin_event(ADMIN_TOKEN, "msg_bob").await).await;
    assert!(bob
        .jobs
        .iter()
        .all(|j| j.svix_id.as_deref() == Some("msg_bob")));
}

#[tokio::test]
async fn jobs_are_listed_by_state() {
    let mut app = TestApp::spawn().await;
    app.allow_unfinished_jobs = true;
    let queue = app.queue();
    let [retrying, exhausted, killed, done] = [(); 4].map(|_| ulid::Ulid::generate().to_string());
    queue
        .insert_stopped(&retrying, Status::Failed, (1, 5), 0, None)
        .await;
    queue
        .insert_stopped(&exhausted, Status::Failed, (5, 5), 0, None)
        .await;
    queue
        .insert_stopped(&killed, Status::Killed, (1, 5), 0, None)
        .await;
    queue
        .insert_stopped(&done, Status::Done, (1, 5), 0, None)
        .await;
    let dead = vec![exhausted.clone(), killed.clone()];
    for (state, want) in [
        (
            "",
            vec![retrying.clone(), exhausted.clone(), killed.clone()],
        ),
        (
            "state=problems",
            vec![retrying.clone(), exhausted.clone(), killed.clone()],
        ),
        ("state=retrying", vec![retrying.clone()]),
        ("state=failed", dead.clone()),
        ("state=dead", dead.clone()),
    ] {
        let (status, list) = parse::<JobList>(app.admin_jobs(ADMIN_TOKEN, state).await).await;
        assert_eq!(status, 200, "{state}");
        let mut ids: Vec<String> = list.jobs.iter().map(|j| j.job_id.clone()).collect();
        ids.sort();
        let mut want = want;
        want.sort();
        assert_eq!(ids, want, "{state}");
    }
    for (bad, why) in [
        ("state=succeeded", "finished jobs are not listed"),
        ("state=DEAD", "states are lower-case"),
        ("state=", "empty"),
    ] {
        assert_eq!(
            error_code(app.admin_jobs(ADMIN_TOKEN, bad).await).await,
            (400, "invalid_query".to_owned()),
            "{bad}: {why}"
        );
    }
}

#[tokio::test]
async fn stats_count_each_buckets_events_and_their_latency() {
    let (_clerk, app) = setup().await;
    assert_eq!(app.post_webhook("msg_bad", b"not json").await.status(), 400);
    // A job that needed a second attempt.
    let retried = ulid::Ulid::generate().to_string();
    app.queue()
        .insert_stopped(&retried, Status::Done, (2, 5), 0, None)
        .await;
    for (query, window, seconds, count) in [
        ("window=1h", "1h", 60, 60),
        ("window=24h", "24h", 1800, 48),
        ("", "24h", 1800, 48),
        ("window=7d", "7d", 21600, 28),
    ] {
        let (status, stats) = parse::<Stats>(app.admin_stats(ADMIN_TOKEN, query).await).await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(
            (
                stats.window.as_str(),
                stats.bucket_seconds,
                stats.buckets.len()
            ),
            (window, seconds, count),
            "{query}"
        );
        let sum =
            |f: fn(&tests::bodies::StatsBucket) -> i64| stats.buckets.iter().map(f).sum::<i64>();
        // Four deliveries processed, one rejected.
        assert_eq!(sum(|b| b.received), 5, "{query}");
        assert_eq!(sum(|b| b.processed), 4, "{query}");
        assert_eq!(sum(|b| b.failed), 1, "{query}");
        assert_eq!(sum(|b| b.retried), 1, "{query}");
        let with_latency: Vec<_> = stats.buckets.iter().filter(|b| b.processed > 0).collect();
        assert!(!with_latency.is_empty());
        for b in with_latency {
            let (p50, p95) = (b.p50_ms.unwrap(), b.p95_ms.unwrap());
            assert!(0.0 <= p50 && p50 <= p95, "{b:?}");
        }
        assert!(stats
            .buckets
            .iter()
            .filter(|b| b.processed == 0)
            .all(|b| b.p50_ms.is_none()));
        let starts: Vec<_> = stats
            .buckets
            .iter()
            .map(|b| {
                chrono::DateTime::parse_from_rfc3339(&b.at)
                    .unwrap()
                    .timestamp()
            })
            .collect();
        assert!(
            starts.windows(2).all(|w| w[1] - w[0] == seconds),
            "contiguous"
        );
    }
    for (bad, why) in [
        ("window=2h", "not a window"),
        ("window=1H", "case matters"),
        ("window=", "empty"),
        ("window=24", "no unit"),
    ] {
        assert_eq!(
            error_code(app.admin_stats(ADMIN_TOKEN, bad).await).await,
            (400, "invalid_query".to_owned()),
            "{bad}: {why}"
        );
    }
}
