//! `/openapi.json` covers every route, the statuses the real handlers answer are the ones it
//! documents, and the docs UI is served.

use reqwest::Method;
use serde_json::Value;
use tests::*;

/// Every route of the api, as a client sees it.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/webhooks/clerk"),
    ("post", "/v1/sync"),
    ("get", "/v1/jobs/{id}"),
    ("get", "/v1/me"),
    ("get", "/admin/api/events"),
    ("get", "/admin/api/events/{svix_id}"),
    ("post", "/admin/api/events/{svix_id}/replay"),
    ("get", "/admin/api/jobs"),
    ("post", "/admin/api/jobs/{id}/retry"),
    ("get", "/admin/api/queues"),
    ("get", "/admin/api/reconcile"),
    ("post", "/admin/api/reconcile"),
    ("post", "/admin/api/reconcile/{job_id}/confirm"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/setup"),
    ("get", "/setup.js"),
    ("get", "/admin"),
    ("get", "/admin.js"),
];

async fn spec(app: &TestApp) -> Value {
    let resp = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn the_spec_lists_every_route_and_nothing_else() {
    let app = TestApp::spawn().await;
    let spec = spec(&app).await;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented: Vec<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);
    // Parameters are described, with the query names clients use.
    let events = &spec["paths"]["/admin/api/events"]["get"]["parameters"];
    let names: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["type", "status", "since", "until", "limit", "cursor", "order"]
    );
    let jobs = &spec["paths"]["/admin/api/jobs"]["get"]["parameters"];
    assert_eq!(jobs[0]["name"], "state");
}

/// What a request really answered must be a documented response of its operation.
#[tokio::test]
async fn real_answers_are_documented_answers() {
    let app = TestApp::spawn().await;
    let spec = spec(&app).await;
    let signed = |svix: &str, body: &[u8]| signed_webhook(&app.client, &app.address, svix, body);
    let get = |path: &str| app.client.get(format!("{}{path}", app.address));
    let post = |path: &str| app.client.post(format!("{}{path}", app.address));
    let admin = |m: Method, path: &str| {
        app.client
            .request(m, format!("{}{path}", app.address))
            .bearer_auth(ADMIN_TOKEN)
    };
    let body = user_event(
        "user.created",
        "user_docs",
        Some("docs@example.com"),
        1,
        None,
    );
    let cases: Vec<(&str, &str, reqwest::RequestBuilder, u16)> = vec![
        ("post", "/webhooks/clerk", signed("msg_docs", &body), 202),
        ("post", "/webhooks/clerk", signed("msg_docs", &body), 200),
        ("post", "/webhooks/clerk", signed("msg_junk", b"{}"), 400),
        (
            "post",
            "/webhooks/clerk",
            post("/webhooks/clerk").body("{}"),
            400,
        ),
        ("post", "/v1/sync", post("/v1/sync"), 503),
        ("get", "/v1/jobs/{id}", get("/v1/jobs/01J?wait_ms=x"), 400),
        ("get", "/v1/me", get("/v1/me"), 503),
        ("get", "/admin/api/events", get("/admin/api/events"), 401),
        (
            "get",
            "/admin/api/events",
            admin(Method::GET, "/admin/api/events?limit=0"),
            400,
        ),
        (
            "get",
            "/admin/api/events/{svix_id}",
            admin(Method::GET, "/admin/api/events/msg_docs"),
            200,
        ),
        (
            "post",
            "/admin/api/events/{svix_id}/replay",
            admin(Method::POST, "/admin/api/events/msg_none/replay"),
            404,
        ),
        (
            "get",
            "/admin/api/jobs",
            admin(Method::GET, "/admin/api/jobs?state=dead"),
            200,
        ),
        (
            "post",
            "/admin/api/jobs/{id}/retry",
            admin(Method::POST, "/admin/api/jobs/01JNONE/retry"),
            404,
        ),
        (
            "get",
            "/admin/api/queues",
            admin(Method::GET, "/admin/api/queues"),
            200,
        ),
        (
            "get",
            "/admin/api/reconcile",
            admin(Method::GET, "/admin/api/reconcile"),
            200,
        ),
        (
            "post",
            "/admin/api/reconcile",
            admin(Method::POST, "/admin/api/reconcile"),
            503,
        ),
        (
            "post",
            "/admin/api/reconcile/{job_id}/confirm",
            admin(Method::POST, "/admin/api/reconcile/01JNONE/confirm"),
            404,
        ),
        (
            "post",
            "/admin/api/events/{svix_id}/replay",
            post("/admin/api/events/msg_docs/replay")
                .header("cookie", "__session=x")
                .header("sec-fetch-site", "cross-site"),
            403,
        ),
        ("get", "/healthz", get("/healthz"), 200),
        ("get", "/readyz", get("/readyz"), 200),
        ("get", "/metrics", get("/metrics"), 200),
        ("get", "/setup", get("/setup"), 200),
        ("get", "/setup.js", get("/setup.js"), 200),
        ("get", "/admin", get("/admin"), 200),
        ("get", "/admin.js", get("/admin.js"), 200),
    ];
    for (method, path, req, want) in cases {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        assert_eq!(status, want, "{method} {path}");
        let op = &spec["paths"][path][method];
        assert!(
            op["responses"].get(status.to_string()).is_some(),
            "{method} {path} answered {status}, which its spec does not document: {}",
            op["responses"]
        );
    }
    app.drain().await;
}

#[tokio::test]
async fn the_docs_ui_is_served_and_unknown_routes_are_404() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .get(format!("{}/docs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    let html = resp.text().await.unwrap();
    assert!(html.contains("SwaggerUIBundle"), "the Swagger UI page");
    for (method, path, want) in [
        (Method::GET, "/nope", 404),
        (Method::GET, "/webhooks/clerk", 405),
        (Method::DELETE, "/admin/api/events", 405),
    ] {
        let resp = app
            .client
            .request(method.clone(), format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "{method} {path}");
    }
}
