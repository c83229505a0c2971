//! Prometheus metrics scraped and parsed after traffic: the api's `/metrics` and a worker
//! process' own `/healthz` and `/metrics` — webhooks, jobs and queues, HTTP requests by route
//! template and status, connection pools and the process.

use tests::processes::WorkerProcess;
use tests::*;

/// The Prometheus text of a `/metrics` answer.
async fn scrape(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    resp.text().await.unwrap()
}

/// A dead job (failed, no attempt left) is not waiting for a worker: it shows as dead and
/// does not age the queue's oldest pending job.
#[tokio::test]
async fn a_dead_job_does_not_age_the_queue() {
    let _turn = crate::RECORDER.lock().await;
    let mut app = TestApp::spawn().await;
    app.allow_unfinished_jobs = true;
    app.queue()
        .insert_dead("authsync.provision_user", 3600)
        .await;
    let text = scrape(app.metrics().await).await;
    let queue = ("queue", "authsync.provision_user");
    assert_eq!(
        sample(&text, "authsync_queue_depth", &[queue, ("state", "dead")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "authsync_queue_oldest_pending_seconds", &[queue]),
        Some(0.0),
        "{text}"
    );
}

#[tokio::test]
async fn the_api_counts_webhooks_by_type_and_outcome_and_reports_queue_depth() {
    let _turn = crate::RECORDER.lock().await;
    let app = TestApp::spawn().await;
    let before = scrape(app.metrics().await).await;
    let count = |text: &str, t: &str, o: &str| {
        sample(
            text,
            "authsync_webhooks_received_total",
            &[("event_type", t), ("outcome", o)],
        )
        .unwrap_or(0.0)
    };

    let id = new_svix_id();
    let body = fixture("user.created");
    assert_eq!(app.post_webhook(&id, &body).await.status(), 202);
    assert_eq!(app.post_webhook(&id, &body).await.status(), 200);
    assert_eq!(
        app.post_webhook(&new_svix_id(), &fixture("email.created"))
            .await
            .status(),
        200
    );
    let forged = svix_headers(FOREIGN_SECRET, &new_svix_id(), now_secs(), &body);
    assert_eq!(
        app.post_webhook_with(&forged, body.clone()).await.status(),
        401
    );
    assert_eq!(
        app.post_webhook(&new_svix_id(), b"nonsense").await.status(),
        400
    );

    let after = scrape(app.metrics().await).await;
    for (t, o) in [
        ("user.created", "accepted"),
        ("user.created", "duplicate"),
        ("email.created", "ignored"),
        ("unknown", "unauthorized"),
        ("unknown", "rejected"),
    ] {
        assert!(
            count(&after, t, o) >= count(&before, t, o) + 1.0,
            "{t}/{o} did not grow:\n{after}"
        );
    }
    assert!(sample(&after, "authsync_webhook_intake_seconds_count", &[]).unwrap() >= 5.0);
    assert_eq!(
        sample(
            &after,
            "authsync_queue_depth",
            &[("queue", "authsync.provision_user"), ("state", "pending")]
        ),
        Some(1.0),
        "{after}"
    );
    assert!(
        sample(
            &after,
            "authsync_queue_oldest_pending_seconds",
            &[("queue", "authsync.provision_user")]
        )
        .unwrap()
            >= 0.0
    );

    app.drain().await;
    let drained = scrape(app.metrics().await).await;
    assert_eq!(
        sample(
            &drained,
            "authsync_queue_depth",
            &[("queue", "authsync.provision_user"), ("state", "pending")]
        ),
        Some(0.0)
    );
    assert!(
        sample(
            &drained,
            "authsync_jobs_total",
            &[
                ("queue", "authsync.provision_user"),
                ("outcome", "succeeded")
            ]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        sample(
            &drained,
            "authsync_job_duration_seconds_count",
            &[("queue", "authsync.provision_user")]
        )
        .unwrap()
            >= 1.0
    );
}

#[tokio::test]
async fn a_worker_serves_health_and_metrics_on_its_own_port() {
    let _turn = crate::RECORDER.lock().await;
    let app = TestApp::spawn().await;
    let port = free_port();
    let _worker = WorkerProcess::start(&app.db.url, &[("WORKER_METRICS_PORT", &port.to_string())]);
    assert_eq!(
        app.post_webhook(&new_svix_id(), &fixture("user.created"))
            .await
            .status(),
        202
    );
    app.queue()
        .wait_for_idle(std::time::Duration::from_secs(30))
        .await;
    let start = std::time::Instant::now();
    let health = loop {
        match reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await {
            Ok(r) => break r,
            Err(e) => assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "worker metrics never came up: {e}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(health.status(), 200);
    let text = scrape(
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        sample(
            &text,
            "authsync_jobs_total",
            &[
                ("queue", "authsync.provision_user"),
                ("outcome", "succeeded")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "authsync_queue_depth",
            &[("queue", "authsync.provision_user"), ("state", "pending")]
        ),
        Some(0.0)
    );
    // Its own requests, its pool and its process.
    assert!(
        sample(
            &text,
            "authsync_http_requests_total",
            &[("route", "/healthz"), ("status", "200")]
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );
    // The default budget: a pool of 6 (README: connections per process), not saturated.
    assert_eq!(
        sample(
            &text,
            "authsync_db_pool_max_connections",
            &[("pool", "main")]
        ),
        Some(f64::from(worker::DEFAULT_POOL)),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "authsync_db_pool_saturated_seconds",
            &[("pool", "main")]
        ),
        Some(0.0),
        "{text}"
    );
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert!(sample(&text, "process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert!(sample(&text, "process_open_fds", &[]).unwrap() > 0.0);
}

#[tokio::test]
async fn the_api_measures_requests_by_route_template_its_pools_and_its_process() {
    let _turn = crate::RECORDER.lock().await;
    let app = TestApp::spawn().await;
    assert_eq!(app.healthz().await.status(), 200);
    let unknown_svix_id = new_svix_id();
    let unknown_event = format!("/admin/api/events/{unknown_svix_id}");
    assert_eq!(
        app.admin_event(ADMIN_TOKEN, &unknown_svix_id)
            .await
            .status(),
        404
    );
    let unmatched = app.request(reqwest::Method::GET, "/no/such/route/123", Auth::None);
    assert_eq!(unmatched.send().await.unwrap().status(), 404);

    let text = scrape(app.metrics().await).await;
    let requests = |route: &str, status: &str| {
        sample(
            &text,
            "authsync_http_requests_total",
            &[("method", "GET"), ("route", route), ("status", status)],
        )
        .unwrap_or(0.0)
    };
    assert!(requests("/healthz", "200") >= 1.0, "{text}");
    assert!(
        requests("/admin/api/events/{svix_id}", "404") >= 1.0,
        "{text}"
    );
    assert!(requests("unmatched", "404") >= 1.0, "{text}");
    // Concrete paths never become labels.
    assert!(!text.contains(&unknown_event) && !text.contains("/no/such/route"));
    assert!(
        sample(
            &text,
            "authsync_http_request_duration_seconds_count",
            &[("route", "/healthz"), ("status", "200")]
        )
        .unwrap()
            >= 1.0
    );

    // Both pools: the main one (20 in the harness) and intake's own.
    let pool = |name: &str, p: &str| sample(&text, name, &[("pool", p)]);
    assert_eq!(pool("authsync_db_pool_max_connections", "main"), Some(20.0));
    assert_eq!(
        pool("authsync_db_pool_max_connections", "intake"),
        Some(2.0)
    );
    for family in [
        "authsync_db_pool_connections",
        "authsync_db_pool_idle_connections",
        "authsync_db_pool_in_use_connections",
    ] {
        for p in ["main", "intake"] {
            assert!(pool(family, p).is_some(), "{family}{{pool={p}}}:\n{text}");
        }
    }
    // The scrape itself read the queue gauges through the main pool.
    assert!(pool("authsync_db_pool_connections", "main").unwrap() >= 1.0);

    for family in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
    ] {
        assert!(
            sample(&text, family, &[]).unwrap_or(0.0) > 0.0,
            "{family}:\n{text}"
        );
    }
    assert!(sample(&text, "process_cpu_seconds_total", &[]).is_some());
}
