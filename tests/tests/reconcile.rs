//! Reconcile against a fake Clerk with drift in both directions and a 429 in the middle.

use jobs::audit::Origin;
use jobs::queue::Job;
use jobs::reconcile::Reconcile;
use serde_json::{json, Value};
use tests::fake_clerk::{FakeClerk, Scripted};
use tests::*;

fn clerk_user(id: &str, email: &str, updated_at: i64, created_at: i64) -> Value {
    let mut u = fixture_json("user.created")["data"].clone();
    u["id"] = json!(id);
    u["email_addresses"][0]["email_address"] = json!(email);
    u["updated_at"] = json!(updated_at);
    u["created_at"] = json!(created_at);
    u
}

#[tokio::test]
async fn drift_is_repaired_in_both_directions_through_a_rate_limit() {
    let clerk = FakeClerk::start().await;
    let mut app = TestApp::spawn_with_clerk(&clerk).await;
    // Seed our side without metadata write-back, which would itself move Clerk's versions.
    let with_clerk = app.ctx.clerk.take();
    // In step: u1..u4. Stale here: u5 (Clerk has a newer version). Missing here: u6, u7.
    for i in 1..=7 {
        clerk.put_user(clerk_user(
            &format!("user_r{i}"),
            &format!("r{i}@example.com"),
            if i == 5 { 50 } else { 10 },
            i,
        ));
    }
    for i in 1..=5 {
        let body = user_event(
            "user.created",
            &format!("user_r{i}"),
            Some(&format!("r{i}@example.com")),
            10,
            None,
        );
        assert_eq!(app.post_signed(&new_svix_id(), &body).await.status(), 202);
    }
    // Here but gone from Clerk: u8.
    assert_eq!(
        app.post_signed(
            &new_svix_id(),
            &user_event("user.created", "user_r8", Some("r8@example.com"), 10, None)
        )
        .await
        .status(),
        202
    );
    app.drain().await;
    app.ctx.clerk = with_clerk;

    // Pages of 3: a request after the first page is rate limited once.
    let job = Reconcile {
        page_size: 3,
        origin: Origin::system(),
    };
    // The first page succeeds, then a 429 with Retry-After, then the rest.
    let c = clerk.state.clone();
    let answers = tokio::spawn(async move {
        // Arm the 429 just after the first page has been served.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        c.lock().unwrap().script.push_back(Scripted::Status {
            code: 429,
            retry_after: Some(1),
        });
    });
    job.handle(&app.ctx)
        .await
        .expect("reconcile runs through the 429");
    answers.await.unwrap();
    assert!(
        clerk.state.lock().unwrap().script.is_empty(),
        "the 429 was served and waited out"
    );
    let report = app.drain().await;
    assert_eq!(
        (report.retrying, report.exhausted, report.killed),
        (0, 0, 0)
    );

    let rows = users(app.pool()).await;
    let live: Vec<&str> = rows
        .iter()
        .filter(|r| r.deleted_at_ms.is_none())
        .filter_map(|r| r.clerk_user_id.as_deref())
        .collect();
    assert_eq!(
        live,
        ["user_r1", "user_r2", "user_r3", "user_r4", "user_r5", "user_r6", "user_r7"]
    );
    assert_eq!(
        user(app.pool(), "user_r5").await.unwrap().clerk_updated_at,
        Some(50)
    );
    assert!(user(app.pool(), "user_r8")
        .await
        .unwrap()
        .deleted_at_ms
        .is_some());
    let counts: Value =
        sqlx::query_scalar("SELECT details FROM audit_log WHERE action = 'reconcile.run'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(
        counts,
        json!({"scanned": 7, "created": 2, "updated": 1, "deleted": 1})
    );
}
