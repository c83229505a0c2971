//! The Backend API client against the fake Clerk's wire format, failure modes included.

use jobs::clerk::api::{ClerkApi, ClerkApiError, HttpClerkApi};
use jobs::clerk::ids::ClerkUserId;
use jobs::error::JobError;
use serde_json::json;
use std::time::Duration;
use tests::fake_clerk::{FakeClerk, Scripted, SECRET_KEY};
use tests::*;

fn client(clerk: &FakeClerk, timeout: Duration) -> HttpClerkApi {
    HttpClerkApi::with_timeout(&clerk.url, SECRET_KEY.to_owned().into(), timeout)
}

fn user_json(id: &str, created_at: i64) -> serde_json::Value {
    let mut u = fixture_json("user.created")["data"].clone();
    u["id"] = json!(id);
    u["created_at"] = json!(created_at);
    u
}

#[tokio::test]
async fn users_are_fetched_listed_by_page_and_metadata_is_merged() {
    let clerk = FakeClerk::start().await;
    for i in 0..7 {
        clerk.put_user(user_json(&format!("user_p{i}"), 1000 + i));
    }
    let api = client(&clerk, Duration::from_secs(5));
    let id = ClerkUserId::parse("user_p3").unwrap();
    let u = api.get_user(&id).await.unwrap().unwrap();
    assert_eq!(u.id, "user_p3");
    assert!(
        api.get_user(&ClerkUserId::parse("user_none").unwrap())
            .await
            .unwrap()
            .is_none(),
        "404 is None"
    );

    let page1 = api.list_users(3, 0).await.unwrap();
    let page3 = api.list_users(3, 6).await.unwrap();
    assert_eq!(
        page1.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["user_p0", "user_p1", "user_p2"]
    );
    assert_eq!(
        page3.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["user_p6"]
    );

    clerk.put_user({
        let mut u = user_json("user_m", 1);
        u["public_metadata"] = json!({"plan": "pro"});
        u
    });
    let m = ClerkUserId::parse("user_m").unwrap();
    assert_eq!(
        api.merge_public_metadata(&m, json!({"dbId": "x", "role": "user"}))
            .await
            .unwrap(),
        Some(())
    );
    assert_eq!(
        clerk.user("user_m").unwrap()["public_metadata"],
        json!({"plan": "pro", "dbId": "x", "role": "user"}),
        "merged, not replaced"
    );
}

#[tokio::test]
async fn each_failure_mode_is_classified() {
    let clerk = FakeClerk::start().await;
    clerk.put_user(user_json("user_f", 1));
    let api = client(&clerk, Duration::from_millis(500));
    let id = ClerkUserId::parse("user_f").unwrap();
    type Case = (&'static str, Scripted, fn(&ClerkApiError) -> bool, bool);
    let cases: Vec<Case> = vec![
        (
            "429 with Retry-After",
            Scripted::Status {
                code: 429,
                retry_after: Some(12),
            },
            |e| matches!(e, ClerkApiError::RateLimited { retry_after: Some(d) } if *d == Duration::from_secs(12)),
            true,
        ),
        (
            "500",
            Scripted::Status {
                code: 500,
                retry_after: None,
            },
            |e| matches!(e, ClerkApiError::Server { status: 500, .. }),
            true,
        ),
        (
            "503",
            Scripted::Status {
                code: 503,
                retry_after: None,
            },
            |e| matches!(e, ClerkApiError::Server { status: 503, .. }),
            true,
        ),
        (
            "slower than the timeout",
            Scripted::Slow(Duration::from_secs(2)),
            |e| matches!(e, ClerkApiError::Network(m) if m == "timed out"),
            true,
        ),
        (
            "422",
            Scripted::Status {
                code: 422,
                retry_after: None,
            },
            |e| matches!(e, ClerkApiError::Client { status: 422, .. }),
            false,
        ),
        (
            "403",
            Scripted::Status {
                code: 403,
                retry_after: None,
            },
            |e| matches!(e, ClerkApiError::Client { status: 403, .. }),
            false,
        ),
    ];
    for (name, answer, is_expected, retryable) in cases {
        clerk.script([answer]);
        let err = api.get_user(&id).await.expect_err(name);
        assert!(is_expected(&err), "{name}: {err:?}");
        assert_eq!(JobError::from(err).is_retryable(), retryable, "{name}");
    }
    let wrong_key = HttpClerkApi::new(&clerk.url, "sk_wrong".to_owned().into());
    assert!(matches!(
        wrong_key.get_user(&id).await,
        Err(ClerkApiError::Client { status: 401, .. })
    ));
    // Nothing listens: a network error, retryable.
    let gone = HttpClerkApi::with_timeout(
        "http://127.0.0.1:1",
        SECRET_KEY.to_owned().into(),
        Duration::from_secs(2),
    );
    let err = gone.get_user(&id).await.unwrap_err();
    assert!(JobError::from(err).is_retryable());
}
