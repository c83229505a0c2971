//! Pooler-safe statements: the helpers every statement of authsync goes through (this crate's,
//! and `jobs`'s, which re-exports them as `jobs::db`).
//!
//! **Transaction-pooler mode** (set once per process with [`set_mode`]; `jobs::db::pool` does
//! it from `DATABASE_POOLER`, `DATABASE_DIRECT_URL` or a known pooler host): PgBouncer,
//! Supavisor or Neon hand each
//! *transaction* to any server connection, so nothing may outlive one. Then every statement
//! is sent unnamed (never a named prepared statement, which would stay on one server
//! connection: "prepared statement sqlx_s_1 already exists / does not exist") and inside an
//! explicit transaction (sqlx sends Parse/Describe/Sync and waits before Bind/Execute: outside
//! a transaction the pooler may hand the Bind to another server connection). Every call site
//! keeps the rule by building its statements with [`query`], [`query_as`] or [`query_scalar`]
//! and running those outside a transaction on [`on`]`(pool)`. LISTEN, migrations (session
//! advisory lock) and session `SET`s go to [`session_pool`] (`DATABASE_DIRECT_URL`), or do not
//! happen. In direct mode the same helpers cost nothing: statements stay cached and prepared.

mod autocommit;
mod in_tx;

pub use autocommit::{on, Autocommit};
pub use in_tx::{tx, InTx};

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{FromRow, PgPool, Postgres, SqlSafeStr, Transaction};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Process-wide: the main pool goes through a transaction pooler.
static POOLER: AtomicBool = AtomicBool::new(false);
/// Process-wide: `DATABASE_DIRECT_URL`'s options in pooler mode.
static DIRECT: Mutex<Option<PgConnectOptions>> = Mutex::new(None);

/// Whether this process runs in transaction-pooler mode (set by [`set_mode`]).
pub fn pooler() -> bool {
    POOLER.load(Ordering::Relaxed)
}

/// Sets this process' mode: whether the main pool goes through a transaction pooler, and in
/// that mode the options of a direct (or session-mode) connection for [`session_pool`].
pub fn set_mode(pooler: bool, direct: Option<PgConnectOptions>) {
    POOLER.store(pooler, Ordering::Relaxed);
    *DIRECT.lock().expect("direct options") = direct.filter(|_| pooler);
}

/// A statement of ours: prepared and cached per connection in direct mode, sent unnamed in
/// pooler mode. Use it (never `sqlx::query`) for every statement.
pub fn query<'q>(sql: impl SqlSafeStr) -> Query<'q, Postgres, PgArguments> {
    sqlx::query(sql).persistent(!pooler())
}

/// [`query`] whose rows become `O`.
pub fn query_as<'q, O>(sql: impl SqlSafeStr) -> QueryAs<'q, Postgres, O, PgArguments>
where
    O: for<'r> FromRow<'r, PgRow>,
{
    sqlx::query_as(sql).persistent(!pooler())
}

/// [`query`] whose rows are one value each.
pub fn query_scalar<'q, O>(sql: impl SqlSafeStr) -> QueryScalar<'q, Postgres, O, PgArguments>
where
    (O,): for<'r> FromRow<'r, PgRow>,
{
    sqlx::query_scalar(sql).persistent(!pooler())
}

/// A pool for session-scoped work (LISTEN, session settings) beside `main`: `main` itself in
/// direct mode; in pooler mode a small lazy pool over `DATABASE_DIRECT_URL` (with `main`'s
/// application name), or `None` without one (then: poll instead).
pub fn session_pool(main: &PgPool) -> Option<PgPool> {
    if !pooler() {
        return Some(main.clone());
    }
    let direct = DIRECT.lock().expect("direct options").clone()?;
    let name = main
        .connect_options()
        .get_application_name()
        .unwrap_or("authsync")
        .to_owned();
    Some(
        PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(direct.application_name(&name)),
    )
}

/// Teaches a new connection the extension types our statements return (`hstore`: the jobs'
/// metadata), for pooler mode. sqlx 0.9 looks up a result type it has not seen on a connection
/// with a simple query between Parse and Bind (transact-rs/sqlx#4305), which drops an *unnamed*
/// statement: the first claim or result write on each connection failed with "unnamed prepared
/// statement does not exist" and was retried. Pooler mode sends every statement unnamed, so
/// each connection learns the type here, inside a transaction (one server connection): the
/// first try fills sqlx's type cache (and may fail for that very reason), the second must pass.
pub async fn learn_types(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    for attempt in 0..2 {
        let mut tx = conn.begin().await?;
        match sqlx::query("SELECT NULL::hstore")
            .persistent(false)
            .fetch_optional(&mut *tx)
            .await
        {
            Ok(_) => return tx.commit().await,
            Err(_) if attempt == 0 => tx.rollback().await?,
            Err(e) => return Err(e),
        }
    }
    unreachable!("the second attempt returns")
}

/// [`PgPoolOptions`] for a pool of ours: in pooler mode each new connection first
/// [learns the types](learn_types) its statements return.
pub fn pool_options() -> PgPoolOptions {
    let options = PgPoolOptions::new();
    if !pooler() {
        return options;
    }
    options.after_connect(|conn, _| Box::pin(learn_types(conn)))
}

