//! `POST /webhooks/clerk` against the real api and database: signatures, limits, parsing,
//! duplicates, and what is stored for each outcome. Over 400 lines: the bad-input tables of
//! the one public write route, each case with its own message.

use reqwest::Method;
use serde_json::Value;
use tests::bodies::{ErrorBody, WebhookAnswer};
use tests::*;

async fn event_row(app: &TestApp, svix_id: &str) -> Option<(String, String, i32)> {
    sqlx::query_as("SELECT status, event_type, pending_jobs FROM webhook_events WHERE svix_id = $1")
        .bind(svix_id)
        .fetch_optional(app.pool())
        .await
        .unwrap()
}

async fn job_count(app: &TestApp) -> i64 {
    app.queue().count(None).await
}

#[tokio::test]
async fn signed_user_created_is_stored_with_its_job_and_answered_202() {
    let app = TestApp::spawn().await;
    let id = new_svix_id();
    let (status, body) =
        parse::<WebhookAnswer>(app.post_webhook(&id, &fixture("user.created")).await).await;
    assert_eq!(status, 202, "{body:?}");
    assert_eq!(body.status, "accepted");
    let job_ids = body.job_ids.expect("accepted names its jobs");
    assert_eq!(job_ids.len(), 1);
    assert_eq!(
        event_row(&app, &id).await,
        Some(("queued".into(), "user.created".into(), 1))
    );
    let stored: Value = sqlx::query_scalar("SELECT payload FROM webhook_events WHERE svix_id = $1")
        .bind(&id)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(stored, fixture_json("user.created"));
    let job = app.queue().job(&job_ids[0]).await;
    assert_eq!(job.job_type, "authsync.provision_user");
    assert_eq!(job.svix_id.as_deref(), Some(id.as_str()));
    app.drain().await;
}

#[tokio::test]
async fn bad_deliveries_are_refused_with_clear_errors_and_store_nothing() {
    let app = TestApp::spawn().await;
    let body = fixture("user.created");
    let now = now_secs();
    let id = new_svix_id();
    let mut tampered = body.clone();
    let pos = tampered.iter().position(|b| *b == b'A').unwrap();
    tampered[pos] = b'B';
    let signed = |secret: &str, ts: i64| svix_headers(secret, &id, ts, &body);
    let without = |name: &str| {
        signed(SECRET, now)
            .into_iter()
            .filter(|(k, _)| *k != name)
            .collect::<Vec<_>>()
    };
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "wrong secret",
            signed(FOREIGN_SECRET, now),
            body.clone(),
            401,
            "invalid_signature",
        ),
        (
            "tampered body",
            signed(SECRET, now),
            tampered,
            401,
            "invalid_signature",
        ),
        (
            "stale timestamp",
            signed(SECRET, now - 301),
            body.clone(),
            401,
            "timestamp_out_of_tolerance",
        ),
        (
            "future timestamp",
            signed(SECRET, now + 301),
            body.clone(),
            401,
            "timestamp_out_of_tolerance",
        ),
        (
            "missing svix-id",
            without("svix-id"),
            body.clone(),
            400,
            "missing_svix_header",
        ),
        (
            "missing svix-timestamp",
            without("svix-timestamp"),
            body.clone(),
            400,
            "missing_svix_header",
        ),
        (
            "missing svix-signature",
            without("svix-signature"),
            body.clone(),
            400,
            "missing_svix_header",
        ),
        (
            "no headers at all",
            vec![],
            body.clone(),
            400,
            "missing_svix_header",
        ),
        (
            "garbage signature",
            vec![
                ("svix-id", id.clone()),
                ("svix-timestamp", now.to_string()),
                ("svix-signature", "v1,AAAA".into()),
            ],
            body.clone(),
            401,
            "invalid_signature",
        ),
        (
            "timestamp in milliseconds",
            svix_headers(SECRET, &id, now * 1000, &body),
            body.clone(),
            401,
            "timestamp_out_of_tolerance",
        ),
        // Extreme values once overflowed the window arithmetic (a panic before the signature
        // check in a debug build).
        (
            "smallest i64 timestamp",
            svix_headers(SECRET, &id, i64::MIN, &body),
            body.clone(),
            401,
            "timestamp_out_of_tolerance",
        ),
        (
            "largest i64 timestamp",
            svix_headers(SECRET, &id, i64::MAX, &body),
            body.clone(),
            401,
            "timestamp_out_of_tolerance",
        ),
        (
            "timestamp beyond i64",
            vec![
                ("svix-id", id.clone()),
                ("svix-timestamp", "-99999999999999999999999".into()),
                ("svix-signature", "v1,AAAA".into()),
            ],
            body.clone(),
            401,
            "timestamp_out_of_tolerance",
        ),
    ];
    for (name, headers, body, want_status, want_code) in cases {
        let (status, resp) = parse::<ErrorBody>(app.post_webhook_with(&headers, body).await).await;
        assert_eq!(status, want_status, "{name}: {resp:?}");
        assert_eq!(resp.error.code, want_code, "{name}: {resp:?}");
        assert!(!resp.error.message.is_empty(), "{name}");
    }
    assert_eq!(event_row(&app, &id).await, None);
    assert_eq!(job_count(&app).await, 0);
}

