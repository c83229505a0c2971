//! Connecting and migrating. `api migrate` is the only caller of [`migrate`].
//!
//! The pooler-safe statement helpers ([`query`], [`query_as`], [`query_scalar`], [`on`],
//! [`begin`], [`TxLimits`], [`session_pool`] …) live in the queue runtime
//! (`authsync_queue::db`, whose docs explain transaction-pooler mode) and are re-exported here,
//! so every call site writes `crate::db::query` / `jobs::db::query`. Statements of the query
//! macros (compile-time checked, all in [`crate::store`]) cannot be told to stay unnamed, so
//! they run on [`on`]`(pool)` or, inside a transaction, on [`tx`]`(conn)`, which send them
//! unnamed in pooler mode. This module adds what belongs to the app: the pools built from [`DatabaseConfig`] (which also set the process'
//! pooler mode) and the migrations.

pub use authsync_queue::db::*;

use crate::config::DatabaseConfig;
use secrecy::ExposeSecret;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

/// The one line `api migrate` stops with when it would run through a transaction pooler.
pub const MIGRATE_NEEDS_DIRECT_URL: &str = "migrations cannot run through a transaction pooler \
     (DATABASE_URL): set DATABASE_DIRECT_URL to a direct or session-mode connection string";

/// Why the database could not be reached or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL is not a valid Postgres URL")]
    BadUrl(#[source] sqlx::Error),
    #[error("DATABASE_DIRECT_URL is not a valid Postgres URL")]
    BadDirectUrl(#[source] sqlx::Error),
    /// [`MIGRATE_NEEDS_DIRECT_URL`].
    #[error("{MIGRATE_NEEDS_DIRECT_URL}")]
    MigrateNeedsDirectUrl,
    #[error("applying the app's migrations failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("applying the job queue's migrations failed")]
    QueueSetup(#[source] authsync_queue::schema::SetupError),
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
/// Acquires wait up to [`API_ACQUIRE_TIMEOUT`]. Also sets the process' pooler mode from `config`.
pub fn pool(config: &DatabaseConfig) -> Result<PgPool, DbError> {
    pool_waiting(config, API_ACQUIRE_TIMEOUT)
}

/// [`pool`] whose acquires wait up to `acquire_timeout` (the worker's:
/// [`WORKER_ACQUIRE_TIMEOUT`]).
pub fn pool_waiting(config: &DatabaseConfig, acquire_timeout: Duration) -> Result<PgPool, DbError> {
    let mut options =
        PgConnectOptions::from_str(config.url.expose_secret()).map_err(DbError::BadUrl)?;
    let direct = match &config.direct_url {
        Some(url) if config.pooler => {
            Some(PgConnectOptions::from_str(url.expose_secret()).map_err(DbError::BadDirectUrl)?)
        }
        _ => None,
    };
    if config.pooler {
        // Nothing of ours is persistent then; this keeps sqlx from caching anything either.
        options = options.statement_cache_capacity(0);
    }
    set_mode(config.pooler, direct);
    Ok(pool_options()
        .max_connections(config.max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options.application_name("authsync")))
}

/// The app's own migrations, embedded.
pub fn app_migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("../migrations")
}

/// Applies our migrations (history in `public._sqlx_migrations`) and apalis-postgres' own
/// (history in `apalis._sqlx_migrations`: the two never see each other's versions), then the
/// queue adjustments that must follow apalis' schema. Safe to run twice.
///
/// Both migrators hold a session advisory lock and use named prepared statements, so they
/// need a session of their own: in pooler mode they run over `DATABASE_DIRECT_URL` and are
/// refused up front without it; through an unflagged pooler, the prepared-statement errors
/// they run into become the same refusal.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    let Some(pool) = session_pool(pool) else {
        return Err(DbError::MigrateNeedsDirectUrl);
    };
    let pool = &pool;
    authsync_queue::schema::setup(pool)
        .await
        .map_err(|e| match e {
            authsync_queue::schema::SetupError::Database(e) if behind_transaction_pooler(&e) => {
                DbError::MigrateNeedsDirectUrl
            }
            e => DbError::QueueSetup(e),
        })?;
    app_migrator().run(pool).await.map_err(|e| {
        if migration_behind_pooler(&e) {
            DbError::MigrateNeedsDirectUrl
        } else {
            DbError::Migrate(e)
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
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

    /// The `.rs` files of the three crates.
    fn sources() -> Vec<std::path::PathBuf> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for krate in ["jobs/src", "api/src", "worker/src"] {
            rust_files(&root.join(krate), &mut files);
        }
        files
    }

    /// The query macros' statements cannot be told to stay unnamed: they live in `store/`
    /// only, and every statement there runs on `db::on` or `db::tx`, which send it unnamed in
    /// pooler mode.
    #[test]
    fn checked_statements_live_in_the_store_and_run_on_the_pooler_safe_executors() {
        let store = std::path::Path::new("jobs/src/store");
        let mut offenders = Vec::new();
        for f in sources() {
            let text = std::fs::read_to_string(&f).unwrap();
            let in_store = f.components().collect::<Vec<_>>().windows(3).any(|w| {
                std::path::Path::new(w[0].as_os_str())
                    .join(w[1].as_os_str())
                    .join(w[2].as_os_str())
                    == store
            });
            for (n, line) in text.lines().enumerate() {
                let macros = ["query", "query_as", "query_scalar"]
                    .iter()
                    .flat_map(|m| [format!("{m}!("), format!("{m}_unchecked!(")])
                    .map(|m| format!("sqlx::{m}"));
                if !in_store && macros.into_iter().any(|m| line.contains(&m)) {
                    offenders.push(format!(
                        "{}:{}: a query macro outside jobs/src/store",
                        f.display(),
                        n + 1
                    ));
                }
            }
            if !in_store {
                continue;
            }
            for run in [
                ".execute(",
                ".fetch_one(",
                ".fetch_optional(",
                ".fetch_all(",
                ".fetch(",
            ] {
                for (at, _) in text.match_indices(run) {
                    let executor = text[at + run.len()..].trim_start();
                    let safe = ["db::on(", "db::tx("].iter().any(|p| {
                        executor.starts_with(p) || executor.starts_with(&format!("crate::{p}"))
                    });
                    if !safe {
                        let line = text[..at].lines().count();
                        offenders.push(format!(
                            "{}:{line}: runs on neither db::on nor db::tx",
                            f.display()
                        ));
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "{}", offenders.join("\n"));
    }
}