/// `lock_timeout` and `statement_timeout` for one transaction. They are applied with
/// `SET LOCAL` in the statement that opens it, never as session state or connection start-up
/// parameters: behind a transaction pooler (PgBouncer, Supavisor) a session setting would leak
/// into whoever gets the server connection next, or be lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLimits {
    /// Longest wait for one lock (a row another transaction holds): then SQLSTATE 55P03.
    pub lock_timeout: Duration,
    /// Longest run of one statement: then SQLSTATE 57014.
    pub statement_timeout: Duration,
}

impl TxLimits {
    /// Job transactions unless a job says otherwise ([`crate::Job::DB_LIMITS`]): our
    /// writers hold row locks for milliseconds, so 5 s of waiting means something is stuck.
    pub const JOB: TxLimits = TxLimits::new(5_000, 20_000);
    /// Request transactions of the api (`/v1`, admin): a request must not hang on a lock;
    /// the client gets a 503 it can retry instead.
    pub const API: TxLimits = TxLimits::new(2_000, 5_000);

    /// Limits in milliseconds.
    pub const fn new(lock_timeout_ms: u64, statement_timeout_ms: u64) -> Self {
        Self {
            lock_timeout: Duration::from_millis(lock_timeout_ms),
            statement_timeout: Duration::from_millis(statement_timeout_ms),
        }
    }

    /// The one simple-protocol round trip that opens the transaction with these limits.
    fn begin_sql(&self) -> String {
        format!(
            "BEGIN; SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}",
            self.lock_timeout.as_millis().max(1),
            self.statement_timeout.as_millis().max(1)
        )
    }
}

/// Opens a transaction whose statements are bounded by `limits` (one round trip, like a plain
/// `BEGIN`).
pub async fn begin(
    pool: &PgPool,
    limits: TxLimits,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    // Only integers from `TxLimits` are formatted into it.
    pool.begin_with(sqlx::AssertSqlSafe(limits.begin_sql()))
        .await
}

/// Whether Postgres ended a statement because a limit of [`TxLimits`] ran out (or an operator
/// cancelled it): worth retrying, and worth saying so plainly.
pub fn timed_out(e: &sqlx::Error) -> Option<&'static str> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    match db.code()?.as_ref() {
        "55P03" => Some("lock timeout: another transaction held a row this needs for too long"),
        "57014" => Some("statement timeout: a statement ran too long (or was cancelled)"),
        _ => None,
    }
}

/// A small pool of `max` connections of its own, opened with `main`'s options under another
/// `application_name` (so `pg_stat_activity` tells them apart): for work that must not wait
/// behind the main pool's traffic (webhook intake, the api's LISTEN connection).
pub fn derived_pool(main: &PgPool, max: u32, application_name: &str) -> PgPool {
    let options = (*main.connect_options())
        .clone()
        .application_name(application_name);
    pool_options()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options)
}

/// Whether the database refuses these values for good (a data error, a constraint, a trigger's
/// exception), as opposed to being unreachable, restarting, read-only or in a deadlock: then
/// the same write may succeed when tried again.
pub fn refused(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    db.code()
        .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("P0"))
}

/// A named prepared statement that already exists (42P05) or is gone (26000): the session
/// changed under us, as behind a transaction pooler.
pub fn behind_transaction_pooler(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("42P05" | "26000")),
        sqlx::Error::Migrate(m) => migration_behind_pooler(m),
        _ => false,
    }
}

pub fn migration_behind_pooler(e: &sqlx::migrate::MigrateError) -> bool {
    use sqlx::migrate::MigrateError::{Execute, ExecuteMigration};
    matches!(e, Execute(e) | ExecuteMigration(e, _) if behind_transaction_pooler(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pooler rule holds for every statement only if every call site goes through this
    /// module's helpers: no statement built with `sqlx::query*` directly, and no pooled
    /// connection used outside a transaction, anywhere in the queue crate (its interop tests too)
    /// and the three crates over it.
    #[test]
    fn every_statement_is_built_by_the_helpers_of_this_module() {
        fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    rust_files(&path, out);
                } else if path.extension().is_some_and(|x| x == "rs") {
                    out.push(path);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for krate in [
            "queue/src",
            "queue/tests",
            "jobs/src",
            "api/src",
            "worker/src",
        ] {
            rust_files(&root.join(krate), &mut files);
        }
        let here = std::path::Path::new("queue/src/db.rs");
        let mut offenders = Vec::new();
        for f in files.iter().filter(|f| !f.ends_with(here)) {
            let text = std::fs::read_to_string(f).unwrap();
            for (n, line) in text.lines().enumerate() {
                let direct = ["sqlx::query(", "sqlx::query_as(", "sqlx::query_scalar("]
                    .iter()
                    .chain(&[
                        "sqlx::query_as::<",
                        "sqlx::query_scalar::<",
                        ".acquire().await",
                    ])
                    .any(|p| line.contains(p));
                if direct {
                    offenders.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "use authsync_queue::db::{{query, query_as, query_scalar, on}} (jobs::db re-exports them):\n{}",
            offenders.join("\n")
        );
    }

    #[test]
    fn limits_are_set_locally_in_the_begin_statement() {
        assert_eq!(
            TxLimits::new(1_500, 20_000).begin_sql(),
            "BEGIN; SET LOCAL lock_timeout = 1500; SET LOCAL statement_timeout = 20000"
        );
        // 0 would mean "no limit" to Postgres.
        assert!(TxLimits::new(0, 0)
            .begin_sql()
            .ends_with("statement_timeout = 1"));
    }
}
