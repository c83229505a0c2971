//! The quick start as a newcomer runs it: `scripts/dev` against a fresh database prints
//! "authsync is ready." only once the service answers, with the console, the admin token,
//! the docs, psql and three `simulate` commands that work as printed; the block is the one
//! in the README; a second `scripts/dev` on the same port or the same local cluster refuses,
//! naming it, and leaves the first one running. Every process is ended with its process
//! group, also when the test fails.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::processes::binary;
use tests::*;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// `scripts/dev` in a process group of its own; the whole group is ended when dropped.
struct Dev {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
}

fn dev_command(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(repo_root().join("scripts/dev"));
    let bin_dir = binary("api").parent().unwrap().to_owned();
    cmd.current_dir(repo_root())
        .env("AUTHSYNC_BIN_DIR", bin_dir)
        .env("RUST_LOG", tests::telemetry::child_filter())
        .env("MAIL_DIR", std::env::temp_dir().join("authsync-test-mail"))
        .env_remove("ADMIN_TOKEN")
        .env_remove("CLERK_WEBHOOK_SECRET")
        .env_remove("AUTHSYNC_PG_PORT")
        .env_remove("DATABASE_URL")
        .env_remove("PORT")
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl Dev {
    fn start(env: &[(&str, &str)]) -> Self {
        let mut child = dev_command(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start scripts/dev");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = stdout.clone();
        let pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Self { child, stdout }
    }

    /// Waits (bounded) for the whole ready block; returns it, from "authsync is ready.".
    async fn ready_block(&mut self) -> Vec<String> {
        let start = Instant::now();
        loop {
            {
                let lines = self.stdout.lock().unwrap();
                if let Some(from) = lines.iter().position(|l| l == "authsync is ready.") {
                    if let Some(to) = lines[from..]
                        .iter()
                        .position(|l| l.starts_with("Ctrl-C stops"))
                    {
                        return lines[from..=from + to].to_vec();
                    }
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "scripts/dev exited ({status}) before it was ready: {:?}",
                    self.stdout.lock().unwrap()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "scripts/dev not ready within 90 s: {:?}",
                self.stdout.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left of the group (the api, the worker) goes too.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// Runs a command to its end, bounded.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            panic!("the command did not end within {limit:?}");
        }
    }
}

fn value_after<'a>(block: &'a [String], label: &str) -> &'a str {
    block
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in {block:#?}"))
        .trim()
}

/// Polls `check` on the database until it holds (bounded).
async fn eventually(what: &str, db: &TestDb, clerk_id: &str, check: impl Fn(&UserRow) -> bool) {
    let start = Instant::now();
    loop {
        if user(&db.pool, clerk_id).await.as_ref().is_some_and(&check) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not happen within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn scripts_dev_prints_what_works_and_a_second_one_refuses() {
    let db = TestDb::empty().await; // scripts/dev migrates it
    let port = free_port();
    let mut dev = Dev::start(&[("DATABASE_URL", &db.url), ("PORT", &port.to_string())]);
    let block = dev.ready_block().await;
    let address = format!("http://127.0.0.1:{port}");

    // It was ready when it said so.
    let ready = reqwest::get(format!("{address}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);

    // The lines a newcomer needs.
    assert_eq!(
        value_after(&block, "console:"),
        format!("{address}/admin   (sign in with the admin token)")
    );
    assert_eq!(
        value_after(&block, "API docs:"),
        format!("{address}/docs   (Authorize: the admin token)")
    );
    assert_eq!(
        value_after(&block, "webhook URL:"),
        format!("{address}/webhooks/clerk")
    );
    assert_eq!(
        value_after(&block, "database:"),
        format!("psql '{}'", db.url)
    );
    let token = value_after(&block, "admin token:").to_owned();
    assert!(
        token.len() >= 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    // The token signs in to the operator api; the console and the docs are there.
    let client = reqwest::Client::new();
    let queues = client
        .get(format!("{address}/admin/api/queues"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(queues.status(), 200);
    for page in ["/admin", "/docs"] {
        assert_eq!(
            reqwest::get(format!("{address}{page}"))
                .await
                .unwrap()
                .status(),
            200,
            "{page}"
        );
    }

    // Three simulate commands, one user id; each works as printed.
    let commands: Vec<&str> = block
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("CLERK_WEBHOOK_SECRET="))
        .collect();
    assert_eq!(commands.len(), 3, "{block:#?}");
    for (command, event) in commands
        .iter()
        .zip(["user.created", "user.updated", "user.deleted"])
    {
        assert!(
            command.contains(&format!("simulate {event} --user-id user_dev_0001")),
            "{command}"
        );
    }
    let run = |command: &str| {
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(command).current_dir(repo_root());
        let out = run_bounded(cmd, Duration::from_secs(30));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{command}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let said = run(commands[0]);
    for line in [
        "sent user.created to ",
        "  user id: user_dev_0001",
        "  email:   user_dev_0001@example.com",
        "answer: 202 ",
    ] {
        assert!(
            said.lines().any(|l| l.starts_with(line)),
            "no {line:?} in {said}"
        );
    }
    assert!(said.contains("  svix-id: msg_sim"), "{said}");
    eventually("user.created", &db, "user_dev_0001", |u| {
        u.email.as_deref() == Some("user_dev_0001@example.com") && u.deleted_at_ms.is_none()
    })
    .await;
    let said = run(commands[1]);
    assert!(
        said.contains("  email:   user_dev_0001@example.com"),
        "{said}"
    );
    // Only the first name changes: the email stays, the role stays `user`.
    eventually("user.updated", &db, "user_dev_0001", |u| {
        u.first_name.as_deref() == Some("Ada")
            && u.email.as_deref() == Some("user_dev_0001@example.com")
            && u.role == "user"
    })
    .await;
    run(commands[2]);
    eventually("user.deleted", &db, "user_dev_0001", |u| {
        u.deleted_at_ms.is_some()
    })
    .await;

    // The README's block is what scripts/dev prints (with its defaults put back).
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let documented: Vec<String> = readme
        .split("```text\n")
        .find(|b| b.starts_with("authsync is ready."))
        .expect("README has the ready block")
        .split("\n```")
        .next()
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let bin_dir = binary("api").parent().unwrap().display().to_string();
    let printed: Vec<String> = block
        .iter()
        .map(|l| {
            l.replace(&token, "<generated token>")
                .replace(&db.url, "postgres://postgres@127.0.0.1:55432/authsync")
                .replace(&format!("127.0.0.1:{port}"), "127.0.0.1:8080")
                .replace(&format!("PORT={port} "), "PORT=8080 ")
                .replace(&bin_dir, "./target/debug")
                .replace(&repo_root().display().to_string(), "/path/to/authsync")
        })
        .collect();
    assert_eq!(
        printed, documented,
        "README's quick start differs from what scripts/dev prints"
    );

    // A second scripts/dev on the same port refuses at once and leaves the first alone.
    let mut second = dev_command(&[("DATABASE_URL", &db.url), ("PORT", &port.to_string())]);
    second.stdin(Stdio::null());
    let out = run_bounded(second, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("dev: port {port} is already in use"))
            && stderr.contains(&format!("PORT={} scripts/dev", port + 1)),
        "{stderr}"
    );
    let still = reqwest::get(format!("{address}/readyz")).await.unwrap();
    assert_eq!(
        still.status(),
        200,
        "the first scripts/dev stopped answering"
    );
    drop(dev);
}

#[tokio::test]
async fn scripts_dev_refuses_a_local_cluster_another_one_uses() {
    // Another scripts/dev holds the local cluster's lock: this one must not touch .local/pg.
    let local = repo_root().join(".local");
    std::fs::create_dir_all(&local).unwrap();
    let lock = local.join("dev.lock");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "60"])
        .process_group(0)
        .spawn()
        .unwrap();
    // Until flock holds it (bounded).
    let start = Instant::now();
    while Command::new("flock")
        .args(["-n"])
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "flock never held the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let port = free_port();
    let mut dev = dev_command(&[("PORT", &port.to_string())]);
    dev.stdin(Stdio::null());
    let out = run_bounded(dev, Duration::from_secs(30));
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", holder.id())])
        .status();
    let _ = holder.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(".local/pg is in use by another scripts/dev")
            && stderr.contains("DATABASE_URL="),
        "{stderr}"
    );
}
