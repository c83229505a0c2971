//! Connecting and migrating. `api migrate` is the only caller of [`migrate`].

use crate::config::DatabaseConfig;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
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

/// A lazily connecting pool: the process starts even while Postgres is down, and each
/// request or job that needs a connection gets a clear, short-lived error instead of a hang.
pub fn pool(config: &DatabaseConfig) -> Result<PgPool, DbError> {
    let options =
        PgConnectOptions::from_str(config.url.expose_secret()).map_err(DbError::BadUrl)?;
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options.application_name("authsync")))
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
