//! The operator API: auth on every route, cross-site cookie requests refused, the event log
//! with filters and cursors, redaction by field, replay and retry end to end. Over 400 lines:
//! one file per route family, each test a sentence a reader looks up here.

use reqwest::Method;
use serde_json::{json, Value};
use tests::bodies::{
    EventDetail, EventList, JobList, ReconcileReport, ReconcileStarted, Replayed, SyncAnswer,
};
use tests::fake_clerk::FakeClerk;
use tests::*;

async fn setup() -> (FakeClerk, TestApp) {
    let clerk = FakeClerk::start().await;
    let app = TestApp::builder().clerk(&clerk).spawn().await;
    for (id, role) in [("user_admin", Some("admin")), ("user_plain", None)] {
        let body = user_event(
            "user.created",
            id,
            Some(&format!("{id}@example.com")),
            1,
            role,
        );
        assert_eq!(app.post_webhook(&new_svix_id(), &body).await.status(), 202);
    }
    app.drain_without_clerk().await; // no metadata write-back in this setup
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
        (Method::GET, "/admin/api/search?q=user_plain", 200),
        (Method::GET, "/admin/api/users/user_plain", 200),
        (Method::GET, "/admin/api/stats?window=1h", 200),
        (Method::POST, "/admin/api/jobs/01JNONE/retry", 404),
        (Method::GET, "/admin/api/reconcile", 200),
        (Method::POST, "/admin/api/reconcile", 202),
    ];
    for (m, path, admin_status) in routes {
        let status = |auth: Auth<'_>| {
            let req = app.request(m.clone(), path, auth);
            async move {
                let resp = req.send().await.unwrap();
                (resp.status().as_u16(), resp)
            }
        };
        assert_eq!(
            status(Auth::None).await.0,
            401,
            "{m} {path} without credentials"
        );
        assert_eq!(
            status(Auth::Bearer("wrong-token")).await.0,
            401,
            "{m} {path} with a wrong token"
        );
        assert_eq!(
            error_code(status(Auth::Bearer(&plain)).await.1).await,
            (403, "forbidden".to_owned()),
            "{m} {path} as a non-admin"
        );
        for who in [ADMIN_TOKEN, admin.as_str()] {
            let (s, resp) = status(Auth::Bearer(who)).await;
            assert_eq!(
                s,
                admin_status,
                "{m} {path} as an admin: {:?}",
                resp.text().await
            );
        }
    }
    // The admins' POST /admin/api/reconcile queued one run; let it finish.
    app.drain().await;
}

