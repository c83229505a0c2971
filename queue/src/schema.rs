//! apalis-postgres' schema (`apalis.jobs`, `apalis.workers`), which this runtime shares with
//! apalis: created and upgraded by apalis' own embedded migrator, whose history lives in
//! `apalis._sqlx_migrations`, apart from the application's.

use apalis_postgres::PostgresStorage;
use sqlx::PgPool;

/// Why [`setup`] failed (apalis-postgres' error).
pub use apalis_postgres::Error as SetupError;

/// Creates or upgrades apalis-postgres' schema. Safe to run twice. Needs a session of its own
/// (advisory lock, named statements): never through a transaction pooler.
pub async fn setup(pool: &PgPool) -> Result<(), SetupError> {
    PostgresStorage::setup(pool).await
}
