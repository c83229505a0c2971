//! Real `api` and `worker` processes for tests that kill them or their database. `scripts/test`
//! builds the binaries first. Every process a test starts ends when its handle is dropped —
//! also when the test panics, since unwinding drops it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The built binary `name` (target/<profile>/<name>): beside the running executable when that
/// is a binary itself (`authsync-test-stack`), else next to the test executable's folder
/// (target/<profile>/deps).
pub fn binary(name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(format!("AUTHSYNC_{}_BIN", name.to_uppercase())) {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let beside = exe.parent().expect("executable's folder");
    let dir = match beside.file_name() {
        Some(d) if d == "deps" => beside.parent().expect("target dir"),
        _ => beside,
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests through scripts/test (it runs `cargo build --bins` first)",
        path.display()
    );
    path
}

/// A worker process against `database_url`; killed when dropped.
pub struct WorkerProcess {
    pub child: Child,
}

impl WorkerProcess {
    pub fn start(database_url: &str, extra_env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(binary("worker"));
        cmd.env("DATABASE_URL", database_url)
            .env("MAIL_DIR", std::env::temp_dir().join("authsync-test-mail"))
            .env("RUST_LOG", crate::telemetry::child_filter())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().expect("start worker"),
        }
    }

    /// The process id, which is part of its worker names (`<queue>@<host>-<pid>-<random>`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) until this process has registered its workers in `apalis.workers`,
    /// i.e. it is ready to claim jobs.
    pub async fn wait_registered(&self, pool: &sqlx::PgPool) {
        let pattern = format!("%-{}-%", self.pid());
        let start = Instant::now();
        loop {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.workers WHERE id LIKE $1")
                .bind(&pattern)
                .fetch_one(pool)
                .await
                .unwrap();
            if n > 0 {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "worker {} did not register within 20 s",
                self.pid()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to clean up, like a crashed host.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait at most `limit` for the process to exit; `None` (and SIGKILL) when it
    /// did not, so a hung shutdown fails the test instead of hanging it.
    pub fn terminate_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_9();
        None
    }

    /// SIGTERM and wait: the graceful path.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("worker exits")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An api process against `database_url`, signing secret [`crate::SECRET`], on a free port;
/// killed when dropped.
pub struct ApiProcess {
    pub child: Child,
    /// `http://127.0.0.1:<port>`
    pub address: String,
}

impl ApiProcess {
    pub fn start(database_url: &str) -> Self {
        Self::start_with(database_url, &[])
    }

    /// [`ApiProcess::start`] with more environment variables.
    pub fn start_with(database_url: &str, extra_env: &[(&str, &str)]) -> Self {
        let port = crate::free_port();
        let mut cmd = Command::new(binary("api"));
        cmd.env("DATABASE_URL", database_url)
            .env("CLERK_WEBHOOK_SECRET", crate::SECRET)
            .env("PORT", port.to_string())
            .env("RUST_LOG", crate::telemetry::child_filter())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start api");
        Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ids of running processes whose command line mentions `marker` (a path unique to one
/// test, such as a browser profile folder).
pub fn pids_mentioning(marker: &Path) -> Vec<u32> {
    let marker = marker.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| cmd.windows(marker.len()).any(|w| w == marker))
        })
        .collect()
}

/// SIGKILLs every process whose command line mentions `marker`, by id, and waits (bounded)
/// until they are gone. Processes that left their parent's process group (Chromium's crash
/// handler starts its own session) are found this way too.
pub fn kill_processes_mentioning(marker: &Path) {
    let start = Instant::now();
    loop {
        let pids = pids_mentioning(marker);
        if pids.is_empty() || start.elapsed() > Duration::from_secs(5) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(pids.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(50));
    }
}
