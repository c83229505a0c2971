//! Start-up checks on the real binaries: an unreachable server, a missing database and an
//! unmigrated schema each get ONE log line naming the fix, from the api and from the worker;
//! the api keeps serving and `/readyz` answers the same reason in its JSON body; once the
//! database is migrated, both carry on by themselves.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tests::bodies::ErrorBody;
use tests::processes::binary;
use tests::*;

/// A process whose log (stdout and stderr) goes to a file; killed when dropped.
struct Logged {
    child: Child,
    log: PathBuf,
}

impl Logged {
    fn start(bin: &str, database_url: &str, env: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!("authsync-{bin}-{}.log", uuid::Uuid::new_v4()));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(binary(bin));
        cmd.env("DATABASE_URL", database_url)
            .env("CLERK_WEBHOOK_SECRET", SECRET)
            .env("MAIL_DIR", std::env::temp_dir().join("authsync-test-mail"))
            .env("RUST_LOG", "info,sqlx=warn")
            .env_remove("LOG_FORMAT")
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the log has a line containing `text`; returns the log.
    async fn wait_for_line(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.lines().any(|l| l.contains(text)) {
                return log;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no line with {text:?} within 30 s:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Polls `/readyz` (bounded) until it answers 503 with `code`; returns the message.
async fn readyz_says(address: &str, code: &str) -> String {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(resp) = reqwest::get(format!("{address}/readyz")).await {
            let status = resp.status().as_u16();
            last = resp.text().await.unwrap_or_default();
            if status == 503 {
                if let Ok(body) = serde_json::from_str::<ErrorBody>(&last) {
                    if body.error.code == code {
                        return body.error.message;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz never answered 503 {code}; last: {last}");
}

fn with_database(url: &str, name: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_path(&format!("/{name}"));
    u.to_string()
}

fn with_port(url: &str, port: u16) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_port(Some(port)).unwrap();
    u.to_string()
}

#[tokio::test]
async fn each_unready_database_gets_one_line_naming_its_fix() {
    let empty = TestDb::empty().await;
    let missing = format!("authsync_missing_{}", uuid::Uuid::new_v4().simple());
    // (what, DATABASE_URL, /readyz code, the fix the line names)
    let cases = [
        (
            "unreachable",
            with_port(&empty.url, 1),
            "unavailable",
            "check DATABASE_URL and that PostgreSQL is running",
        ),
        (
            "missing",
            with_database(&empty.url, &missing),
            "database_missing",
            "does not exist: create it",
        ),
        (
            "unmigrated",
            empty.url.clone(),
            "not_migrated",
            "run `api migrate`",
        ),
    ];
    for (what, url, code, fix) in cases {
        let port = free_port();
        let api = Logged::start("api", &url, &[("PORT", &port.to_string())]);
        let worker = Logged::start("worker", &url, &[]);
        let address = format!("http://127.0.0.1:{port}");
        // The api serves, and /readyz says why it is not ready.
        let message = readyz_says(&address, code).await;
        assert!(message.contains(fix), "{what}: /readyz said {message}");
        for process in [&api, &worker] {
            process.wait_for_line(fix).await;
        }
        // Each says it once, though each looks again every few seconds.
        tokio::time::sleep(Duration::from_secs(6)).await;
        for (name, process) in [("api", &api), ("worker", &worker)] {
            let log = process.log();
            let lines: Vec<&str> = log.lines().filter(|l| l.contains(fix)).collect();
            assert_eq!(lines.len(), 1, "{what}, {name}: {log}");
            assert!(lines[0].contains("ERROR"), "{what}, {name}: {}", lines[0]);
        }
        if what != "unmigrated" {
            continue;
        }
        // Migrated now: both carry on without a restart.
        jobs::db::migrate(&empty.pool).await.unwrap();
        let start = Instant::now();
        while reqwest::get(format!("{address}/readyz"))
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the api never got ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        api.wait_for_line("database ready").await;
        worker.wait_for_line("database ready").await;
    }
}
