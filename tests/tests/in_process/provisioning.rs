//! ProvisionUser and SoftDelete through the real webhook route and queue: at-least-once in, exactly-once effect (README, How correctness is kept),
//! and the email verification rules. Over 400 lines: one file per job's behaviour, each test
//! a sentence a reader looks up here.

use serde_json::Value;
use tests::*;

const ALICE: &str = "user_2abcFakeAlice0000000000001";

async fn deliver(app: &TestApp, body: &[u8]) {
    let status = app.post_webhook(&new_svix_id(), body).await.status();
    assert!(status == 202 || status == 200, "delivery answered {status}");
    let report = app.drain().await;
    assert_eq!(
        (report.retrying, report.exhausted, report.killed),
        (0, 0, 0),
        "{report:?}"
    );
}

#[tokio::test]
async fn user_created_creates_the_row_and_an_audit_entry() {
    let app = TestApp::spawn().await;
    let id = new_svix_id();
    assert_eq!(
        app.post_webhook(&id, &fixture("user.created"))
            .await
            .status(),
        202
    );
    app.drain().await;
    let u = user(app.pool(), ALICE).await.expect("row");
    assert_eq!(u.email.as_deref(), Some("alice@example.com"));
    assert!(u.email_verified);
    assert_eq!(u.role, "user");
    assert_eq!(u.clerk_updated_at, Some(1767955200015));
    assert_eq!(u.deleted_at_ms, None);
    let (actor, ip, ua): (String, Option<String>, Option<String>) =
        sqlx::query_as("SELECT actor, client_ip, user_agent FROM audit_log WHERE subject = $1 AND action = 'user.created'")
            .bind(ALICE)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(actor, format!("webhook:{id}"));
    assert_eq!(ip.as_deref(), Some("203.0.113.7"));
    assert!(ua.unwrap().starts_with("Mozilla/5.0"));
    // The event followed its job.
    let (status, attempts, processed): (String, i32, bool) = sqlx::query_as(
        "SELECT status, attempts, processed_at IS NOT NULL FROM webhook_events WHERE svix_id = $1",
    )
    .bind(&id)
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), attempts, processed),
        ("processed", 1, true)
    );
}

#[tokio::test]
async fn user_updated_moves_to_the_new_primary_email_and_role() {
    let app = TestApp::spawn().await;
    deliver(&app, &fixture("user.created")).await;
    deliver(&app, &fixture("user.updated")).await;
    let u = user(app.pool(), ALICE).await.unwrap();
    assert_eq!(u.email.as_deref(), Some("alice.new@example.com"));
    assert_eq!(u.role, "admin");
    assert_eq!(u.clerk_updated_at, Some(1768214400000));
    let details: Value = sqlx::query_scalar(
        "SELECT details FROM audit_log WHERE subject = $1 AND action = 'user.updated'",
    )
    .bind(ALICE)
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        details["role"],
        serde_json::json!({"from": "user", "to": "admin"})
    );
    let changed: Vec<&str> = details["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        changed.contains(&"email") && changed.contains(&"role"),
        "{changed:?}"
    );
    assert!(
        !details.to_string().contains("alice"),
        "audit details must not carry the address: {details}"
    );
}

#[tokio::test]
async fn an_older_snapshot_after_a_newer_one_changes_nothing() {
    let app = TestApp::spawn().await;
    deliver(&app, &fixture("user.updated")).await;
    let before = user(app.pool(), ALICE).await.unwrap();
    deliver(&app, &fixture("user.created")).await;
    // The session.created snapshot is older still: it records activity, never the user's row.
    deliver(&app, &fixture("session.created")).await;
    assert_eq!(user(app.pool(), ALICE).await.unwrap(), before);
    assert_eq!(audit_actions(app.pool(), ALICE).await, vec!["user.created"]);
}

#[tokio::test]
async fn update_before_create_creates_the_row() {
    let app = TestApp::spawn().await;
    deliver(&app, &fixture("user.updated")).await;
    let u = user(app.pool(), ALICE).await.unwrap();
    assert_eq!(u.email.as_deref(), Some("alice.new@example.com"));
    assert_eq!(users(app.pool()).await.len(), 1);
}

