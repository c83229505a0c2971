//! The activity log: Clerk's `session.*` events through the real webhook route and queue into
//! `user_activity`, read back by their own user under row-level security (`GET
//! /v1/me/activity`), once per delivery, and kept only as long as events are.

use jobs::audit::Origin;
use jobs::handlers::retention::Retention;
use tests::bodies::{Activity, ActivityPage};
use tests::fake_clerk::FakeClerk;
use tests::*;

const ALICE: &str = "user_2abcFakeAlice0000000000001";
const SESSION: &str = "sess_2abcFakeSession00000000001";
const BROWSER: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36";

async fn setup() -> (FakeClerk, TestApp) {
    let clerk = FakeClerk::start().await;
    let app = TestApp::builder().clerk(&clerk).spawn().await;
    (clerk, app)
}

async fn deliver(app: &TestApp, svix_id: &str, body: &[u8]) {
    let status = app.post_webhook(svix_id, body).await.status();
    assert_eq!(status, 202, "a session event is work to do");
    let r = app.drain_without_clerk().await;
    assert_eq!((r.retrying, r.exhausted, r.killed), (0, 0, 0), "{r:?}");
}

async fn activity(app: &TestApp, token: &str) -> Vec<Activity> {
    let (status, page) = parse::<ActivityPage>(app.me_activity(token, "").await).await;
    assert_eq!(status, 200);
    page.activity
}

fn entry(kind: &str, occurred_at: &str, ip: &str, agent: &str) -> Activity {
    Activity {
        kind: kind.into(),
        session_id: SESSION.into(),
        occurred_at: occurred_at.into(),
        client_ip: Some(ip.into()),
        user_agent: Some(agent.into()),
    }
}

#[tokio::test]
async fn session_events_become_the_users_activity_newest_first() {
    let (clerk, app) = setup().await;
    // Out of order, and before the user exists: nothing is lost.
    deliver(&app, "msg_ended", &fixture("session.ended")).await;
    deliver(&app, "msg_created", &fixture("session.created")).await;
    deliver(&app, "msg_revoked", &fixture("session.revoked")).await;
    deliver(&app, "msg_removed", &fixture("session.removed")).await;

    assert_eq!(
        activity(&app, &clerk.token(ALICE)).await,
        [
            entry(
                "session.revoked",
                "2026-01-11T13:40:00+00:00",
                "198.51.100.23",
                "Clerk Dashboard"
            ),
            entry(
                "session.removed",
                "2026-01-11T12:40:00+00:00",
                "203.0.113.7",
                BROWSER
            ),
            entry(
                "session.ended",
                "2026-01-11T11:40:00+00:00",
                "203.0.113.7",
                BROWSER
            ),
            entry(
                "session.created",
                "2026-01-11T10:40:00+00:00",
                "203.0.113.7",
                BROWSER
            ),
        ]
    );
    let (_, page) =
        parse::<ActivityPage>(app.me_activity(&clerk.token(ALICE), "limit=1").await).await;
    assert_eq!(page.activity.len(), 1);
    assert_eq!(page.activity[0].kind, "session.revoked");
}

#[tokio::test]
async fn a_user_sees_only_their_own_activity() {
    let (clerk, app) = setup().await;
    deliver(&app, "msg_created", &fixture("session.created")).await;
    let mut bobs = fixture_json("session.created");
    bobs["data"]["user_id"] = "user_2abcFakeBobPhone00000000001".into();
    bobs["data"]["id"] = "sess_2abcFakeBobSession000000001".into();
    deliver(&app, "msg_bob", &serde_json::to_vec(&bobs).unwrap()).await;

    let alices = activity(&app, &clerk.token(ALICE)).await;
    assert_eq!(alices.len(), 1);
    assert_eq!(alices[0].session_id, SESSION);
    let bobs = activity(&app, &clerk.token("user_2abcFakeBobPhone00000000001")).await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].session_id, "sess_2abcFakeBobSession000000001");
    assert!(activity(&app, &clerk.token("user_nobody")).await.is_empty());
    // Row-level security, not the route's WHERE: an application reading the table as
    // `authsync_user` sees one user's rows, and none without the setting.
    let mut tx = app.pool().begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE authsync_user")
        .execute(&mut *tx)
        .await
        .unwrap();
    let count = "SELECT count(*) FROM user_activity";
    let unset: i64 = sqlx::query_scalar(count).fetch_one(&mut *tx).await.unwrap();
    sqlx::query("SELECT set_config('authsync.clerk_user_id', $1, true)")
        .bind(ALICE)
        .execute(&mut *tx)
        .await
        .unwrap();
    let alices: i64 = sqlx::query_scalar(count).fetch_one(&mut *tx).await.unwrap();
    assert_eq!((unset, alices), (0, 1));
}

#[tokio::test]
async fn a_redelivered_or_replayed_event_is_recorded_once() {
    let (clerk, app) = setup().await;
    deliver(&app, "msg_created", &fixture("session.created")).await;
    assert_eq!(
        app.post_webhook("msg_created", &fixture("session.created"))
            .await
            .status(),
        200,
        "a duplicate delivery is acknowledged"
    );
    assert_eq!(app.replay(ADMIN_TOKEN, "msg_created").await.status(), 202);
    let r = app.drain_without_clerk().await;
    assert_eq!((r.retrying, r.exhausted, r.killed), (0, 0, 0), "{r:?}");
    assert_eq!(activity(&app, &clerk.token(ALICE)).await.len(), 1);
}

#[tokio::test]
async fn bad_activity_requests_get_clear_errors() {
    let (clerk, app) = setup().await;
    let token = clerk.token(ALICE);
    for (query, why) in [
        ("limit=0", "below the range"),
        ("limit=201", "above the range"),
        ("limit=-3", "negative"),
        ("limit=ten", "not a number"),
        ("limit=", "empty"),
        ("limit=2.5", "not whole"),
    ] {
        assert_eq!(
            error_code(app.me_activity(&token, query).await).await,
            (400, "invalid_query".to_owned()),
            "{why}: {query}"
        );
    }
    for (auth, code) in [
        (None, "missing_token"),
        (Some("not-a-jwt"), "invalid_token"),
    ] {
        let resp = match auth {
            Some(t) => app.me_activity(t, "").await,
            None => app.me_activity(Auth::None, "").await,
        };
        assert_eq!(error_code(resp).await, (401, code.to_owned()), "{code}");
    }
}

#[tokio::test]
async fn retention_deletes_activity_as_old_as_deleted_events() {
    let (clerk, app) = setup().await;
    deliver(&app, "msg_old", &fixture("session.created")).await;
    deliver(&app, "msg_new", &fixture("session.ended")).await;
    sqlx::query(
        "UPDATE user_activity SET recorded_at = now() - interval '40 days' WHERE svix_id = 'msg_old'",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let job = Retention {
        jobs_older_than_secs: 7 * 86_400,
        events_older_than_secs: 30 * 86_400,
        origin: Origin::system(),
    };
    let deleted = jobs::handlers::retention::run(&app.ctx, &job)
        .await
        .unwrap();
    assert_eq!(deleted.activity, 1);
    let left = activity(&app, &clerk.token(ALICE)).await;
    assert_eq!(
        left.iter().map(|a| a.kind.as_str()).collect::<Vec<_>>(),
        ["session.ended"]
    );
}
