//! A burst of long-polls stays cheap: one user opening 1,500 at once gets 4 waits and 429s for
//! the rest (never a 503), while webhook intake, on connections of its own, keeps answering
//! 202 fast and `/healthz` answers. Runs on the debug build the suite uses.

use futures::future::join_all;
use serde_json::Value;
use std::time::{Duration, Instant};
use tests::fake_clerk::FakeClerk;
use tests::*;

const ALICE: &str = "user_2abcFakeAlice0000000000001";
const POLLS: usize = 1_500;
const WEBHOOKS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_long_polls_gets_429s_and_leaves_intake_fast() {
    // Each poll holds a socket at both ends, in this one process.
    let fds = rlimit::increase_nofile_limit(8 * POLLS as u64).unwrap();
    assert!(fds >= 3 * POLLS as u64, "open-files limit {fds} is too low");
    let clerk = FakeClerk::start().await;
    let mut app = TestApp::spawn_with_clerk(&clerk).await;
    // The fallback job and the webhooks' jobs stay queued: this is about intake.
    app.allow_unfinished_jobs = true;
    let token = clerk.token(ALICE);
    let started: Value = app.sync(&token).await.json().await.unwrap();
    let job_id = started["job_id"].as_str().unwrap().to_owned();

    let client = reqwest::Client::new();
    let polls = (0..POLLS).map(|_| {
        let (client, url, token) = (
            client.clone(),
            format!("{}/v1/jobs/{job_id}?wait_ms=10000", app.address),
            token.clone(),
        );
        tokio::spawn(async move {
            let resp = client.get(url).bearer_auth(token).send().await.unwrap();
            let retry_after = resp.headers().get("retry-after").cloned();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, retry_after, body)
        })
    });
    let polls: Vec<_> = polls.collect();

    // The webhooks arrive over the first two seconds of the burst.
    let webhooks: Vec<_> = (0..WEBHOOKS)
        .map(|i| {
            let (client, address) = (app.client.clone(), app.address.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20 * i as u64)).await;
                let clerk_id = format!("user_burst{i:04}");
                let body = user_event(
                    "user.created",
                    &clerk_id,
                    Some(&format!("burst{i}@example.com")),
                    1_700_000_000_000,
                    None,
                );
                let t = Instant::now();
                let resp = signed_webhook(&client, &address, &new_svix_id(), &body)
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), t.elapsed())
            })
        })
        .collect();
    let health = {
        let (client, address) = (app.client.clone(), app.address.clone());
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                let r = client.get(format!("{address}/healthz")).send().await;
                answers.push(r.map(|r| r.status().as_u16()).unwrap_or(0));
            }
            answers
        })
    };

    let mut webhook_times = Vec::new();
    for w in join_all(webhooks).await {
        let (status, took) = w.unwrap();
        assert_eq!(status, 202, "a webhook was not accepted during the burst");
        webhook_times.push(took);
    }
    webhook_times.sort();
    let p99 = webhook_times[WEBHOOKS * 99 / 100 - 1];
    assert!(
        p99 < Duration::from_secs(1),
        "webhook p99 {p99:?} during the burst (slowest {:?})",
        webhook_times.last()
    );
    assert_eq!(health.await.unwrap(), vec![200; 5], "/healthz during the burst");

    let (mut waited, mut refused) = (0, 0);
    for p in join_all(polls).await {
        let (status, retry_after, body) = p.unwrap();
        match status {
            200 => {
                assert_eq!(body["state"], "queued", "{body}");
                waited += 1;
            }
            429 => {
                assert_eq!(body["error"]["code"], "too_many_waiters", "{body}");
                assert_eq!(retry_after.unwrap(), "2");
                refused += 1;
            }
            other => panic!("a long-poll was answered {other}: {body}"),
        }
    }
    assert_eq!((waited, refused), (4, POLLS - 4));
    let metrics = reqwest::get(format!("{}/metrics", app.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refusals: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("authsync_long_polls_refused_total{limit=\"user\"} "))
        .expect("the refusals are counted")
        .parse()
        .unwrap();
    assert!(refusals >= (POLLS - 4) as f64, "{refusals}");

    // The intake stored every one of them.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(stored, WEBHOOKS as i64);
    // And with the waits over, the user may wait again.
    let again = app.job(&token, &job_id, Some(10)).await;
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn a_plain_read_is_not_a_wait_and_ended_waits_free_their_place() {
    let clerk = FakeClerk::start().await;
    let mut app = TestApp::spawn_with_clerk_and(&clerk, |c| {
        c.wait_limits = api::job_events::WaitLimits {
            per_user: 1,
            total: 1_000,
        };
    })
    .await;
    app.allow_unfinished_jobs = true;
    let token = clerk.token(ALICE);
    let started: Value = app.sync(&token).await.json().await.unwrap();
    let job_id = started["job_id"].as_str().unwrap().to_owned();

    let open = async {
        // Retried while a probe below holds the place for its millisecond.
        loop {
            let r = app.job(&token, &job_id, Some(3_000)).await;
            if r.status() != 429 {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let probe = async {
        // Until the first wait is in, a second one is admitted and ends at once.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = app.job(&token, &job_id, Some(1)).await;
            if r.status() == 429 {
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"]["code"], "too_many_waiters");
                break;
            }
            assert!(Instant::now() < deadline, "the second wait was never refused");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A read without wait_ms is answered while the wait is open.
        let plain = app.job(&token, &job_id, None).await;
        assert_eq!(plain.status(), 200);
    };
    let (first, ()) = tokio::join!(open, probe);
    assert_eq!(first.status(), 200);
    assert_eq!(app.job(&token, &job_id, Some(1)).await.status(), 200);
}