#[tokio::test]
async fn delete_soft_deletes_at_the_event_time_and_repeats_are_harmless() {
    let app = TestApp::spawn().await;
    deliver(&app, &fixture("user.created")).await;
    deliver(&app, &fixture("user.deleted")).await;
    deliver(&app, &fixture("user.deleted")).await;
    let u = user(app.pool(), ALICE).await.unwrap();
    assert_eq!(u.deleted_at_ms, Some(1768819200000));
    assert_eq!(
        u.email.as_deref(),
        Some("alice@example.com"),
        "soft delete keeps the row"
    );
    assert_eq!(
        audit_actions(app.pool(), ALICE).await,
        vec!["user.created", "user.deleted"]
    );
}

#[tokio::test]
async fn a_delete_that_arrives_first_leaves_a_tombstone_no_create_revives() {
    let app = TestApp::spawn().await;
    deliver(&app, &fixture("user.deleted")).await;
    deliver(&app, &fixture("user.created")).await;
    deliver(&app, &fixture("user.updated")).await;
    let rows = users(app.pool()).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].deleted_at_ms, Some(1768819200000), "still deleted");
    assert_eq!(
        rows[0].clerk_updated_at,
        Some(1768214400000),
        "the tombstone took the newest data"
    );
    assert_eq!(
        audit_actions(app.pool(), ALICE).await,
        vec!["user.tombstoned", "user.updated", "user.updated"]
    );
}

#[tokio::test]
async fn a_deleted_user_frees_its_email_for_a_new_account() {
    let app = TestApp::spawn().await;
    deliver(
        &app,
        &user_event(
            "user.created",
            "user_old",
            Some("same@example.com"),
            10,
            None,
        ),
    )
    .await;
    deliver(&app, &user_deleted("user_old", 20)).await;
    deliver(
        &app,
        &user_event(
            "user.created",
            "user_new",
            Some("same@example.com"),
            30,
            None,
        ),
    )
    .await;
    assert_eq!(
        user(app.pool(), "user_new").await.unwrap().email.as_deref(),
        Some("same@example.com")
    );
    assert_eq!(
        user(app.pool(), "user_old").await.unwrap().email.as_deref(),
        Some("same@example.com")
    );
}

#[tokio::test]
async fn phone_only_users_have_no_email() {
    let app = TestApp::spawn().await;
    deliver(&app, &fixture("user.created.no-email")).await;
    let u = user(app.pool(), "user_2abcFakeBobPhone00000000001")
        .await
        .unwrap();
    assert_eq!(u.email, None);
    assert!(!u.email_verified);
}

#[tokio::test]
async fn an_app_row_with_the_same_email_and_no_clerk_id_is_linked_not_duplicated() {
    let app = TestApp::spawn().await;
    let existing: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO users (email, first_name) VALUES ('alice@example.com', 'Pre') RETURNING id",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    deliver(&app, &fixture("user.created")).await;
    let rows = users(app.pool()).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].clerk_user_id.as_deref(), Some(ALICE));
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(id, existing, "the app's dbId is kept");
    assert_eq!(audit_actions(app.pool(), ALICE).await, vec!["user.linked"]);
}

#[tokio::test]
async fn an_email_claimed_by_a_newer_snapshot_moves_without_retries_and_is_audited() {
    let app = TestApp::spawn().await;
    // A holds the address at version 10; B claims it at version 20 (A changed address in
    // Clerk, but that update has not arrived yet).
    deliver(
        &app,
        &user_event(
            "user.created",
            "user_a",
            Some("shared@example.com"),
            10,
            None,
        ),
    )
    .await;
    deliver(
        &app,
        &user_event(
            "user.created",
            "user_b",
            Some("shared@example.com"),
            20,
            None,
        ),
    )
    .await;
    assert_eq!(
        user(app.pool(), "user_b").await.unwrap().email.as_deref(),
        Some("shared@example.com")
    );
    assert_eq!(user(app.pool(), "user_a").await.unwrap().email, None);
    assert_eq!(
        audit_actions(app.pool(), "user_a").await,
        vec!["user.created", "user.email_conflict"]
    );
    // A's late update arrives with its new address.
    deliver(
        &app,
        &user_event(
            "user.updated",
            "user_a",
            Some("a.new@example.com"),
            15,
            None,
        ),
    )
    .await;
    assert_eq!(
        user(app.pool(), "user_a").await.unwrap().email.as_deref(),
        Some("a.new@example.com")
    );

    // An older snapshot that claims a newer holder's address is stored without it.
    deliver(
        &app,
        &user_event(
            "user.created",
            "user_c",
            Some("shared@example.com"),
            5,
            None,
        ),
    )
    .await;
    assert_eq!(user(app.pool(), "user_c").await.unwrap().email, None);
    assert_eq!(
        user(app.pool(), "user_b").await.unwrap().email.as_deref(),
        Some("shared@example.com")
    );
    assert!(audit_actions(app.pool(), "user_c")
        .await
        .contains(&"user.email_conflict".to_owned()));
}

