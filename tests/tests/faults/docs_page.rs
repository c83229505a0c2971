//! `/docs` in real headless Chromium: Swagger UI's Authorize button takes `ADMIN_TOKEN`, and
//! "Try it out" on an operator route then answers 200 (before the bearer scheme existed it
//! could only get 401).

use std::time::Duration;
use tests::browser::Browser;
use tests::*;

#[tokio::test]
async fn authorize_with_the_admin_token_then_try_an_operator_route() {
    let app = TestApp::spawn().await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/docs", app.address)).await;
    let op = "#operations-Operator-get_admin_api_queues";
    browser
        .wait_for("Swagger UI", Duration::from_secs(20), || async {
            browser.displayed("button.authorize").await && browser.displayed(op).await
        })
        .await;
    browser.click("button.authorize").await;
    // The first scheme of the dialog is the admin token (an HTTP bearer scheme).
    let input = ".auth-container input[aria-label='auth-bearer-value']";
    browser
        .wait_for("the Authorize dialog", Duration::from_secs(10), || async {
            browser.displayed(input).await
        })
        .await;
    assert!(
        browser
            .text(".auth-container h4")
            .await
            .contains("AdminToken"),
        "{}",
        browser.text(".auth-container h4").await
    );
    browser.type_into(input, ADMIN_TOKEN).await;
    browser.click(".auth-container button.authorize").await;
    browser.click("button.btn-done").await;
    // Try it out.
    browser.click(&format!("{op} .opblock-summary")).await;
    let try_out = format!("{op} .try-out__btn");
    browser
        .wait_for("Try it out", Duration::from_secs(10), || async {
            browser.displayed(&try_out).await
        })
        .await;
    browser.click(&try_out).await;
    browser.click(&format!("{op} .execute")).await;
    let status = format!("{op} .live-responses-table tbody .response-col_status");
    browser
        .wait_for("the response", Duration::from_secs(20), || async {
            browser.text(&status).await.trim().parse::<u16>().is_ok()
        })
        .await;
    browser
        .screenshot("/tmp/authsync-docs-authorized.png")
        .await;
    assert_eq!(browser.text(&status).await.trim(), "200");
}
