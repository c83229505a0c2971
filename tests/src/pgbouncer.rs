//! A real PgBouncer (Debian's package, 1.18 or later) in `pool_mode = transaction` in front of
//! the test server, on a free port, for the tests that run authsync behind a transaction
//! pooler. `scripts/test` installs it when missing (as root). It ends when its handle is
//! dropped, also when the test panics.

use std::fs;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The PgBouncer binary: `PGBOUNCER_BIN`, else Debian's `/usr/sbin/pgbouncer`, else `PATH`.
fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("PGBOUNCER_BIN") {
        return p.into();
    }
    let debian = PathBuf::from("/usr/sbin/pgbouncer");
    if debian.exists() {
        return debian;
    }
    "pgbouncer".into()
}

pub struct PgBouncer {
    child: Option<Child>,
    dir: PathBuf,
    pub port: u16,
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode in front of the server [`crate::db::admin_url`]
    /// names; every database name is passed through to it.
    pub fn start() -> Self {
        Self::start_with_pool_size(20)
    }

    /// [`PgBouncer::start`] with `size` server connections per database (`default_pool_size`):
    /// with 1, every client's transactions share one server connection, and whatever session
    /// state one leaves there (named prepared statements) the next one meets.
    pub fn start_with_pool_size(size: u32) -> Self {
        let upstream = host_port(&crate::db::admin_url());
        let dir = std::env::temp_dir().join(format!(
            "authsync-pgbouncer-{}",
            uuid::Uuid::new_v4().simple()
        ));
        fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let port = crate::free_port();
        fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n").unwrap();
        fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n\
                 * = host={host} port={upstream_port}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {auth}\n\
                 pool_mode = transaction\n\
                 max_client_conn = 1000\n\
                 default_pool_size = {size}\n\
                 ignore_startup_parameters = extra_float_digits,application_name,options\n",
                host = upstream.0,
                upstream_port = upstream.1,
                auth = dir.join("userlist.txt").display(),
            ),
        )
        .unwrap();
        let mut p = Self {
            child: None,
            dir,
            port,
        };
        p.up();
        p
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>` through this pooler.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops PgBouncer at once (SIGTERM: immediate shutdown, client connections cut), keeps it
    /// down for `down`, then starts it again on the same port.
    pub fn restart(&mut self, down: Duration) {
        self.stop();
        std::thread::sleep(down);
        self.up();
    }

    fn up(&mut self) {
        let mut cmd = Command::new(binary());
        // PgBouncer refuses to run as root; it switches to `postgres` itself with -u.
        if running_as_root() {
            cmd.arg("-u").arg("postgres");
        }
        let log = fs::File::create(self.dir.join("pgbouncer.log")).unwrap();
        let child = cmd
            .arg(self.dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install Debian's pgbouncer package \
                     (scripts/test does so as root)",
                    binary().display()
                )
            });
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "pgbouncer exited with {status}: {}",
                    fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "pgbouncer did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(5) {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Host and port of a Postgres URL.
fn host_port(url: &str) -> (String, u16) {
    use std::str::FromStr;
    let o = sqlx::postgres::PgConnectOptions::from_str(url).expect("DATABASE_URL parses");
    (o.get_host().to_owned(), o.get_port())
}