#[tokio::test]
async fn roles_other_than_admin_become_user() {
    let app = TestApp::spawn().await;
    deliver(
        &app,
        &user_event("user.created", "user_r", None, 1, Some("superuser")),
    )
    .await;
    assert_eq!(user(app.pool(), "user_r").await.unwrap().role, "user");
    deliver(
        &app,
        &user_event("user.updated", "user_r", None, 2, Some("admin")),
    )
    .await;
    assert_eq!(user(app.pool(), "user_r").await.unwrap().role, "admin");
}

/// `body` with its primary address not verified (yet), as Clerk reports one.
fn unverified(body: Vec<u8>) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["data"]["email_addresses"][0]["verification"]["status"] = "unverified".into();
    serde_json::to_vec(&v).unwrap()
}

/// Issue 10, item 6: only a verified address links an app-created row or takes an address
/// from a user whose address is verified; between equals the newer snapshot keeps it.
#[tokio::test]
async fn only_a_verified_address_links_an_app_row_or_takes_a_verified_address() {
    struct Case {
        name: &'static str,
        /// An app-created row (no Clerk id) holds the address first.
        app_row: bool,
        /// Delivered in this order; the last is the claim under test.
        events: Vec<Vec<u8>>,
        /// Who holds the address afterwards: a Clerk id, or "app" for the app's row.
        holder: &'static str,
        /// The Clerk user that ends up without an address, with a `user.email_conflict` entry.
        loser: Option<&'static str>,
    }
    let ev = |id: &str, at: i64| user_event("user.created", id, Some("x@example.com"), at, None);
    let cases = [
        Case {
            name: "a verified address links the app's row",
            app_row: true,
            events: vec![ev("user_a", 10)],
            holder: "user_a",
            loser: None,
        },
        Case {
            name: "an unverified address does not link the app's row: a new row without it",
            app_row: true,
            events: vec![unverified(ev("user_a", 10))],
            holder: "app",
            loser: Some("user_a"),
        },
        Case {
            name: "a newer unverified claim does not strip a verified owner",
            app_row: false,
            events: vec![ev("user_a", 10), unverified(ev("user_b", 20))],
            holder: "user_a",
            loser: Some("user_b"),
        },
        Case {
            name: "a verified claim takes the address from a newer unverified holder",
            app_row: false,
            events: vec![unverified(ev("user_a", 20)), ev("user_b", 10)],
            holder: "user_b",
            loser: Some("user_a"),
        },
        Case {
            name: "between two verified snapshots the newer keeps it",
            app_row: false,
            events: vec![ev("user_a", 20), ev("user_b", 10)],
            holder: "user_a",
            loser: Some("user_b"),
        },
        Case {
            name: "between two unverified snapshots the newer takes it",
            app_row: false,
            events: vec![unverified(ev("user_a", 10)), unverified(ev("user_b", 20))],
            holder: "user_b",
            loser: Some("user_a"),
        },
    ];
    for case in cases {
        let app = TestApp::spawn().await;
        if case.app_row {
            sqlx::query("INSERT INTO users (email, first_name) VALUES ('x@example.com', 'Pre')")
                .execute(app.pool())
                .await
                .unwrap();
        }
        for body in &case.events {
            deliver(&app, body).await;
        }
        let holders: Vec<Option<String>> =
            sqlx::query_scalar("SELECT clerk_user_id FROM users WHERE email = 'x@example.com'")
                .fetch_all(app.pool())
                .await
                .unwrap();
        let want = (case.holder != "app").then(|| case.holder.to_owned());
        assert_eq!(holders, [want], "{}", case.name);
        if let Some(loser) = case.loser {
            let row = user(app.pool(), loser).await.expect(case.name);
            assert_eq!(row.email, None, "{}", case.name);
            assert!(
                audit_actions(app.pool(), loser)
                    .await
                    .contains(&"user.email_conflict".to_owned()),
                "{}: the conflict is audited",
                case.name
            );
        }
        let rows = users(app.pool()).await.len();
        let expected = case.events.len() + usize::from(case.app_row && case.loser.is_some());
        assert_eq!(rows, expected, "{}: rows", case.name);
    }
}
