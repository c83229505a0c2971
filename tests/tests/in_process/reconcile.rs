//! Reconcile against a fake Clerk: drift in both directions and a 429 in the middle; a
//! Backend API that knows none of our users (deletions held until an operator confirms); a
//! secret key of another instance (the run fails `instance_mismatch` and changes nothing).

use jobs::audit::Origin;
use jobs::handlers::reconcile::Reconcile;
use jobs::queue::Job;
use serde_json::{json, Value};
use tests::bodies::{Confirmed, ReconcileReport, ReconcileStarted};
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
    let mut app = TestApp::builder().clerk(&clerk).spawn().await;
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
        assert_eq!(app.post_webhook(&new_svix_id(), &body).await.status(), 202);
    }
    // Here but gone from Clerk: u8.
    assert_eq!(
        app.post_webhook(
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
        (
            &counts["scanned"],
            &counts["created"],
            &counts["updated"],
            &counts["deleted"],
            &counts["held_deletions"]
        ),
        (&json!(7), &json!(2), &json!(1), &json!(1), &json!(0))
    );
}

/// Our side: `n` users `user_k1..` plus an admin, created through webhooks (no write-back).
async fn seed(app: &mut TestApp, n: usize) {
    let with_clerk = app.ctx.clerk.take();
    let mut ids: Vec<(String, Option<&str>)> =
        (1..=n).map(|i| (format!("user_k{i}"), None)).collect();
    ids.push(("user_admin".into(), Some("admin")));
    for (id, role) in &ids {
        let body = user_event(
            "user.created",
            id,
            Some(&format!("{id}@example.com")),
            10,
            *role,
        );
        assert_eq!(app.post_webhook(&new_svix_id(), &body).await.status(), 202);
    }
    app.drain().await;
    app.ctx.clerk = with_clerk;
}

/// `GET /admin/api/reconcile` as the operator.
async fn runs(app: &TestApp) -> ReconcileReport {
    let (s, report) = parse::<ReconcileReport>(app.reconcile_runs(ADMIN_TOKEN).await).await;
    assert_eq!(s, 200);
    report
}

async fn live_users(app: &TestApp) -> usize {
    users(app.pool())
        .await
        .iter()
        .filter(|u| u.deleted_at_ms.is_none())
        .count()
}

/// Runs a Reconcile through the queue, as `POST /admin/api/reconcile` does; returns its job id.
async fn run_reconcile(app: &TestApp, token: &str) -> String {
    let (s, started) = parse::<ReconcileStarted>(app.reconcile(token).await).await;
    assert_eq!(s, 202, "{started:?}");
    app.drain().await;
    started.job_id
}

#[tokio::test]
async fn a_backend_that_knows_none_of_our_users_deletes_nobody_until_an_operator_confirms() {
    let clerk = FakeClerk::start().await;
    let mut app = TestApp::builder().clerk(&clerk).spawn().await;
    app.ctx.reconcile.session_jwks_url = Some(clerk.jwks_url()); // same instance: check passes
    seed(&mut app, 11).await;
    // Clerk lists nobody and answers 404 for each of our 12 users: more than the default 10.
    let admin = clerk.token("user_admin");
    let job_id = run_reconcile(&app, &admin).await;

    assert_eq!(live_users(&app).await, 12, "nothing is deleted");
    let (_, report) = parse::<ReconcileReport>(app.reconcile_runs(&admin).await).await;
    let run = &report.runs[0];
    assert_eq!(
        (
            run.job_id.as_deref(),
            run.deleted,
            run.held_deletions,
            &run.error
        ),
        (Some(job_id.as_str()), Some(0), 12, &None),
        "{report:?}"
    );

    let (s, confirmed) = parse::<Confirmed>(app.confirm_reconcile(&admin, &job_id).await).await;
    assert_eq!((s, confirmed.confirmed), (202, 12), "{confirmed:?}");
    assert_eq!(confirmed.job_ids.len(), 12);
    assert_eq!(
        error_code(app.confirm_reconcile(&admin, &job_id).await).await,
        (409, "conflict".to_owned()),
        "confirmed once"
    );
    let report = app.drain().await;
    assert_eq!((report.succeeded, report.killed), (12, 0));

    assert_eq!(
        live_users(&app).await,
        0,
        "the confirmed deletions are applied"
    );
    let actors: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT actor FROM audit_log WHERE action IN ('user.deleted', 'reconcile.deletions_confirmed')",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(actors, ["user:user_admin"], "the operator is the actor");
    let report = runs(&app).await;
    assert_eq!(
        (
            report.runs[0].held_deletions,
            report.runs[0].confirmed_deletions
        ),
        (0, 12)
    );
    assert_eq!(
        error_code(app.confirm_reconcile(ADMIN_TOKEN, "01JNOSUCHRUN").await).await,
        (404, "not_found".to_owned())
    );
}

