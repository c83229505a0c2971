//! `/` and the 404 for a path nothing serves point a person at `/admin` and `/docs`: a page
//! for a browser, JSON for anything else; unknown API paths keep the JSON `404 not_found`.

use tests::*;

const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// (path, Accept, status, content type, what the body must contain)
type Case = (
    &'static str,
    Option<&'static str>,
    u16,
    &'static str,
    &'static [&'static str],
);

#[tokio::test]
async fn home_and_unknown_paths_point_at_the_console_and_the_docs() {
    let app = TestApp::spawn().await;
    let cases: &[Case] = &[
        (
            "/",
            Some(HTML),
            200,
            "text/html",
            &[r#"href="/admin""#, r#"href="/docs""#],
        ),
        (
            "/",
            None,
            200,
            "application/json",
            &[r#""admin":"/admin""#, r#""docs":"/docs""#],
        ),
        (
            "/",
            Some("application/json"),
            200,
            "application/json",
            &[r#""docs":"/docs""#],
        ),
        (
            "/nope",
            Some(HTML),
            404,
            "text/html",
            &[r#"href="/admin""#, r#"href="/docs""#],
        ),
        (
            "/deep/er/nope",
            Some(HTML),
            404,
            "text/html",
            &[r#"href="/docs""#],
        ),
        (
            "/nope",
            None,
            404,
            "application/json",
            &[r#""code":"not_found""#, "/admin", "/docs"],
        ),
        (
            "/v1/nope",
            Some(HTML),
            404,
            "application/json",
            &[r#""code":"not_found""#],
        ),
        (
            "/v1/nope",
            None,
            404,
            "application/json",
            &[r#""code":"not_found""#],
        ),
        (
            "/admin/api/nope",
            Some(HTML),
            404,
            "application/json",
            &[r#""code":"not_found""#],
        ),
        (
            "/admin/api/nope",
            None,
            404,
            "application/json",
            &[r#""code":"not_found""#],
        ),
    ];
    for (path, accept, status, content_type, contains) in cases {
        let mut req = app.client.get(format!("{}{path}", app.address));
        if let Some(accept) = accept {
            req = req.header("accept", *accept);
        }
        let resp = req.send().await.unwrap();
        let case = format!("GET {path} (Accept: {accept:?})");
        assert_eq!(resp.status().as_u16(), *status, "{case}");
        let got = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(got.starts_with(content_type), "{case}: {got}");
        let body = resp.text().await.unwrap();
        for want in *contains {
            assert!(body.contains(want), "{case}: no {want} in {body}");
        }
    }
    // Only GET (and HEAD) / is the home page: a POST there is an unknown route.
    let resp = app
        .client
        .post(format!("{}/", app.address))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "only GET / is the home page");
}
