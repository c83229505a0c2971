//! The dashboard fallback against a fake Clerk: session tokens, `/v1/sync`, `/v1/jobs/{id}`
//! (polled and long-polled), the urgent lane, Backend API failure modes and the metadata echo.
//! Over 400 lines: the fallback's whole behaviour in one place, each test a sentence.

use jobs::queue::WorkerSettings;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tests::bodies::{JobList, JobStatus, SyncAnswer};
use tests::fake_clerk::{FakeClerk, Scripted};
use tests::*;

const ALICE: &str = "user_2abcFakeAlice0000000000001";

async fn setup() -> (FakeClerk, TestApp) {
    let clerk = FakeClerk::start().await;
    clerk.put_user(fixture_json("user.created")["data"].clone());
    let app = TestApp::builder().clerk(&clerk).spawn().await;
    (clerk, app)
}

#[tokio::test]
async fn session_tokens_are_checked_case_by_case() {
    let (clerk, app) = setup().await;
    let t = now_secs();
    let with = |patch: Value| {
        let mut c = clerk.claims(ALICE);
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        clerk.token_with("key1", c)
    };
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "missing_token"),
        ("malformed", Some("not.a.jwt".into()), "invalid_token"),
        (
            "expired",
            Some(with(json!({"exp": t - 60}))),
            "token_expired",
        ),
        (
            "not yet valid",
            Some(with(json!({"nbf": t + 60}))),
            "token_not_yet_valid",
        ),
        (
            "issued in the future",
            Some(with(json!({"iat": t + 60}))),
            "token_not_yet_valid",
        ),
        (
            "wrong issuer",
            Some(with(json!({"iss": "https://evil.example"}))),
            "wrong_issuer",
        ),
        (
            "wrong azp",
            Some(with(json!({"azp": "https://evil.example"}))),
            "unauthorized_party",
        ),
        (
            "missing azp",
            Some(with(json!({"azp": null}))),
            "unauthorized_party",
        ),
        (
            "foreign key, unknown kid",
            Some(clerk.token_with("foreign", clerk.claims(ALICE))),
            "unknown_key",
        ),
        (
            "subject not a user id",
            Some(with(json!({"sub": "org_123"}))),
            "invalid_token",
        ),
    ];
    for (name, token, code) in cases {
        let auth = token.as_deref().map_or(Auth::None, Auth::Bearer);
        assert_eq!(
            error_code(app.sync(auth).await).await,
            (401, code.to_owned()),
            "{name}"
        );
    }
    // A token signed by a foreign key under a published kid fails the signature check.
    let pem_forged = {
        let claims = clerk.claims(ALICE);
        let t = clerk.token_with("foreign", claims);
        // Re-label the header as key1.
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[0] = base64_url(&json!({"alg": "RS256", "typ": "JWT", "kid": "key1"}).to_string());
        parts.join(".")
    };
    assert_eq!(
        error_code(app.sync(&pem_forged).await).await,
        (401, "invalid_token".to_owned())
    );
    // The session cookie works like the bearer header.
    let resp = app
        .request(Method::POST, "/v1/sync", Auth::None)
        .header("cookie", format!("__session={}", clerk.token(ALICE)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    app.drain().await;
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_unknown_kids_cause_no_storm() {
    let (clerk, app) = setup().await;
    assert_eq!(app.sync(&clerk.token(ALICE)).await.status(), 202);
    assert_eq!(clerk.jwks_fetches(), 1);
    // Clerk rotates to key2: the unknown kid triggers one refetch and then verifies.
    clerk.publish_keys(&["key1", "key2"]);
    let t2 = clerk.token_with("key2", clerk.claims(ALICE));
    assert_eq!(app.sync(&t2).await.status(), 202);
    assert_eq!(clerk.jwks_fetches(), 2);
    // A burst of tokens with unknown kids: all refused, at most one more fetch.
    let bogus = clerk.token_with("foreign", clerk.claims(ALICE));
    let answers = futures::future::join_all((0..20).map(|_| app.sync(&bogus))).await;
    assert!(answers.iter().all(|r| r.status() == 401));
    assert!(
        clerk.jwks_fetches() <= 3,
        "{} JWKS fetches",
        clerk.jwks_fetches()
    );
    app.drain().await;
}

#[tokio::test]
async fn sync_provisions_through_an_urgent_job_that_the_owner_can_poll() {
    let (clerk, app) = setup().await;
    let token = clerk.token(ALICE);
    let (status, first) = parse::<SyncAnswer>(app.sync(&token).await).await;
    assert_eq!(status, 202, "{first:?}");
    let job_id = first.job_id().to_owned();
    assert_eq!(first.poll_url, Some(format!("/v1/jobs/{job_id}")));
    // A second call while it is outstanding returns the same job.
    let (_, second) = parse::<SyncAnswer>(app.sync(&token).await).await;
    assert_eq!(second.job_id(), job_id);

    let (status, queued) = parse::<Value>(app.job(&token, &job_id, None).await).await;
    assert_eq!(status, 200);
    assert!(queued.get("user").is_none(), "{queued}");
    let queued: JobStatus = serde_json::from_value(queued).unwrap();
    assert_eq!(queued.state, "queued");
    assert_eq!(queued.max_attempts, 10);

    app.drain().await;
    let (_, done) = parse::<JobStatus>(app.job(&token, &job_id, None).await).await;
    assert_eq!(done.state, "succeeded", "{done:?}");
    assert_eq!(done.attempts, 1);
    let user = done.user.expect("the provisioned user");
    assert_eq!(user.clerk_user_id.as_deref(), Some(ALICE));
    assert_eq!(user.email.as_deref(), Some("alice@example.com"));

    let (status, ready) = parse::<SyncAnswer>(app.sync(&token).await).await;
    assert_eq!(status, 200);
    assert_eq!(ready.status, "ready");
    assert_eq!(
        ready.user.and_then(|u| u.email).as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(audit_actions(app.pool(), ALICE).await[0], "user.created");
    let actor: String =
        sqlx::query_scalar("SELECT actor FROM audit_log WHERE subject = $1 ORDER BY id LIMIT 1")
            .bind(ALICE)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(actor, format!("user:{ALICE}"));
}

#[tokio::test]
async fn jobs_are_visible_to_their_owner_only_and_bad_queries_are_400() {
    let (clerk, app) = setup().await;
    let (_, started) = parse::<SyncAnswer>(app.sync(&clerk.token(ALICE)).await).await;
    let job_id = started.job_id();
    assert_eq!(
        error_code(
            app.job(&clerk.token("user_someoneelse"), job_id, None)
                .await
        )
        .await,
        (404, "not_found".to_owned())
    );
    assert_eq!(
        app.job(&clerk.token(ALICE), "01JUNKJUNKJUNKJUNKJUNKJUNK", None)
            .await
            .status(),
        404
    );
    for bad in ["-5", "soon", "1e3"] {
        let path = format!("/v1/jobs/{job_id}?wait_ms={bad}");
        let r = app
            .request(Method::GET, &path, &clerk.token(ALICE))
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(r).await,
            (400, "invalid_wait_ms".to_owned()),
            "{bad}"
        );
    }
    assert_eq!(app.job("", job_id, None).await.status(), 401);
    app.drain().await;
}

#[tokio::test]
async fn long_polling_answers_when_the_job_ends_or_when_the_wait_is_over() {
    let (clerk, app) = setup().await;
    let token = clerk.token(ALICE);
    // No worker: the wait runs out and the job is still queued.
    let (_, started) = parse::<SyncAnswer>(app.sync(&token).await).await;
    let job_id = started.job_id().to_owned();
    let (_, waited) = parse::<JobStatus>(app.job(&token, &job_id, Some(300)).await).await;
    assert_eq!(waited.state, "queued");
    // Start a worker while a long poll is waiting: the answer is the finished job.
    let poll = app.job(&token, &job_id, Some(10_000));
    let worker = RunningWorker::start(
        app.ctx.clone(),
        jobs::queue::registry(),
        WorkerSettings::default(),
    );
    let (_, done) = parse::<JobStatus>(poll.await).await;
    assert_eq!(done.state, "succeeded", "{done:?}");
    assert_eq!(
        done.user.and_then(|u| u.clerk_user_id).as_deref(),
        Some(ALICE)
    );
    // The metadata write-back it enqueued runs too.
    app.queue().wait_for_idle(Duration::from_secs(20)).await;
    worker.stop().await;
}

#[tokio::test]
async fn the_fallback_racing_the_webhook_yields_one_row() {
    let (clerk, app) = setup().await;
    let (_, started) = parse::<SyncAnswer>(app.sync(&clerk.token(ALICE)).await).await;
    assert_eq!(
        app.post_webhook(&new_svix_id(), &fixture("user.created"))
            .await
            .status(),
        202
    );
    // Both jobs run at once in a worker with room for both.
    let worker = RunningWorker::start(
        app.ctx.clone(),
        jobs::queue::registry(),
        WorkerSettings::default(),
    );
    let (_, done) = parse::<JobStatus>(
        app.job(&clerk.token(ALICE), started.job_id(), Some(10_000))
            .await,
    )
    .await;
    assert_eq!(done.state, "succeeded");
    app.queue().wait_for_idle(Duration::from_secs(20)).await;
    worker.stop().await;
    let rows = users(app.pool()).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(app.queue().unfinished(None).await, 0);
}

/// The job's `error` is the generic sentence with the job id as reference, and none of
/// the stored error's words.
fn assert_generic_with_reference(status: &JobStatus, job_id: &str, raw: &[&str]) {
    let shown = status
        .error
        .as_deref()
        .unwrap_or_else(|| panic!("no error: {status:?}"));
    assert!(shown.contains(job_id), "{shown}");
    for word in raw {
        assert!(!shown.contains(word), "{word:?} shown to the user: {shown}");
    }
}

async fn run_at_in_secs(app: &TestApp, job_id: &str) -> f64 {
    app.queue().job(job_id).await.due_in_ms / 1000.0
}

#[tokio::test]
async fn backend_api_failures_are_retried_or_stop_as_classified() {
    let (clerk, mut app) = setup().await;
    let token = clerk.token(ALICE);
    // 429 with Retry-After: the next run waits for it.
    let (_, started) = parse::<SyncAnswer>(app.sync(&token).await).await;
    let job_id = started.job_id().to_owned();

    clerk.script([Scripted::Status {
        code: 429,
        retry_after: Some(30),
    }]);
    assert_eq!(app.drain().await.retrying, 1);
    let wait = run_at_in_secs(&app, &job_id).await;
    assert!((28.0..=31.0).contains(&wait), "retry in {wait}s");
    let (_, st) = parse::<JobStatus>(app.job(&token, &job_id, None).await).await;
    assert_eq!(st.state, "retrying");
    assert_generic_with_reference(&st, &job_id, &["429", "rate limit"]);

    // 500: retried with the exponential backoff.
    app.queue().make_all_due().await;
    clerk.script([Scripted::Status {
        code: 500,
        retry_after: None,
    }]);
    assert_eq!(app.drain().await.retrying, 1);
    let wait = run_at_in_secs(&app, &job_id).await;
    assert!((0.0..=2.1).contains(&wait), "second backoff {wait}s");
    // Clerk's raw answer is for operators, not for the signed-in user.
    let (_, st) = parse::<JobStatus>(app.job(&token, &job_id, None).await).await;
    assert_generic_with_reference(&st, &job_id, &["500", "scripted failure", "Clerk"]);
    let (_, ops) = parse::<JobList>(app.admin_jobs(ADMIN_TOKEN, "state=retrying").await).await;
    let listed = &ops.jobs[0];
    assert_eq!(listed.job_id, job_id, "{ops:?}");
    assert!(
        listed
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("500") && e.contains("scripted failure")),
        "{ops:?}"
    );

    // A slow answer within the timeout still succeeds.
    app.queue().make_all_due().await;
    clerk.script([Scripted::Slow(Duration::from_millis(300))]);
    assert_eq!(
        app.drain().await.succeeded,
        2,
        "the sync job and the metadata write-back it asked for"
    );
    let (_, st) = parse::<JobStatus>(app.job(&token, &job_id, None).await).await;
    assert_eq!((st.state.as_str(), st.attempts), ("succeeded", 3));

    // A user Clerk does not know: 404 stops at once.
    let (_, ghost) = parse::<SyncAnswer>(app.sync(&clerk.token("user_ghost")).await).await;
    assert_eq!(app.drain().await.killed, 1);
    let (_, st) = parse::<JobStatus>(
        app.job(&clerk.token("user_ghost"), ghost.job_id(), None)
            .await,
    )
    .await;
    assert_eq!(st.state, "failed");
    assert_generic_with_reference(&st, ghost.job_id(), &["no user", "404"]);
    app.allow_unfinished_jobs = true;
}

#[tokio::test]
async fn an_urgent_job_finishes_while_ten_thousand_webhook_jobs_wait() {
    let (clerk, app) = setup().await;
    // The backlog: 10,000 ProvisionUser jobs.
    let template: jobs::clerk::UserSnapshot = {
        let ev = jobs::clerk::ClerkEvent::parse(&fixture("user.created")).unwrap();
        match ev.kind {
            jobs::clerk::EventKind::UserCreated(u) => u,
            _ => unreachable!(),
        }
    };
    let mut conn = app.pool().acquire().await.unwrap();
    for chunk in 0..10 {
        let planned: Vec<jobs::planner::PlannedJob> = (0..1000)
            .map(|i| {
                let mut u = template.clone();
                u.clerk_user_id =
                    jobs::clerk::ids::ClerkUserId::parse(&format!("user_backlog{chunk}x{i}"))
                        .unwrap();
                u.email = None;
                jobs::planner::PlannedJob::ProvisionUser(
                    jobs::handlers::provision_user::ProvisionUser {
                        user: u,
                        origin: jobs::audit::Origin::system(),
                    },
                )
            })
            .collect();
        jobs::queue::enqueue(&mut conn, &planned, None)
            .await
            .unwrap();
    }
    drop(conn);
    let worker = RunningWorker::start(
        app.ctx.clone(),
        jobs::queue::registry(),
        WorkerSettings {
            concurrency: 2,
            urgent_concurrency: 1,
            ..Default::default()
        },
    );
    let token = clerk.token(ALICE);
    let (_, started) = parse::<SyncAnswer>(app.sync(&token).await).await;
    let (_, done) = parse::<JobStatus>(app.job(&token, started.job_id(), Some(10_000)).await).await;
    let backlog = app
        .queue()
        .unfinished(Some("authsync.provision_user"))
        .await;
    assert_eq!(done.state, "succeeded", "{done:?}");
    assert!(
        backlog > 5_000,
        "the backlog was still there: {backlog} webhook jobs waiting"
    );
    worker.stop().await;
    // The backlog has made its point; working it off would only slow the suite down.
    app.queue()
        .delete_unfinished("authsync.provision_user")
        .await;
    app.drain().await;
}

#[tokio::test]
async fn metadata_is_written_back_once_and_the_echo_ends_the_chain() {
    let (clerk, app) = setup().await;
    assert_eq!(
        app.post_webhook(&new_svix_id(), &fixture("user.created"))
            .await
            .status(),
        202
    );
    let report = app.drain().await;
    assert_eq!(
        report.succeeded, 2,
        "ProvisionUser and the SyncMetadata it asked for"
    );
    assert_eq!(clerk.metadata_writes(), 1);
    let db_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE clerk_user_id = $1")
        .bind(ALICE)
        .fetch_one(app.pool())
        .await
        .unwrap();
    let in_clerk = clerk.user(ALICE).unwrap();
    assert_eq!(
        in_clerk["public_metadata"],
        json!({"dbId": db_id.to_string(), "role": "user"})
    );

    // Clerk sends our own write back as user.updated: nothing further is enqueued or written.
    let mut echo = fixture_json("user.updated");
    echo["data"] = in_clerk;
    let report = {
        assert_eq!(
            app.post_webhook(&new_svix_id(), &serde_json::to_vec(&echo).unwrap())
                .await
                .status(),
            202
        );
        app.drain().await
    };
    assert_eq!(
        report.succeeded, 1,
        "only the ProvisionUser of the echo ran"
    );
    assert_eq!(clerk.metadata_writes(), 1);
    assert_eq!(app.queue().count(Some("authsync.sync_metadata")).await, 1);

    // A role change in Clerk (admin) is written back as the new role.
    let mut promoted = clerk.user(ALICE).unwrap();
    promoted["public_metadata"]["role"] = json!("admin");
    promoted["updated_at"] = json!(promoted["updated_at"].as_i64().unwrap() + 5000);
    clerk.put_user(promoted.clone());
    echo["data"] = promoted;
    assert_eq!(
        app.post_webhook(&new_svix_id(), &serde_json::to_vec(&echo).unwrap())
            .await
            .status(),
        202
    );
    app.drain().await;
    assert_eq!(user(app.pool(), ALICE).await.unwrap().role, "admin");
    assert_eq!(
        clerk.metadata_writes(),
        1,
        "Clerk already says admin: no write"
    );
}
