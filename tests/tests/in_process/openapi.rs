//! `/openapi.json` covers every route, is the committed `openapi.json`, the statuses and
//! bodies the real handlers answer are the ones it documents, and the docs UI is served.
//! (Over 400 lines: a small schema checker, unions included, and one real request per
//! documented answer of every route.)
//!
//! After a change to a route, regenerate the committed spec with
//! `UPDATE_OPENAPI=1 cargo test -p tests --test openapi` and commit `openapi.json`.

use reqwest::Method;
use serde_json::Value;
use tests::*;

/// Every route of the api, as a client sees it.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/webhooks/clerk"),
    ("post", "/v1/sync"),
    ("get", "/v1/jobs/{id}"),
    ("get", "/v1/me"),
    ("get", "/v1/me/activity"),
    ("get", "/admin/api/events"),
    ("get", "/admin/api/events/{svix_id}"),
    ("post", "/admin/api/events/{svix_id}/replay"),
    ("get", "/admin/api/jobs"),
    ("post", "/admin/api/jobs/{id}/retry"),
    ("get", "/admin/api/queues"),
    ("get", "/admin/api/search"),
    ("get", "/admin/api/users/{clerk_user_id}"),
    ("get", "/admin/api/stats"),
    ("get", "/admin/api/reconcile"),
    ("post", "/admin/api/reconcile"),
    ("post", "/admin/api/reconcile/{job_id}/confirm"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

/// Served, but not API operations: the browser pages, their scripts and the docs UI.
const PAGES: &[(&str, &str)] = &[
    ("/", "text/html"),
    ("/setup", "text/html"),
    ("/setup.js", "text/javascript"),
    ("/admin", "text/html"),
    ("/admin.js", "text/javascript"),
    ("/docs", "text/html"),
];

async fn served_spec(app: &TestApp) -> String {
    let resp = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

async fn spec(app: &TestApp) -> Value {
    serde_json::from_str(&served_spec(app).await).unwrap()
}

#[tokio::test]
async fn the_served_spec_is_the_committed_openapi_json() {
    let app = TestApp::spawn().await;
    let served = api::openapi::canonical(&served_spec(&app).await);
    let path = format!("{}/../openapi.json", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&path, &served).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if served != committed {
        let first = served
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| served.lines().count().min(committed.lines().count()));
        panic!(
            "openapi.json differs from the served /openapi.json (first at line {}: served {:?}, \
             committed {:?}).\nRegenerate it with `UPDATE_OPENAPI=1 cargo test -p tests --test \
             openapi` and commit it.",
            first + 1,
            served.lines().nth(first),
            committed.lines().nth(first),
        );
    }
}

/// Whether `value` fits `schema` (resolving `$ref`s in `spec`): every required property
/// present and not null, every property the body has documented, and each of the right JSON
/// type, recursively. `at` names the place for the message.
fn check_schema(spec: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    check(spec, schema, value, at, true)
}

/// `closed`: a property the schema does not document is an error. The parts of an `allOf`
/// (a union variant: its discriminator beside the variant's object) are each open, and the
/// whole is closed over the properties of all of them.
fn check(
    spec: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    closed: bool,
) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return check(
            spec,
            &spec["components"]["schemas"][name],
            value,
            at,
            closed,
        );
    }
    if let Some(all) = schema["allOf"].as_array() {
        for part in all {
            check(spec, part, value, at, false)?;
        }
        if let (true, Some(object)) = (closed, value.as_object()) {
            let documented = properties(spec, schema);
            if let Some(name) = object.keys().find(|k| !documented.contains(k)) {
                return Err(format!("{at}: property `{name}` is not documented"));
            }
        }
    }
    if let Some(any) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        if !any
            .iter()
            .any(|s| check(spec, s, value, at, closed).is_ok())
        {
            return Err(format!("{at}: {value} matches none of {any:?}"));
        }
    }
    let fits = match schema["type"].as_str() {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => return Err(format!("{at}: unknown schema type {other}")),
    };
    if !fits {
        return Err(format!("{at}: {value} is not of type {}", schema["type"]));
    }
    if let Some(enumerated) = schema["enum"].as_array() {
        if !enumerated.contains(value) {
            return Err(format!("{at}: {value} is not one of {enumerated:?}"));
        }
    }
    if let (Some(object), Some(props)) = (value.as_object(), schema["properties"].as_object()) {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap();
            if object.get(name).is_none_or(Value::is_null) {
                return Err(format!("{at}: required property `{name}` is missing"));
            }
        }
        for (name, v) in object {
            match props.get(name) {
                Some(prop) if !v.is_null() => check(spec, prop, v, &format!("{at}.{name}"), true)?,
                Some(_) => {}
                None if closed => return Err(format!("{at}: property `{name}` is not documented")),
                None => {}
            }
        }
    }
    if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(spec, item_schema, item, &format!("{at}[{i}]"), true)?;
        }
    }
    Ok(())
}

/// The property names a schema documents, through `$ref` and `allOf`.
fn properties(spec: &Value, schema: &Value) -> Vec<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return properties(spec, &spec["components"]["schemas"][name]);
    }
    let mut names: Vec<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(properties(spec, part));
    }
    names
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
    // The webhook's Svix headers are its documented parameters.
    let webhook = &spec["paths"]["/webhooks/clerk"]["post"]["parameters"];
    let headers: Vec<(&str, &str)> = webhook
        .as_array()
        .expect("the webhook documents its headers")
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
        .collect();
    assert_eq!(
        headers,
        [
            ("svix-id", "header"),
            ("svix-timestamp", "header"),
            ("svix-signature", "header")
        ]
    );
    for p in webhook.as_array().unwrap() {
        let description = p["description"].as_str().unwrap_or_default();
        assert!(description.starts_with("Required."), "{p}");
    }
}

