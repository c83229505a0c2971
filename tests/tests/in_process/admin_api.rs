//! The operator API: auth on every route, cross-site cookie requests refused, the event log
//! with filters and cursors, redaction by field, replay and retry end to end.

use reqwest::Method;
use serde_json::{json, Value};
use tests::fake_clerk::FakeClerk;
use tests::*;

enum Auth<'a> {
    None,
    Token(&'a str),
}

async fn call(app: &TestApp, method: Method, path: &str, auth: Auth<'_>) -> (u16, Value) {
    let mut req = app.client.request(method, format!("{}{path}", app.address));
    if let Auth::Token(t) = auth {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn setup() -> (FakeClerk, TestApp) {
    let clerk = FakeClerk::start().await;
    let app = TestApp::spawn_with_clerk(&clerk).await;
    for (id, role) in [("user_admin", Some("admin")), ("user_plain", None)] {
        let body = user_event(
            "user.created",
            id,
            Some(&format!("{id}@example.com")),
            1,
            role,
        );
        assert_eq!(app.post_signed(&new_svix_id(), &body).await.status(), 202);
    }
    let mut ctx = app.ctx.clone();
    ctx.clerk = None; // no metadata write-back in this setup
    jobs::queue::drain(&ctx, &jobs::queue::registry())
        .await
        .unwrap();
    (clerk, app)
}

#[tokio::test]
async fn every_operator_route_checks_credentials() {
    let (clerk, app) = setup().await;
    let admin = clerk.token("user_admin");
    let plain = clerk.token("user_plain");
    // Each route with what an admin gets back.
    let routes = [
        (Method::GET, "/admin/api/events", 200),
        (Method::GET, "/admin/api/events/msg_none", 404),
        (Method::POST, "/admin/api/events/msg_none/replay", 404),
        (Method::GET, "/admin/api/jobs", 200),
        (Method::GET, "/admin/api/queues", 200),
        (Method::POST, "/admin/api/jobs/01JNONE/retry", 404),
        (Method::GET, "/admin/api/reconcile", 200),
        (Method::POST, "/admin/api/reconcile", 202),
    ];
    for (m, path, admin_status) in routes {
        assert_eq!(
            call(&app, m.clone(), path, Auth::None).await.0,
            401,
            "{m} {path} without credentials"
        );
        assert_eq!(
            call(&app, m.clone(), path, Auth::Token("wrong-token"))
                .await
                .0,
            401,
            "{m} {path} with a wrong token"
        );
        let (s, body) = call(&app, m.clone(), path, Auth::Token(&plain)).await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{m} {path} as a non-admin"
        );
        for who in [ADMIN_TOKEN, admin.as_str()] {
            let (s, body) = call(&app, m.clone(), path, Auth::Token(who)).await;
            assert_eq!(s, admin_status, "{m} {path} as an admin: {body}");
        }
    }
    // The admins' POST /admin/api/reconcile queued one run; let it finish.
    app.drain().await;
}

#[tokio::test]
async fn the_event_log_filters_sorts_pages_and_redacts() {
    let (_clerk, app) = setup().await;
    assert_eq!(
        app.post_signed("msg_otp", &fixture("email.created"))
            .await
            .status(),
        200
    );
    assert_eq!(app.post_signed("msg_bad", b"not json").await.status(), 400);
    let (s, all) = call(
        &app,
        Method::GET,
        "/admin/api/events",
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["svix_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(&ids[..2], ["msg_bad", "msg_otp"], "newest first");

    let (_, rejected) = call(
        &app,
        Method::GET,
        "/admin/api/events?status=rejected",
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(rejected["events"].as_array().unwrap().len(), 1);
    assert!(rejected["events"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("not a JSON"));
    let (_, users) = call(
        &app,
        Method::GET,
        "/admin/api/events?type=user.created&order=asc",
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(users["events"].as_array().unwrap().len(), 2);

    // Cursor pagination walks everything once.
    let mut seen = Vec::new();
    let mut path = "/admin/api/events?limit=3".to_owned();
    loop {
        let (_, page) = call(&app, Method::GET, &path, Auth::Token(ADMIN_TOKEN)).await;
        seen.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["svix_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/admin/api/events?limit=3&cursor={}", urlencode(c)),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    for bad in [
        "status=lost",
        "limit=0",
        "since=yesterday",
        "order=sideways",
        "cursor=nonsense",
    ] {
        let (s, body) = call(
            &app,
            Method::GET,
            &format!("/admin/api/events?{bad}"),
            Auth::Token(ADMIN_TOKEN),
        )
        .await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (400, Some("invalid_query")),
            "{bad}"
        );
    }

    let (s, detail) = call(
        &app,
        Method::GET,
        "/admin/api/events/msg_otp",
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(detail["payload"]["data"]["data"]["otp_code"], "[redacted]");
    assert!(
        !detail.to_string().contains("424242"),
        "the one-time code never leaves"
    );
    assert_eq!(
        call(
            &app,
            Method::GET,
            "/admin/api/events/msg_missing",
            Auth::Token(ADMIN_TOKEN)
        )
        .await
        .0,
        404
    );
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B")
        .replace(':', "%3A")
        .replace('|', "%7C")
}

#[tokio::test]
async fn replay_enqueues_the_events_jobs_again() {
    let (_clerk, app) = setup().await;
    let id: String = sqlx::query_scalar(
        "SELECT svix_id FROM webhook_events WHERE event_type = 'user.created' LIMIT 1",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    let (s, body) = call(
        &app,
        Method::POST,
        &format!("/admin/api/events/{id}/replay"),
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["job_ids"].as_array().unwrap().len(), 1);
    let (_, detail) = call(
        &app,
        Method::GET,
        &format!("/admin/api/events/{id}"),
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(detail["status"], "queued");
    let mut ctx = app.ctx.clone();
    ctx.clerk = None;
    jobs::queue::drain(&ctx, &jobs::queue::registry())
        .await
        .unwrap();
    let (_, detail) = call(
        &app,
        Method::GET,
        &format!("/admin/api/events/{id}"),
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(
        (detail["status"].as_str(), detail["attempts"].as_i64()),
        (Some("processed"), Some(2))
    );
    assert_eq!(users(app.pool()).await.len(), 2, "idempotent: no duplicate");
    // Ignored types cause no jobs: nothing to replay.
    assert_eq!(
        app.post_signed("msg_sess", &fixture("session.created"))
            .await
            .status(),
        200
    );
    let (s, body) = call(
        &app,
        Method::POST,
        "/admin/api/events/msg_sess/replay",
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (400, Some("not_replayable"))
    );
}

#[tokio::test]
async fn a_dead_job_is_listed_and_can_be_retried() {
    let (clerk, app) = setup().await;
    // The fallback for a user Clerk does not know fails fatally.
    let token = clerk.token("user_ghost");
    let (_, started) = call(&app, Method::POST, "/v1/sync", Auth::Token(&token)).await;
    let job_id = started["job_id"].as_str().unwrap().to_owned();
    assert_eq!(app.drain().await.killed, 1);
    let (_, dead) = call(
        &app,
        Method::GET,
        "/admin/api/jobs?state=dead",
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    let listed = &dead["jobs"].as_array().unwrap()[0];
    assert_eq!(listed["job_id"], job_id.as_str());
    assert!(listed["last_error"].as_str().unwrap().contains("no user"));
    let (_, retrying) = call(
        &app,
        Method::GET,
        "/admin/api/jobs?state=retrying",
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    assert!(retrying["jobs"].as_array().unwrap().is_empty());
    assert_eq!(
        call(
            &app,
            Method::GET,
            "/admin/api/jobs?state=weird",
            Auth::Token(ADMIN_TOKEN)
        )
        .await
        .0,
        400
    );

    // The user appears in Clerk; the operator retries.
    let mut ghost = fixture_json("user.created")["data"].clone();
    ghost["id"] = json!("user_ghost");
    ghost["email_addresses"][0]["email_address"] = json!("ghost@example.com");
    clerk.put_user(ghost);
    let (s, _) = call(
        &app,
        Method::POST,
        &format!("/admin/api/jobs/{job_id}/retry"),
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(s, 202);
    assert_eq!(
        call(
            &app,
            Method::POST,
            &format!("/admin/api/jobs/{job_id}/retry"),
            Auth::Token(ADMIN_TOKEN)
        )
        .await
        .0,
        409,
        "not dead any more"
    );
    app.drain().await;
    assert!(user(app.pool(), "user_ghost").await.is_some());
    assert_eq!(
        call(
            &app,
            Method::POST,
            "/admin/api/jobs/01JNOSUCHJOB/retry",
            Auth::Token(ADMIN_TOKEN)
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn reconcile_runs_on_demand_once_at_a_time_and_reports_its_counts() {
    let (clerk, app) = setup().await;
    // Clerk knows one user we have never heard of, and still has both of ours.
    for id in ["user_admin", "user_plain", "user_missed"] {
        let mut u = fixture_json("user.created")["data"].clone();
        u["id"] = json!(id);
        u["email_addresses"][0]["email_address"] = json!(format!("{id}@example.com"));
        u["updated_at"] = json!(1);
        clerk.put_user(u);
    }
    let admin = clerk.token("user_admin");
    let (s, first) = call(
        &app,
        Method::POST,
        "/admin/api/reconcile",
        Auth::Token(&admin),
    )
    .await;
    assert_eq!(
        (s, &first["already_queued"]),
        (202, &json!(false)),
        "{first}"
    );
    let (s, second) = call(
        &app,
        Method::POST,
        "/admin/api/reconcile",
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(s, 202);
    assert_eq!(
        (&second["job_id"], &second["already_queued"]),
        (&first["job_id"], &json!(true)),
        "a second request while one is queued names the queued run"
    );
    let (_, report) = call(
        &app,
        Method::GET,
        "/admin/api/reconcile",
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(report["current"]["job_id"], first["job_id"]);
    assert_eq!(report["current"]["state"], "queued");
    assert_eq!(report["runs"], json!([]));

    app.drain().await;
    assert!(user(app.pool(), "user_missed").await.is_some());
    let (_, report) = call(
        &app,
        Method::GET,
        "/admin/api/reconcile",
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(report["current"], Value::Null);
    let run = &report["runs"][0];
    assert_eq!(
        (
            &run["actor"],
            &run["scanned"],
            &run["created"],
            &run["deleted"]
        ),
        (&json!("user:user_admin"), &json!(3), &json!(1), &json!(0)),
        "{report}"
    );
    assert!(audit_actions(app.pool(), "system")
        .await
        .contains(&"reconcile.requested".to_owned()));
}

#[tokio::test]
async fn reconcile_on_demand_needs_the_clerk_secret_key() {
    let app = TestApp::spawn().await;
    let (s, body) = call(
        &app,
        Method::POST,
        "/admin/api/reconcile",
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (503, Some("not_configured"))
    );
}

/// How a request is signed in and where the browser says it comes from.
#[derive(Debug, Clone, Copy)]
enum Caller {
    /// The admin's `__session` cookie, with these `Origin` and `Sec-Fetch-Site` headers.
    Cookie(Option<&'static str>, Option<&'static str>),
    AdminToken,
    BearerSession,
}

const OWN_ORIGIN: &str = "(own)";

#[tokio::test]
async fn cross_site_cookie_posts_are_refused_and_same_origin_or_bearer_ones_pass() {
    let (clerk, app) = setup().await;
    let admin = clerk.token("user_admin");
    let event: String = sqlx::query_scalar(
        "SELECT svix_id FROM webhook_events WHERE event_type = 'user.created' LIMIT 1",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    // Each state-changing route, with what it answers once the request is let through.
    let routes = [
        (format!("/admin/api/events/{event}/replay"), 202),
        ("/admin/api/jobs/01JNOSUCHJOB/retry".to_owned(), 404),
        ("/admin/api/reconcile".to_owned(), 202),
        ("/admin/api/reconcile/01JNOSUCHRUN/confirm".to_owned(), 404),
    ];
    let refused = [
        (
            Caller::Cookie(Some("https://evil.example"), None),
            "a foreign Origin",
        ),
        (Caller::Cookie(Some("null"), None), "an opaque Origin"),
        (
            Caller::Cookie(None, Some("cross-site")),
            "Sec-Fetch-Site: cross-site",
        ),
        (
            Caller::Cookie(None, Some("same-site")),
            "Sec-Fetch-Site: same-site",
        ),
        (
            Caller::Cookie(Some(OWN_ORIGIN), Some("cross-site")),
            "Sec-Fetch-Site decides over Origin",
        ),
        (Caller::Cookie(None, None), "neither header"),
    ];
    let allowed = [
        (Caller::Cookie(Some(OWN_ORIGIN), None), "our own Origin"),
        (
            Caller::Cookie(None, Some("same-origin")),
            "Sec-Fetch-Site: same-origin",
        ),
        (Caller::Cookie(None, Some("none")), "Sec-Fetch-Site: none"),
        (Caller::AdminToken, "ADMIN_TOKEN without either header"),
        (
            Caller::BearerSession,
            "a Bearer session without either header",
        ),
    ];
    let jobs = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM apalis.jobs")
            .fetch_one(app.pool())
            .await
            .unwrap()
    };
    let send = |path: &str, caller: Caller| {
        let mut req = app
            .client
            .post(format!("{}{path}", app.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("confirm=yes");
        match caller {
            Caller::Cookie(origin, site) => {
                req = req.header("cookie", format!("theme=dark; __session={admin}"));
                if let Some(o) = origin {
                    let o = if o == OWN_ORIGIN {
                        app.address.as_str()
                    } else {
                        o
                    };
                    req = req.header("origin", o);
                }
                if let Some(s) = site {
                    req = req.header("sec-fetch-site", s);
                }
            }
            Caller::AdminToken => req = req.bearer_auth(ADMIN_TOKEN),
            Caller::BearerSession => req = req.bearer_auth(&admin),
        }
        req.send()
    };
    for (path, ok) in &routes {
        for (caller, what) in refused {
            let before = jobs().await;
            let resp = send(path, caller).await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (403, Some("cross_site_request")),
                "POST {path} with the cookie and {what}"
            );
            assert_eq!(
                jobs().await,
                before,
                "POST {path} with {what} enqueued something"
            );
        }
        for (caller, what) in allowed {
            let resp = send(path, caller).await.unwrap();
            assert_eq!(resp.status().as_u16(), *ok, "POST {path} with {what}");
        }
    }
    // Reading is not state-changing: a cookie GET needs neither header.
    let resp = app
        .client
        .get(format!("{}/admin/api/events", app.address))
        .header("cookie", format!("__session={admin}"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The let-through replays and the queued reconcile run.
    app.drain().await;
}

#[tokio::test]
async fn a_one_time_code_is_redacted_in_its_fields_even_when_a_number_contains_it() {
    let (_clerk, app) = setup().await;
    // The payload's timestamp 1767955158800 contains "5158": the code must go, the number stay.
    let mut email = fixture_json("email.created");
    let code = "5158";
    email["data"]["data"]["otp_code"] = json!(code);
    email["data"]["subject"] = json!(format!("{code} is your verification code"));
    email["data"]["body_plain"] = json!(format!("Your code: {code}"));
    email["data"]["body"] = json!(format!("<p>Your code: <b>{code}</b></p>"));
    let body = serde_json::to_vec(&email).unwrap();
    assert_eq!(app.post_signed("msg_otp_num", &body).await.status(), 200);

    let (s, detail) = call(
        &app,
        Method::GET,
        "/admin/api/events/msg_otp_num",
        Auth::Token(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(s, 200);
    let payload = &detail["payload"];
    assert_eq!(payload["data"]["data"]["otp_code"], "[redacted]");
    assert_eq!(
        payload["data"]["subject"],
        "[redacted] is your verification code"
    );
    assert_eq!(payload["data"]["body"], "[redacted]");
    assert_eq!(payload["data"]["body_plain"], "[redacted]");
    assert_eq!(
        payload["timestamp"], email["timestamp"],
        "the number is left alone"
    );
    assert_eq!(payload["data"]["to_email_address"], "alice@example.com");
    fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    strings(payload, &mut all);
    assert!(
        all.iter().all(|s| !s.contains(code)),
        "the code is in no text field: {payload}"
    );
}