#[tokio::test]
async fn the_second_of_two_secrets_verifies() {
    let app = TestApp::spawn().await;
    let id = new_svix_id();
    let body = fixture("user.created");
    let resp = app
        .post_webhook_with(&svix_headers(SECOND_SECRET, &id, now_secs(), &body), body)
        .await;
    assert_eq!(resp.status(), 202);
    app.drain().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_with_or_without_content_length() {
    let app = TestApp::spawn().await;
    let big = vec![b' '; api::config::DEFAULT_BODY_LIMIT + 1];
    let id = new_svix_id();
    let (status, body) = parse::<ErrorBody>(app.post_webhook(&id, &big).await).await;
    assert_eq!(status, 413, "{body:?}");
    assert_eq!(body.error.code, "payload_too_large");

    // Chunked: no content-length, the limit is enforced while reading.
    let stream = futures::stream::iter((0..600).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let resp = app
        .request(Method::POST, "/webhooks/clerk", Auth::None)
        .headers(reqwest::header::HeaderMap::from_iter(
            svix_headers(SECRET, &id, now_secs(), b"x")
                .into_iter()
                .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())),
        ))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(event_row(&app, &id).await, None);
}

#[tokio::test]
async fn signed_but_unparseable_bodies_are_400_and_recorded_as_rejected() {
    let app = TestApp::spawn().await;
    let cases: &[(&str, &[u8], &str)] = &[
        ("not json", b"hello", "not a JSON Clerk event envelope"),
        ("json array", b"[1,2]", "not a JSON Clerk event envelope"),
        (
            "no timestamp",
            br#"{"type":"user.created","data":{}}"#,
            "timestamp",
        ),
        (
            "user without id",
            br#"{"type":"user.created","data":{"updated_at":1},"timestamp":1}"#,
            "does not match Clerk's schema",
        ),
        (
            "bad user id",
            br#"{"type":"user.updated","data":{"id":"org_1","updated_at":1},"timestamp":1}"#,
            "invalid id",
        ),
        (
            "delete without id",
            br#"{"type":"user.deleted","data":{"deleted":true},"timestamp":1}"#,
            "does not match Clerk's schema",
        ),
        // Valid JSON, but Postgres text and jsonb cannot hold a NUL.
        (
            "NUL escape in a name",
            br#"{"type":"user.created","data":{"id":"user_1","first_name":"a\u0000b","updated_at":1},"timestamp":1}"#,
            "(NUL)",
        ),
        ("raw NUL byte", b"{\"type\":\"user.created\0\"}", "not a JSON Clerk event envelope"),
    ];
    for (name, body, want) in cases {
        let id = new_svix_id();
        let (status, resp) = parse::<ErrorBody>(app.post_webhook(&id, body).await).await;
        assert_eq!(status, 400, "{name}: {resp:?}");
        assert_eq!(resp.error.code, "unparseable_event", "{name}");
        assert!(resp.error.message.contains(want), "{name}: {resp:?}");
        let (st, _, _) = event_row(&app, &id)
            .await
            .unwrap_or_else(|| panic!("{name}: not recorded"));
        assert_eq!(st, "rejected", "{name}");
        let err: Option<String> =
            sqlx::query_scalar("SELECT last_error FROM webhook_events WHERE svix_id = $1")
                .bind(&id)
                .fetch_one(app.pool())
                .await
                .unwrap();
        assert!(err.unwrap().contains(want), "{name}");
    }
    assert_eq!(job_count(&app).await, 0);
}