#[tokio::test]
async fn a_secret_key_of_another_instance_fails_the_run_and_changes_nothing() {
    let clerk = FakeClerk::start().await;
    let mut app = TestApp::builder().clerk(&clerk).spawn().await;
    app.allow_unfinished_jobs = true; // the refused run stays dead, for the operator to see
    app.ctx.reconcile.session_jwks_url = Some(clerk.jwks_url());
    clerk.serve_backend_keys(&["foreign"]);
    seed(&mut app, 3).await;
    let jobs_before = app.queue().count(None).await;
    let audit_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action <> 'reconcile.requested'")
            .fetch_one(app.pool())
            .await
            .unwrap();

    let (s, started) = parse::<ReconcileStarted>(app.reconcile(ADMIN_TOKEN).await).await;
    assert_eq!(s, 202);
    let report = app.drain().await;
    assert_eq!((report.succeeded, report.killed), (0, 1), "fatal at once");

    assert_eq!(live_users(&app).await, 4, "nobody deleted");
    let jobs_after = app.queue().count(None).await;
    assert_eq!(jobs_after, jobs_before + 1, "no job but the run itself");
    let audit_after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action <> 'reconcile.requested'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(audit_after, audit_before + 1, "only the run's own record");
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM reconcile_held_deletions")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(held, 0);
    assert_eq!(
        clerk.state.lock().unwrap().user_fetches,
        0,
        "stopped before asking about users"
    );

    let job_id = started.job_id.as_str();
    let job = app.queue().job(job_id).await;
    let err = job.error().expect("the run failed");
    assert!(err.contains("instance_mismatch"), "{err}");
    let report = runs(&app).await;
    let run = &report.runs[0];
    assert_eq!(run.job_id.as_deref(), Some(job_id));
    let error = run.error.as_ref().expect("the run's error");
    assert_eq!(error.code, "instance_mismatch", "{report:?}");
    assert!(error.message.contains("CLERK_JWKS_URL"));
}

#[tokio::test]
async fn deletions_up_to_the_limit_apply_at_once() {
    let clerk = FakeClerk::start().await;
    let mut app = TestApp::builder().clerk(&clerk).spawn().await;
    app.ctx.reconcile.max_deletions = 3;
    seed(&mut app, 3).await;
    let mut admin = fixture_json("user.created")["data"].clone();
    admin["id"] = json!("user_admin");
    admin["email_addresses"][0]["email_address"] = json!("user_admin@example.com");
    admin["updated_at"] = json!(10);
    clerk.put_user(admin);

    run_reconcile(&app, ADMIN_TOKEN).await;

    let live: Vec<Option<String>> = users(app.pool())
        .await
        .into_iter()
        .filter(|u| u.deleted_at_ms.is_none())
        .map(|u| u.clerk_user_id)
        .collect();
    assert_eq!(
        live,
        [Some("user_admin".to_owned())],
        "three gone users, three deletions applied"
    );
    let report = runs(&app).await;
    let run = &report.runs[0];
    assert_eq!(
        (run.deleted, run.held_deletions),
        (Some(3), 0),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_hold_nobody_confirmed_is_superseded_by_the_next_run_and_cannot_be_confirmed() {
    let clerk = FakeClerk::start().await;
    let mut app = TestApp::builder().clerk(&clerk).spawn().await;
    seed(&mut app, 11).await;
    // A run while the Backend API lists nobody (a wrong key) holds all 12 users.
    let first = run_reconcile(&app, ADMIN_TOKEN).await;
    // The key is fixed: Clerk knows every user again, and the next run finds nothing to delete.
    for i in 1..=11 {
        let id = format!("user_k{i}");
        clerk.put_user(clerk_user(&id, &format!("{id}@example.com"), 10, 1));
    }
    clerk.put_user(clerk_user("user_admin", "user_admin@example.com", 10, 1));
    let second = run_reconcile(&app, ADMIN_TOKEN).await;

    let report = runs(&app).await;
    let held: Vec<(Option<&str>, i64)> = report
        .runs
        .iter()
        .map(|r| (r.job_id.as_deref(), r.held_deletions))
        .collect();
    assert_eq!(
        held,
        [(Some(second.as_str()), 0), (Some(first.as_str()), 0)],
        "the old hold no longer waits: {report:?}"
    );
    assert_eq!(
        error_code(app.confirm_reconcile(ADMIN_TOKEN, &first).await).await,
        (409, "conflict".to_owned())
    );
    app.drain().await;
    assert_eq!(live_users(&app).await, 12, "nobody is deleted");
}
