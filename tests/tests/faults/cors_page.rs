//! CORS in real headless Chromium: a page served from another origin calls `POST /v1/sync`
//! with the user's session token. From an origin listed in `CORS_ALLOWED_ORIGINS` the browser
//! lets the page read the answer; from any other origin it refuses (the preflight is answered
//! 403), and nothing is enqueued.

use std::time::Duration;
use tests::browser::Browser;
use tests::fake_clerk::FakeClerk;
use tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALICE: &str = "user_2abcFakeAlice0000000000001";

/// The dashboard's page: it posts to `?api=` with `?token=` and writes what it could read.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>dashboard</title>
<p id="result">pending</p>
<script>
const q = new URLSearchParams(location.search);
fetch(q.get("api") + "/v1/sync", {
  method: "POST",
  headers: { Authorization: "Bearer " + q.get("token") },
})
  .then((r) => r.json().then((b) => { result.textContent = r.status + " " + b.status; }))
  .catch((e) => { result.textContent = "refused: " + e.name; });
</script>"#;

/// Serves [`PAGE`] on its own port (its own origin) until dropped; returns the origin.
async fn serve_page() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    (origin, task)
}

async fn result_of_page(browser: &Browser, origin: &str, app: &TestApp, token: &str) -> String {
    browser
        .goto(&format!("{origin}/?api={}&token={token}", app.address))
        .await;
    browser
        .wait_for("the page's fetch", Duration::from_secs(20), || async {
            let text = browser.text("#result").await;
            text != "pending" && !text.is_empty()
        })
        .await;
    browser.text("#result").await
}

#[tokio::test]
async fn a_dashboard_on_a_listed_origin_calls_v1_sync_and_another_origin_is_refused() {
    let clerk = FakeClerk::start().await;
    clerk.put_user(fixture_json("user.created")["data"].clone());
    let (listed, _listed_page) = serve_page().await;
    let (other, _other_page) = serve_page().await;
    let allowed = listed.clone();
    let app = TestApp::builder()
        .clerk(&clerk)
        .configure(move |c| {
            c.cors_allowed_origins =
                api::cors::AllowedOrigins::parse("CORS_ALLOWED_ORIGINS", &allowed).unwrap();
        })
        .spawn()
        .await;
    let token = clerk.token(ALICE);
    let browser = Browser::start().await;

    assert_eq!(
        result_of_page(&browser, &other, &app, &token).await,
        "refused: TypeError"
    );
    assert_eq!(app.queue().count(None).await, 0, "a refused call enqueued");

    assert_eq!(
        result_of_page(&browser, &listed, &app, &token).await,
        "202 provisioning"
    );
    app.drain().await;
    assert!(user(app.pool(), ALICE).await.is_some());
}