/// A signed body with a value of the wrong type: the answer and the stored `last_error` name
/// the field and the mismatch, never the value (an email address, a phone number).
#[tokio::test]
async fn parse_errors_are_answered_and_stored_without_the_values() {
    let app = TestApp::spawn().await;
    let mut number_as_email = fixture_json("user.created");
    number_as_email["data"]["email_addresses"][0]["email_address"] = 4155550123_i64.into();
    let mut email_as_number = fixture_json("user.created");
    email_as_number["data"]["updated_at"] = "alice.secret@example.com".into();
    let cases = [
        (
            "a number where the address goes",
            number_as_email,
            "email_addresses[0].email_address",
            "4155550123",
        ),
        (
            "an address where a number goes",
            email_as_number,
            "updated_at",
            "alice.secret",
        ),
    ];
    for (name, body, path, value) in cases {
        let id = new_svix_id();
        let (status, resp) = parse::<ErrorBody>(
            app.post_webhook(&id, &serde_json::to_vec(&body).unwrap())
                .await,
        )
        .await;
        assert_eq!(
            (status, resp.error.code.as_str()),
            (400, "unparseable_event"),
            "{name}"
        );
        let message = resp.error.message.as_str();
        let stored: String =
            sqlx::query_scalar("SELECT last_error FROM webhook_events WHERE svix_id = $1")
                .bind(&id)
                .fetch_one(app.pool())
                .await
                .unwrap();
        for shown in [message, stored.as_str()] {
            assert!(
                shown.contains(path) && shown.contains("invalid type"),
                "{name}: {shown}"
            );
            assert!(!shown.contains(value), "{name}: the value leaked: {shown}");
        }
    }
}

#[tokio::test]
async fn known_but_unhandled_and_unknown_types_are_200_ignored_and_recorded() {
    let app = TestApp::spawn().await;
    let mut brand_new = fixture_json("session.created");
    brand_new["type"] = "billing.subscription.created".into();
    let cases = vec![
        ("email.created", fixture("email.created")),
        (
            "billing.subscription.created",
            serde_json::to_vec(&brand_new).unwrap(),
        ),
    ];
    for (event_type, body) in cases {
        let id = new_svix_id();
        let (status, resp) = parse::<WebhookAnswer>(app.post_webhook(&id, &body).await).await;
        assert_eq!(status, 200, "{event_type}: {resp:?}");
        assert_eq!(resp.status, "ignored");
        assert_eq!(
            event_row(&app, &id).await,
            Some(("ignored".into(), event_type.into(), 0))
        );
    }
    assert_eq!(job_count(&app).await, 0);
}

#[tokio::test]
async fn a_repeated_svix_id_is_200_duplicate_and_enqueues_nothing() {
    let app = TestApp::spawn().await;
    let id = new_svix_id();
    let body = fixture("user.created");
    assert_eq!(app.post_webhook(&id, &body).await.status(), 202);
    let (status, resp) = parse::<WebhookAnswer>(app.post_webhook(&id, &body).await).await;
    assert_eq!(status, 200);
    assert_eq!(resp.status, "duplicate");
    assert_eq!(job_count(&app).await, 1);
    app.drain().await;
    // After processing, a late redelivery is still a duplicate.
    let (_, late) = parse::<WebhookAnswer>(app.post_webhook(&id, &body).await).await;
    assert_eq!(late.status, "duplicate");
    assert_eq!(job_count(&app).await, 1);
}

#[tokio::test]
async fn concurrent_duplicates_store_one_event_and_one_job() {
    let app = TestApp::spawn().await;
    let id = new_svix_id();
    let body = fixture("user.created");
    let sends = (0..50).map(|_| app.post_webhook(&id, &body));
    let statuses: Vec<u16> = futures::future::join_all(sends)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        49,
        "{statuses:?}"
    );
    assert_eq!(job_count(&app).await, 1);
    app.drain().await;
}

#[tokio::test]
async fn an_unreachable_database_is_503_with_retry_after_and_never_2xx() {
    // A database URL nothing listens on: the api starts (lazy pool) but cannot store events.
    let db = TestDb::new().await;
    let broken = db.url.replacen(&format!(":{}", db_port(&db.url)), ":1", 1);
    let app = TestApp::builder().db(db).api_database(broken).spawn().await;
    let body = fixture("user.created");
    let resp = app.post_webhook(&new_svix_id(), &body).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert_eq!(error_code(resp).await, (503, "unavailable".to_owned()));
    // Signed but unparseable: cannot be recorded either, so it is 503 too (Svix will retry).
    let resp = app.post_webhook(&new_svix_id(), b"garbage").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(app.readyz().await.status(), 503);
}

fn db_port(url: &str) -> u16 {
    url::Url::parse(url).unwrap().port().unwrap_or(5432)
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    assert_eq!(app.healthz().await.status(), 200);
    let r = app.readyz().await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(r.headers()[name], value, "{name}");
    }
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert!(
        !r.headers().contains_key("strict-transport-security"),
        "no HSTS over plain HTTP"
    );
    let tls = app
        .request(Method::GET, "/healthz", Auth::None)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(tls.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .starts_with("max-age="));
    // Errors carry them too.
    let e = app.post_webhook_with(&[], b"{}".to_vec()).await;
    assert_eq!(e.headers()["x-content-type-options"], "nosniff");
}