#[tokio::test]
async fn the_event_log_filters_sorts_pages_and_redacts() {
    let (_clerk, app) = setup().await;
    assert_eq!(
        app.post_webhook("msg_otp", &fixture("email.created"))
            .await
            .status(),
        200
    );
    assert_eq!(app.post_webhook("msg_bad", b"not json").await.status(), 400);
    let (s, all) = parse::<EventList>(app.admin_events(ADMIN_TOKEN, "").await).await;
    assert_eq!(s, 200);
    let ids = all.svix_ids();
    assert_eq!(ids.len(), 4);
    assert_eq!(&ids[..2], ["msg_bad", "msg_otp"], "newest first");

    let (_, rejected) =
        parse::<EventList>(app.admin_events(ADMIN_TOKEN, "status=rejected").await).await;
    assert_eq!(rejected.events.len(), 1);
    assert!(rejected.events[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("not a JSON"));
    let (_, users) = parse::<EventList>(
        app.admin_events(ADMIN_TOKEN, "type=user.created&order=asc")
            .await,
    )
    .await;
    assert_eq!(users.events.len(), 2);

    // Cursor pagination walks everything once.
    let mut seen = Vec::new();
    let mut query = "limit=3".to_owned();
    loop {
        let (_, page) = parse::<EventList>(app.admin_events(ADMIN_TOKEN, &query).await).await;
        seen.extend(page.events.iter().map(|e| e.svix_id.clone()));
        match page.next_cursor {
            Some(c) => query = format!("limit=3&cursor={}", urlencode(&c)),
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
        assert_eq!(
            error_code(app.admin_events(ADMIN_TOKEN, bad).await).await,
            (400, "invalid_query".to_owned()),
            "{bad}"
        );
    }

    let resp = app.admin_event(ADMIN_TOKEN, "msg_otp").await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let detail: EventDetail = serde_json::from_str(&text).unwrap();
    assert_eq!(detail.payload["data"]["data"]["otp_code"], "[redacted]");
    assert!(!text.contains("424242"), "the one-time code never leaves");
    assert_eq!(
        app.admin_event(ADMIN_TOKEN, "msg_missing").await.status(),
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
    let (s, replayed) = parse::<Replayed>(app.replay(ADMIN_TOKEN, &id).await).await;
    assert_eq!(s, 202);
    assert_eq!(replayed.job_ids.len(), 1);
    let (_, detail) = parse::<EventDetail>(app.admin_event(ADMIN_TOKEN, &id).await).await;
    assert_eq!(detail.status, "queued");
    app.drain_without_clerk().await;
    let (_, detail) = parse::<EventDetail>(app.admin_event(ADMIN_TOKEN, &id).await).await;
    assert_eq!((detail.status.as_str(), detail.attempts), ("processed", 2));
    assert_eq!(users(app.pool()).await.len(), 2, "idempotent: no duplicate");
    // Ignored types cause no jobs: nothing to replay.
    assert_eq!(
        app.post_webhook("msg_email", &fixture("email.created"))
            .await
            .status(),
        200
    );
    assert_eq!(
        error_code(app.replay(ADMIN_TOKEN, "msg_email").await).await,
        (400, "not_replayable".to_owned())
    );
}

#[tokio::test]
async fn a_dead_job_is_listed_and_can_be_retried() {
    let (clerk, app) = setup().await;
    // The fallback for a user Clerk does not know fails fatally.
    let token = clerk.token("user_ghost");
    let (_, started) = parse::<SyncAnswer>(app.sync(&token).await).await;
    let job_id = started.job_id().to_owned();
    assert_eq!(app.drain().await.killed, 1);
    let (_, dead) = parse::<JobList>(app.admin_jobs(ADMIN_TOKEN, "state=dead").await).await;
    let listed = &dead.jobs[0];
    assert_eq!(listed.job_id, job_id);
    assert!(listed.last_error.as_deref().unwrap().contains("no user"));
    let (_, retrying) = parse::<JobList>(app.admin_jobs(ADMIN_TOKEN, "state=retrying").await).await;
    assert!(retrying.jobs.is_empty());
    assert_eq!(
        app.admin_jobs(ADMIN_TOKEN, "state=weird").await.status(),
        400
    );

    // The user appears in Clerk; the operator retries.
    let mut ghost = fixture_json("user.created")["data"].clone();
    ghost["id"] = json!("user_ghost");
    ghost["email_addresses"][0]["email_address"] = json!("ghost@example.com");
    clerk.put_user(ghost);
    assert_eq!(app.retry_job(ADMIN_TOKEN, &job_id).await.status(), 202);
    assert_eq!(
        app.retry_job(ADMIN_TOKEN, &job_id).await.status(),
        409,
        "not dead any more"
    );
    app.drain().await;
    assert!(user(app.pool(), "user_ghost").await.is_some());
    assert_eq!(
        app.retry_job(ADMIN_TOKEN, "01JNOSUCHJOB").await.status(),
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
    let (s, first) = parse::<ReconcileStarted>(app.reconcile(&admin).await).await;
    assert_eq!((s, first.already_queued), (202, false), "{first:?}");
    let (s, second) = parse::<ReconcileStarted>(app.reconcile(ADMIN_TOKEN).await).await;
    assert_eq!(s, 202);
    assert_eq!(
        (&second.job_id, second.already_queued),
        (&first.job_id, true),
        "a second request while one is queued names the queued run"
    );
    let (_, report) = parse::<ReconcileReport>(app.reconcile_runs(ADMIN_TOKEN).await).await;
    let current = report.current.expect("a current run");
    assert_eq!(current.job_id, first.job_id);
    assert_eq!(current.state, "queued");
    assert!(report.runs.is_empty());

    app.drain().await;
    assert!(user(app.pool(), "user_missed").await.is_some());
    let (_, report) = parse::<ReconcileReport>(app.reconcile_runs(ADMIN_TOKEN).await).await;
    assert!(report.current.is_none());
    let run = &report.runs[0];
    assert_eq!(
        (run.actor.as_str(), run.scanned, run.created, run.deleted),
        ("user:user_admin", Some(3), Some(1), Some(0)),
        "{report:?}"
    );
    assert!(audit_actions(app.pool(), "system")
        .await
        .contains(&"reconcile.requested".to_owned()));
}

#[tokio::test]
async fn reconcile_on_demand_needs_the_clerk_secret_key() {
    let app = TestApp::spawn().await;
    assert_eq!(
        error_code(app.reconcile(ADMIN_TOKEN).await).await,
        (503, "not_configured".to_owned())
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
    let queue = app.queue();
    let jobs = || queue.count(None);
    let send = |path: &str, caller: Caller| {
        let mut req = app
            .request(Method::POST, path, Auth::None)
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
            assert_eq!(
                error_code(resp).await,
                (403, "cross_site_request".to_owned()),
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
        .request(Method::GET, "/admin/api/events", Auth::None)
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
    assert_eq!(app.post_webhook("msg_otp_num", &body).await.status(), 200);

    let (s, detail) = parse::<EventDetail>(app.admin_event(ADMIN_TOKEN, "msg_otp_num").await).await;
    assert_eq!(s, 200);
    let payload = &detail.payload;
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
