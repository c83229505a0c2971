//! A fresh, migrated database per test on the server `DATABASE_URL` names.

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::str::FromStr;

pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    admin_url: String,
}

/// The server tests may create databases on; `scripts/test` sets it.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must point at a Postgres server: run the tests with scripts/test")
}

fn with_database(url: &str, name: &str) -> String {
    let opts = PgConnectOptions::from_str(url)
        .expect("DATABASE_URL parses")
        .database(name);
    opts.to_url_lossy().to_string()
}

impl TestDb {
    /// Creates `authsync_test_<uuid>` and applies every migration, exactly as `api migrate`.
    pub async fn new() -> Self {
        let db = Self::empty().await;
        jobs::db::migrate(&db.pool).await.expect("migrations apply");
        db
    }

    /// A new database without migrations.
    pub async fn empty() -> Self {
        crate::telemetry::init();
        let admin_url = admin_url();
        let name = format!("authsync_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to DATABASE_URL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = with_database(&admin_url, &name);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(20)
            .connect(&url)
            .await
            .expect("connect to test database");
        Self {
            name,
            url,
            pool,
            admin_url,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // Best effort: a throwaway cluster disappears anyway; a shared server should not fill up.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    if let Ok(mut c) = PgConnection::connect(&admin).await {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                })
        })
        .join();
    }
}