/// The intake transaction sends no NOTIFY (apalis' per-row trigger is gone); the api's
/// coalesced wake-up after commit still gets an idle worker going at once.
#[tokio::test]
async fn an_accepted_webhook_wakes_an_idle_worker_without_its_poll() {
    let app = TestApp::spawn().await;
    let trigger: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'apalis.jobs'::regclass AND tgname = 'notify_workers'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(trigger, 0, "apalis' per-row NOTIFY trigger is dropped");
    // A poll far longer than the wait below: only the wake-up can start the job.
    let worker = RunningWorker::start(
        app.ctx.clone(),
        jobs::queue::registry(),
        jobs::queue::WorkerSettings {
            poll_interval: std::time::Duration::from_secs(3600),
            ..Default::default()
        },
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let body = user_event(
        "user.created",
        "user_woken",
        Some("woken@example.com"),
        1,
        None,
    );
    assert_eq!(app.post_webhook(&new_svix_id(), &body).await.status(), 202);
    app.queue()
        .wait_for_idle(std::time::Duration::from_secs(10))
        .await;
    assert!(user(app.pool(), "user_woken").await.is_some());
    worker.stop().await;
}

/// Concurrent deliveries are stored together (one statement for whatever arrived meanwhile):
/// each answer still names exactly its own event's jobs, and duplicates among them are
/// answered as such.
#[tokio::test]
async fn concurrent_deliveries_each_get_their_own_event_and_jobs() {
    let app = &TestApp::spawn().await;
    let events: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            let body = user_event(
                "user.created",
                &format!("user_batch{i}"),
                Some(&format!("batch{i}@example.com")),
                1,
                None,
            );
            (new_svix_id(), body)
        })
        .collect();
    // Every fourth event is also delivered a second time, at the same moment.
    let sends = events
        .iter()
        .chain(events.iter().step_by(4))
        .map(|(id, body)| async move {
            (
                id.clone(),
                parse::<WebhookAnswer>(app.post_webhook(id, body).await).await,
            )
        });
    let answers = futures::future::join_all(sends).await;
    let mut accepted = std::collections::HashMap::new();
    let mut duplicates = 0;
    for (id, (status, resp)) in &answers {
        match status {
            202 => {
                assert_eq!(&resp.svix_id, id);
                let jobs = resp.job_ids.as_deref().unwrap_or_default();
                assert_eq!(jobs.len(), 1, "{resp:?}");
                assert!(accepted.insert(id.clone(), jobs[0].clone()).is_none());
            }
            200 => {
                assert_eq!(resp.status, "duplicate", "{resp:?}");
                duplicates += 1;
            }
            other => panic!("{id}: {other} {resp:?}"),
        }
    }
    assert_eq!((accepted.len(), duplicates), (40, 10));
    // Each answered job is in the database, belongs to the event it was answered for, and is
    // the only job of that event.
    let rows = app.queue().jobs(None).await;
    assert_eq!(rows.len(), 40);
    for job in rows {
        let svix = job.svix_id.expect("a webhook job names its event");
        assert_eq!(accepted.get(&svix), Some(&job.id), "{svix}");
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE status = 'queued'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(stored, 40);
    app.drain().await;
}

/// When the database refuses one delivery's values, only that delivery fails: it is recorded
/// as `rejected` and answered 400, like a body that does not parse (a retry could not store it
/// either); the deliveries stored beside it are accepted.
#[tokio::test]
async fn a_delivery_the_database_refuses_fails_alone() {
    let app = &TestApp::spawn().await;
    let bad = new_svix_id();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.svix_id = '{bad}' AND NEW.status <> 'rejected' THEN \
             RAISE EXCEPTION 'refused by a test trigger'; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON webhook_events FOR EACH ROW EXECUTE FUNCTION refuse();"
    )))
    .execute(app.pool())
    .await
    .unwrap();
    let mut ids: Vec<String> = (0..20).map(|_| new_svix_id()).collect();
    ids.push(bad.clone());
    let sends = ids.iter().enumerate().map(|(i, id)| {
        let body = user_event("user.created", &format!("user_r{i}"), None, 1, None);
        async move {
            (
                id.clone(),
                app.post_webhook(id, &body).await.status().as_u16(),
            )
        }
    });
    for (id, status) in futures::future::join_all(sends).await {
        let want = if id == bad { 400 } else { 202 };
        assert_eq!(status, want, "{id}");
    }
    let (status, _, _) = event_row(app, &bad).await.expect("recorded");
    assert_eq!(status, "rejected");
    let err: String =
        sqlx::query_scalar("SELECT last_error FROM webhook_events WHERE svix_id = $1")
            .bind(&bad)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert!(err.contains("refused by a test trigger"), "{err}");
    assert_eq!(job_count(app).await, 20);
    app.drain().await;
}
