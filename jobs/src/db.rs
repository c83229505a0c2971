//! Connecting and migrating. `api migrate` is the only caller of [`migrate`].

use crate::config::DatabaseConfig;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// Why the database could not be reached or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL is not a valid Postgres URL")]
    BadUrl(#[source] sqlx::Error),
    #[error("applying the app's migrations failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("applying the job queue's migrations failed")]
    QueueSetup(#[source] apalis_postgres::Error),
    #[error("database error")]
    Sql(#[from] sqlx::Error),
}

/// How long an api request waits for one of the pool's connections before it fails (503):
/// a client should hear "try again" quickly rather than hang.
pub const API_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a job waits for one of the worker pool's connections. A worker runs more jobs at
/// once than it has connections (many spend their time on Clerk or SMTP, not the database),
/// so under a backlog jobs queue for a connection (sqlx serves waiters first come, first
/// served). Waiting is not failing: with 5 s, jobs queued behind a few slow transactions
/// would time out together, each burning an attempt and backing off, a failure storm that
/// left the backlog where it was. Half the default job deadline ([`crate::queue::Job::DEADLINE`])
/// leaves the job time to run once it has its connection.
pub const WORKER_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// A lazily connecting pool: the process starts even while Postgres is down, and each
/// request or job that needs a connection gets a clear, short-lived error instead of a hang.
/// Acquires wait up to [`API_ACQUIRE_TIMEOUT`].
pub fn pool(config: &DatabaseConfig) -> Result<PgPool, DbError> {
    pool_waiting(config, API_ACQUIRE_TIMEOUT)
}

/// [`pool`] whose acquires wait up to `acquire_timeout` (the worker's:
/// [`WORKER_ACQUIRE_TIMEOUT`]).
pub fn pool_waiting(config: &DatabaseConfig, acquire_timeout: Duration) -> Result<PgPool, DbError> {
    let options =
        PgConnectOptions::from_str(config.url.expose_secret()).map_err(DbError::BadUrl)?;
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options.application_name("authsync")))
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
    /// Job transactions unless a job says otherwise ([`crate::queue::Job::DB_LIMITS`]): our
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
    PgPoolOptions::new()
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

/// The app's own migrations, embedded.
pub fn app_migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("../migrations")
}

/// Applies our migrations (history in `public._sqlx_migrations`) and apalis-postgres' own
/// (history in `apalis._sqlx_migrations`: the two never see each other's versions), then the
/// queue adjustments that must follow apalis' schema. Safe to run twice.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    apalis_postgres::PostgresStorage::setup(pool)
        .await
        .map_err(DbError::QueueSetup)?;
    app_migrator().run(pool).await.map_err(DbError::Migrate)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
