//! Readiness under a saturated pool: while every connection of a small pool is held longer
//! than the threshold, `/readyz` (the api's, and the worker's on its metrics port) answers
//! `503 pool_saturated` and the metrics show for how long; once they are released it
//! recovers. The threshold is lowered through the config structs; the waits are bounded polls.

use api::config::ApiConfig;
use api::startup::Application;
use jobs::config::Env;
use std::time::{Duration, Instant};
use tests::bodies::{ErrorBody, StatusBody};
use tests::*;

/// Polls `url` until it answers `want`: `ready` (200 `{"status": "ready"}`) or an error
/// code (503 with that code, whose message it returns). A request made before the threshold
/// may wait for a connection and answer `unavailable` meanwhile; polling goes on past it.
async fn wait_for(url: &str, want: &str) -> String {
    let start = Instant::now();
    loop {
        let resp = reqwest::get(url).await.expect("server reachable");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("a body");
        match (status, want) {
            (200, "ready") => {
                let body: StatusBody = serde_json::from_str(&text).expect("a status body");
                if body.status == "ready" {
                    return String::new();
                }
            }
            (503, code) => {
                let body: ErrorBody = serde_json::from_str(&text).expect("an error body");
                if body.error.code == code {
                    return body.error.message;
                }
            }
            _ => {
                serde_json::from_str::<serde_json::Value>(&text).expect("a JSON body");
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{url} never answered {want}; last {status} {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the sample of `name` for the pool `main`.
async fn main_pool_gauge(metrics_url: &str, name: &str) -> f64 {
    let text = reqwest::get(metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains("pool=\"main\""))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} for the main pool in:\n{text}"))
}

/// Holds every connection `pool` may open, each checked to work.
async fn hold_all(pool: &sqlx::PgPool) -> Vec<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    let mut held = Vec::new();
    for _ in 0..pool.options().get_max_connections() {
        let mut c = pool.acquire().await.expect("a connection");
        sqlx::query("SELECT 1").execute(&mut *c).await.unwrap();
        held.push(c);
    }
    held
}

#[tokio::test]
async fn the_api_is_not_ready_while_its_pool_stays_saturated_and_recovers_after() {
    let _turn = crate::RECORDER.lock().await;
    // Arrange: the real api with a pool of 2 and a threshold of 1 s.
    let db = TestDb::new().await;
    let url = db.url.clone();
    let mut config = ApiConfig::from_env(&Env(move |k: &str| match k {
        "DATABASE_URL" => Some(url.clone()),
        "DATABASE_MAX_CONNECTIONS" => Some("2".into()),
        "CLERK_WEBHOOK_SECRET" => Some(SECRET.into()),
        "BIND_ADDR" => Some("127.0.0.1".into()),
        "PORT" => Some("0".into()),
        _ => None,
    }))
    .unwrap();
    config.pool_saturated_after = Duration::from_secs(1);
    let pool = jobs::db::pool(&config.database).unwrap();
    let app = Application::build(config, pool.clone()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let readyz = format!("{base}/readyz");
    wait_for(&readyz, "ready").await;

    // Act: every connection of the routes' pool is taken and kept.
    let held = hold_all(&pool).await;

    // Assert: not ready, named as such, and the gauge counts the seconds.
    let message = wait_for(&readyz, "pool_saturated").await;
    assert!(message.contains("every database connection"), "{message}");
    let saturated = main_pool_gauge(
        &format!("{base}/metrics"),
        "authsync_db_pool_saturated_seconds",
    )
    .await;
    assert!(saturated >= 1.0, "saturated for {saturated} s");

    // Released: ready again, and the gauge is back to 0.
    drop(held);
    wait_for(&readyz, "ready").await;
    assert_eq!(
        main_pool_gauge(
            &format!("{base}/metrics"),
            "authsync_db_pool_saturated_seconds"
        )
        .await,
        0.0
    );
    let _ = stop.send(());
}

#[tokio::test]
async fn the_worker_is_not_ready_while_its_pool_stays_saturated_and_recovers_after() {
    // Arrange: the worker's health server over a pool of 3, threshold 1 s.
    let db = TestDb::new().await;
    let database = jobs::config::DatabaseConfig {
        url: db.url.clone().into(),
        max_connections: 3,
        direct_url: None,
        pooler: false,
    };
    let pool = jobs::db::pool_waiting(&database, jobs::db::WORKER_ACQUIRE_TIMEOUT).unwrap();
    let health = worker::metrics_server::Health {
        pool: pool.clone(),
        // Not "main": the api test in this binary reads that gauge meanwhile.
        watch: jobs::telemetry::PoolWatch::spawn("worker_test", pool.clone()),
        saturated_after: Duration::from_secs(1),
    };
    let port = worker::metrics_server::spawn(([127, 0, 0, 1], 0).into(), health)
        .await
        .unwrap();
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    wait_for(&readyz, "ready").await;

    // Act and assert: held, not ready; released, ready.
    let held = hold_all(&pool).await;
    let message = wait_for(&readyz, "pool_saturated").await;
    assert!(message.contains("every database connection"), "{message}");
    drop(held);
    wait_for(&readyz, "ready").await;
}
