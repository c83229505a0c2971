//! The webhook IP allowlist through real HTTP: the peer address decides unless it is a trusted
//! proxy, in which case `X-Forwarded-For` does.

use api::ip_filter::parse_cidrs;
use tests::*;

async fn post_from(app: &TestApp, xff: Option<&str>) -> reqwest::Response {
    let body = fixture("user.created");
    let mut headers = svix_headers(SECRET, &new_svix_id(), now_secs(), &body);
    if let Some(x) = xff {
        headers.push(("x-forwarded-for", x.to_owned()));
    }
    app.post_webhook_with(&headers, body).await
}

#[tokio::test]
async fn without_trusted_proxies_the_peer_address_decides() {
    let allowed = TestApp::builder()
        .configure(|c| c.ip_filter.allow = parse_cidrs("A", "127.0.0.0/8").unwrap())
        .spawn()
        .await;
    assert_eq!(post_from(&allowed, None).await.status(), 202);
    allowed.drain().await;

    let denied = TestApp::builder()
        .configure(|c| c.ip_filter.allow = parse_cidrs("A", "203.0.113.0/24").unwrap())
        .spawn()
        .await;
    assert_eq!(
        error_code(post_from(&denied, None).await).await,
        (403, "ip_not_allowed".to_owned())
    );
    // A forged header from an untrusted peer changes nothing.
    assert_eq!(post_from(&denied, Some("203.0.113.7")).await.status(), 403);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
        .fetch_one(denied.pool())
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn behind_a_trusted_proxy_forwarded_for_decides() {
    let app = TestApp::builder()
        .configure(|c| {
            c.ip_filter.allow = parse_cidrs("A", "203.0.113.0/24").unwrap();
            c.ip_filter.trusted_proxies = parse_cidrs("T", "127.0.0.1").unwrap();
        })
        .spawn()
        .await;
    assert_eq!(post_from(&app, Some("203.0.113.7")).await.status(), 202);
    assert_eq!(post_from(&app, Some("198.51.100.1")).await.status(), 403);
    assert_eq!(
        post_from(&app, Some("203.0.113.7, 198.51.100.1"))
            .await
            .status(),
        403,
        "the hop next to the proxy counts"
    );
    assert_eq!(
        post_from(&app, None).await.status(),
        403,
        "no header: the proxy itself is not allowed"
    );
    app.drain().await;
}

/// A forwarded hop that is not a bare address stands for the client: it matches no
/// allowlist entry, and the allowed address to its left (which the client wrote) does not
/// count. Nothing is stored for a refused delivery.
#[tokio::test]
async fn an_unparsable_forwarded_hop_is_refused() {
    let app = TestApp::builder()
        .configure(|c| {
            c.ip_filter.allow = parse_cidrs("A", "203.0.113.0/24, 2001:db8::/32").unwrap();
            c.ip_filter.trusted_proxies = parse_cidrs("T", "127.0.0.1").unwrap();
        })
        .spawn()
        .await;
    let cases: &[(&str, &str)] = &[
        ("ipv4 with port", "203.0.113.7, 198.51.100.1:4711"),
        ("allowed ipv4 with port (strict)", "203.0.113.7:4711"),
        ("bracketed ipv6", "203.0.113.7, [2001:db9::1]"),
        ("bracketed ipv6 with port", "203.0.113.7, [2001:db8::1]:443"),
        ("unknown", "203.0.113.7, unknown"),
        ("empty entry", "203.0.113.7, "),
        ("garbage", "203.0.113.7, %%%"),
    ];
    for (name, xff) in cases {
        assert_eq!(
            error_code(post_from(&app, Some(xff)).await).await,
            (403, "ip_not_allowed".to_owned()),
            "{name}: {xff:?}"
        );
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(stored, 0);
    // The same allowlist still lets a well-formed allowed client through.
    assert_eq!(
        post_from(&app, Some("garbage, 2001:db8::1")).await.status(),
        202
    );
    app.drain().await;
}