#[tokio::test]
async fn pages_are_served_but_are_not_operations() {
    let app = TestApp::spawn().await;
    let spec = spec(&app).await;
    for (path, content_type) in PAGES {
        assert!(
            spec["paths"].get(*path).is_none(),
            "{path} is listed as an API operation"
        );
        let resp = app
            .client
            .get(format!("{}{path}", app.address))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let got = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(got.starts_with(content_type), "{path}: {got}");
    }
}

/// Swagger UI's Authorize button offers the schemes of `components.securitySchemes`: the
/// operator routes take `ADMIN_TOKEN` as an HTTP bearer token, and what Swagger UI then sends
/// (`Authorization: Bearer <token>`) is accepted.
#[tokio::test]
async fn the_docs_authorize_with_the_admin_token() {
    let app = TestApp::spawn().await;
    let spec = spec(&app).await;
    let schemes = spec["components"]["securitySchemes"].as_object().unwrap();
    let bearer: Vec<&String> = schemes
        .iter()
        .filter(|(_, s)| s["type"] == "http" && s["scheme"] == "bearer")
        .map(|(name, _)| name)
        .collect();
    assert!(!bearer.is_empty(), "no bearer scheme: {schemes:?}");
    let op = &spec["paths"]["/admin/api/queues"]["get"];
    let uses: Vec<&str> = op["security"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s.as_object().unwrap().keys())
        .map(String::as_str)
        .collect();
    assert!(
        bearer.iter().any(|b| uses.contains(&b.as_str())),
        "{uses:?}"
    );
    let resp = app
        .client
        .get(format!("{}/admin/api/queues", app.address))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    app.drain().await;
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
    // A user with something of every kind in their timeline: an event, its jobs, audit
    // entries and a session.
    let page = user_event(
        "user.created",
        "user_page",
        Some("page@example.com"),
        1,
        None,
    );
    assert_eq!(app.post_webhook("msg_page", &page).await.status(), 202);
    app.drain().await;
    sqlx::query(
        "INSERT INTO user_activity (clerk_user_id, kind, session_id, occurred_at, svix_id) \
         VALUES ('user_page', 'session.created', 'sess_page', now(), 'msg_page_session')",
    )
    .execute(app.pool())
    .await
    .unwrap();
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
        ("get", "/v1/me/activity", get("/v1/me/activity"), 503),
        ("get", "/admin/api/events", get("/admin/api/events"), 401),
        (
            "get",
            "/admin/api/events",
            admin(Method::GET, "/admin/api/events?limit=0"),
            400,
        ),
        (
            "get",
            "/admin/api/events",
            admin(Method::GET, "/admin/api/events?limit=1"),
            200,
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
            "/admin/api/search",
            admin(Method::GET, "/admin/api/search?q=msg_page"),
            200,
        ),
        (
            "get",
            "/admin/api/search",
            admin(Method::GET, "/admin/api/search?q="),
            400,
        ),
        (
            "get",
            "/admin/api/users/{clerk_user_id}",
            admin(Method::GET, "/admin/api/users/user_page"),
            200,
        ),
        (
            "get",
            "/admin/api/users/{clerk_user_id}",
            admin(Method::GET, "/admin/api/users/user_nobody"),
            404,
        ),
        (
            "get",
            "/admin/api/stats",
            admin(Method::GET, "/admin/api/stats?window=1h"),
            200,
        ),
        (
            "get",
            "/admin/api/stats",
            admin(Method::GET, "/admin/api/stats?window=1y"),
            400,
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
    ];
    for (method, path, req, want) in cases {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        assert_eq!(status, want, "{method} {path}");
        let op = &spec["paths"][path][method];
        let documented = &op["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {path} answered {status}, which its spec does not document: {}",
            op["responses"]
        );
        // The body is of the documented content type and, for JSON, of its schema.
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        let media = &documented["content"][&content_type];
        assert!(
            media.is_object(),
            "{method} {path} {status} answered {content_type}, documented {}",
            documented["content"]
        );
        let text = resp.text().await.unwrap();
        if content_type.starts_with("application/json") {
            let body: Value = serde_json::from_str(&text).unwrap();
            let at = format!("{method} {path} {status}");
            if let Err(e) = check_schema(&spec, &media["schema"], &body, &at) {
                panic!("{e}\nbody: {body}");
            }
        }
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

#[test]
fn the_body_check_catches_drift() {
    let spec: Value = serde_json::from_str(&api::openapi::service().spec()).unwrap();
    let schema = &spec["paths"]["/webhooks/clerk"]["post"]["responses"]["202"]["content"]
        ["application/json; charset=utf-8"]["schema"];
    let good = serde_json::json!({"status": "accepted", "svix_id": "msg_1", "job_ids": ["01J"]});
    assert_eq!(check_schema(&spec, schema, &good, "good"), Ok(()));
    for (bad, what) in [
        (
            serde_json::json!({"status": "accepted", "svixId": "msg_1"}),
            "a renamed field",
        ),
        (
            serde_json::json!({"status": "accepted", "svix_id": 1}),
            "a field of another type",
        ),
        (
            serde_json::json!({"status": "accepted", "svix_id": "msg_1", "job_ids": [1]}),
            "an item of another type",
        ),
    ] {
        assert!(check_schema(&spec, schema, &bad, what).is_err(), "{what}");
    }
}
