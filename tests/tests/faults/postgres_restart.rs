//! Postgres stopped and started again during intake, on a cluster this test owns (started with
//! the system's initdb/pg_ctl through scripts/postgres.sh): no 2xx for an event that is not
//! stored, every stored event processed after recovery, and the api and worker processes
//! reconnect by themselves.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tests::processes::{ApiProcess, WorkerProcess};
use tests::queue::Queue;
use tests::*;

const EVENTS: usize = 300;

/// A throwaway cluster driven by the same shell functions as scripts/test.
struct Cluster {
    dir: PathBuf,
    port: u16,
}

fn postgres_sh(function: &str, args: &[&str]) {
    let script = format!("{}/../scripts/postgres.sh", env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!("source '{script}' && {function} \"$@\""))
        .arg("postgres.sh")
        .args(args)
        .env("PG_EXTRA_OPTS", "-c fsync=off")
        .status()
        .expect("bash runs");
    assert!(status.success(), "{function} {args:?} failed");
}

impl Cluster {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "authsync-pg-restart-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let c = Self {
            dir,
            port: free_port(),
        };
        c.up();
        c
    }

    fn up(&self) {
        postgres_sh(
            "pg_local_start",
            &[self.dir.to_str().unwrap(), &self.port.to_string()],
        );
    }

    fn down(&self) {
        postgres_sh("pg_local_stop", &[self.dir.to_str().unwrap()]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Posts event `i`; the status, or 0 when no HTTP answer came.
async fn post(client: &reqwest::Client, address: &str, i: usize) -> u16 {
    let body = user_event(
        "user.created",
        &format!("user_restart{i}"),
        Some(&format!("r{i}@example.com")),
        1,
        None,
    );
    let req = signed_webhook(client, address, &format!("msg_restart{i}"), &body)
        .timeout(Duration::from_secs(30));
    match req.send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn postgres_restarting_during_intake_loses_nothing_and_everyone_reconnects() {
    let cluster = Cluster::start();
    let url = cluster.url();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    jobs::db::migrate(&pool).await.unwrap();
    pool.close().await;

    let mut api = ApiProcess::start(&url);
    let mail_dir = cluster.dir.join("mail");
    let mut worker = WorkerProcess::start(&url, &[("MAIL_DIR", mail_dir.to_str().unwrap())]);
    let client = reqwest::Client::new();
    let start = Instant::now();
    while client
        .get(format!("{}/readyz", api.address))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(start.elapsed() < Duration::from_secs(30), "api never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Four senders stream the events; Postgres goes down after a third and comes back 8 s
    // later. Every answer is recorded.
    let answers = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<usize, u16>::new()));
    let senders: Vec<_> = (0..4)
        .map(|s| {
            let (client, address, answers) = (client.clone(), api.address.clone(), answers.clone());
            tokio::spawn(async move {
                for i in (s..EVENTS).step_by(4) {
                    let status = post(&client, &address, i).await;
                    answers.lock().unwrap().insert(i, status);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    while answers.lock().unwrap().len() < EVENTS / 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Longer than the api's 5 s wait for a connection, so some deliveries get their 503.
    let cluster = std::sync::Arc::new(cluster);
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.down()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.up()).await.unwrap();
    for s in senders {
        s.await.unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    let refused: Vec<usize> = answers
        .iter()
        .filter(|(_, s)| !(200..300).contains(*s))
        .map(|(i, _)| *i)
        .collect();
    assert!(
        !refused.is_empty(),
        "the outage was seen by some deliveries"
    );
    for (i, status) in &answers {
        assert!(
            (200..300).contains(status) || *status == 503,
            "event {i}: {status} (only 2xx or 503 Retry-After are acceptable)"
        );
    }

    // No 2xx for an event that is not stored.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT svix_id FROM webhook_events")
        .fetch_all(&pool)
        .await
        .unwrap();
    for (i, status) in &answers {
        if (200..300).contains(status) {
            assert!(
                stored.contains(&format!("msg_restart{i}")),
                "event {i} was answered {status} but is not stored"
            );
        }
    }
    eprintln!(
        "{} of {EVENTS} deliveries refused during the outage",
        refused.len()
    );
    // Svix delivers the refused ones again; the same api process takes them now.
    for i in refused {
        let status = post(&client, &api.address, i).await;
        assert!(
            status == 202 || status == 200,
            "redelivery of {i} after recovery: {status}"
        );
    }

    // Every event processed by the same worker process, which reconnected by itself.
    let start = Instant::now();
    loop {
        let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&pool)
            .await
            .unwrap();
        let unfinished = Queue::on(&pool).unfinished(None).await;
        if users == EVENTS as i64 && unfinished == 0 {
            eprintln!("all processed {:?} after the redeliveries", start.elapsed());
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not processed after recovery: {users} users, {unfinished} unfinished jobs"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let processed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE status = 'processed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(processed, EVENTS as i64);
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker process kept running"
    );
    assert!(
        api.child.try_wait().unwrap().is_none(),
        "the api process kept running"
    );
    pool.close().await;
}
