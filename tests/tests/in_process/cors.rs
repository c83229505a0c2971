//! CORS on `/v1/*` for a dashboard served from another origin: preflights are answered for
//! the listed origins only and only for what `/v1/*` needs, answers carry
//! `Access-Control-Allow-Origin` for listed origins only (never `*`, never credentials), and
//! the operator routes never answer CORS.

use reqwest::header::{HeaderMap, ORIGIN};
use reqwest::Method;
use tests::fake_clerk::FakeClerk;
use tests::*;

const DASHBOARD: &str = "https://app.example.com";
const LOCAL: &str = "http://localhost:3000";
const ALICE: &str = "user_2abcCorsAlice00000000000001";

async fn app(clerk: &FakeClerk) -> TestApp {
    TestApp::builder()
        .clerk(clerk)
        .configure(|c| {
            c.cors_allowed_origins = api::cors::AllowedOrigins::parse(
                "CORS_ALLOWED_ORIGINS",
                &format!("{DASHBOARD}, {LOCAL}"),
            )
            .unwrap();
        })
        .spawn()
        .await
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// Whether `Vary` lists `Origin` (a cache must not hand one origin's answer to another).
fn varies_by_origin(headers: &HeaderMap) -> bool {
    headers
        .get_all("vary")
        .iter()
        .any(|v| v.to_str().unwrap().split(',').any(|p| p.trim() == "Origin"))
}

async fn preflight(
    app: &TestApp,
    path: &str,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .request(Method::OPTIONS, path, Auth::None)
        .header(ORIGIN, origin)
        .header("access-control-request-method", method);
    if let Some(h) = headers {
        req = req.header("access-control-request-headers", h);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_listed_origin_gets_its_preflights_answered_for_what_the_dashboard_needs() {
    let clerk = FakeClerk::start().await;
    let app = app(&clerk).await;
    let cases = [
        (
            "/v1/sync",
            DASHBOARD,
            "POST",
            Some("authorization, content-type"),
        ),
        ("/v1/sync", LOCAL, "POST", Some("Authorization")),
        (
            "/v1/jobs/01J0000000000000000000000",
            DASHBOARD,
            "GET",
            Some("authorization"),
        ),
        ("/v1/me", DASHBOARD, "GET", None),
    ];
    for (path, origin, method, headers) in cases {
        let resp = preflight(&app, path, origin, method, headers).await;
        let what = format!("{method} {path} from {origin}");
        assert_eq!(resp.status(), 204, "{what}");
        let h = resp.headers();
        assert_eq!(
            header(h, "access-control-allow-origin"),
            Some(origin),
            "{what}"
        );
        assert_eq!(
            header(h, "access-control-allow-methods"),
            Some("GET, POST"),
            "{what}"
        );
        assert_eq!(
            header(h, "access-control-allow-headers"),
            Some("Authorization, Content-Type"),
            "{what}"
        );
        assert!(header(h, "access-control-max-age").is_some(), "{what}");
        assert_eq!(
            header(h, "access-control-allow-credentials"),
            None,
            "{what}"
        );
        assert!(varies_by_origin(h), "{what}");
    }
}

#[tokio::test]
async fn preflights_from_other_origins_or_for_other_things_are_refused() {
    let clerk = FakeClerk::start().await;
    let app = app(&clerk).await;
    let cases = [
        (
            "an unlisted origin",
            "https://evil.example.com",
            "POST",
            None,
        ),
        (
            "a listed origin's other scheme",
            "http://app.example.com",
            "POST",
            None,
        ),
        (
            "a listed origin's other port",
            "http://localhost:3001",
            "GET",
            None,
        ),
        (
            "a lookalike host",
            "https://app.example.com.evil.test",
            "POST",
            None,
        ),
        ("the opaque origin", "null", "POST", None),
        ("a method /v1 does not need", DASHBOARD, "DELETE", None),
        (
            "a header /v1 does not need",
            DASHBOARD,
            "POST",
            Some("authorization, x-custom"),
        ),
    ];
    for (what, origin, method, headers) in cases {
        let resp = preflight(&app, "/v1/sync", origin, method, headers).await;
        assert_eq!(
            header(resp.headers(), "access-control-allow-origin"),
            None,
            "{what}"
        );
        assert!(varies_by_origin(resp.headers()), "{what}");
        assert_eq!(
            error_code(resp).await,
            (403, "cors_not_allowed".to_owned()),
            "{what}"
        );
    }
}

#[tokio::test]
async fn answers_are_readable_by_listed_origins_only() {
    let clerk = FakeClerk::start().await;
    let app = app(&clerk).await;
    let token = clerk.token(ALICE);
    for (origin, readable) in [
        (DASHBOARD, true),
        (LOCAL, true),
        ("https://evil.example.com", false),
    ] {
        // Not provisioned yet: a 404 the dashboard reads to start its setup.
        let resp = app
            .request(Method::GET, "/v1/me", &token)
            .header(ORIGIN, origin)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{origin}");
        let h = resp.headers();
        let want = readable.then_some(origin);
        assert_eq!(header(h, "access-control-allow-origin"), want, "{origin}");
        assert_eq!(
            header(h, "access-control-expose-headers"),
            readable.then_some("Retry-After, X-Request-Id"),
            "{origin}"
        );
        assert_eq!(
            header(h, "access-control-allow-credentials"),
            None,
            "{origin}"
        );
        assert!(varies_by_origin(h), "{origin}");
    }
}

#[tokio::test]
async fn operator_routes_and_webhooks_never_answer_cors() {
    let clerk = FakeClerk::start().await;
    let app = app(&clerk).await;
    for path in [
        "/admin/api/events",
        "/admin/api/reconcile",
        "/webhooks/clerk",
        "/readyz",
    ] {
        let resp = preflight(&app, path, DASHBOARD, "POST", Some("authorization")).await;
        assert_ne!(resp.status(), 204, "{path}");
        assert_eq!(
            header(resp.headers(), "access-control-allow-origin"),
            None,
            "{path}"
        );
        let resp = app
            .request(Method::GET, path, ADMIN_TOKEN)
            .header(ORIGIN, DASHBOARD)
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(resp.headers(), "access-control-allow-origin"),
            None,
            "{path}"
        );
    }
}

#[tokio::test]
async fn without_cors_allowed_origins_no_origin_may_read_v1() {
    let clerk = FakeClerk::start().await;
    let app = TestApp::builder().clerk(&clerk).spawn().await;
    let resp = preflight(&app, "/v1/sync", DASHBOARD, "POST", Some("authorization")).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(header(resp.headers(), "access-control-allow-origin"), None);
    let resp = app
        .request(Method::GET, "/v1/me", &clerk.token(ALICE))
        .header(ORIGIN, DASHBOARD)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(header(resp.headers(), "access-control-allow-origin"), None);
}
