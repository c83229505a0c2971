//! Session keys when the JWKS URL misbehaves: expired cached keys keep verifying tokens at
//! once while one background refresh tries the hung key server.

use api::session::SessionConfig;
use std::time::Duration;
use tests::fake_clerk::{FakeClerk, AUTHORIZED_PARTY};
use tests::*;

/// `GET /v1/me` with `token`'s status.
async fn me(app: &TestApp, token: &str) -> u16 {
    app.me(token).await.status().as_u16()
}

#[tokio::test]
async fn expired_keys_keep_answering_while_the_jwks_url_hangs() {
    // Arrange: keys count as stale the moment they are fetched, and a provisioned user.
    let clerk = FakeClerk::start().await;
    let mut app = TestApp::builder()
        .configure(|c| {
            c.session = Some(SessionConfig {
                jwks_url: clerk.jwks_url(),
                issuer: clerk.issuer(),
                authorized_parties: vec![AUTHORIZED_PARTY.to_owned()],
                key_ttl: Duration::ZERO,
            })
        })
        .spawn()
        .await;
    let user = fixture_json("user.created")["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.post_webhook(&new_svix_id(), &fixture("user.created"))
            .await
            .status(),
        202
    );
    app.drain().await;
    let token = clerk.token(&user);
    // The client gives up after the api's own JWKS fetch timeout: a request that waited for
    // the hung key server (the old code waited 5 s) cannot answer in time, while one served
    // from the cache has all of it to spare.
    app.client = reqwest::Client::builder()
        .timeout(api::session::FETCH_TIMEOUT)
        .build()
        .unwrap();
    assert_eq!(me(&app, &token).await, 200, "first fetch works");

    // Act: the key server hangs; every request now finds its keys expired.
    clerk.hang_jwks(true);
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(me(&app, &token).await);
    }

    // Assert: all answered with the cached keys; the refresh was tried, one at a time.
    assert_eq!(statuses, vec![200; 10]);
    let start = std::time::Instant::now();
    while clerk.jwks_fetches() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no refresh was tried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(clerk.jwks_max_in_flight(), 1, "one refresh at a time");
}
