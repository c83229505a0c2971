//! Is the database ready for us, and if not, what fixes it? One check shared by the api's
//! start-up line and `/readyz` and the worker's start-up wait: an unreachable server, a
//! database that does not exist, and a schema without our migrations each get their own
//! state and a one-line fix, instead of requests that wait out the pool's acquire timeout.

use sqlx::{ConnectOptions, Connection};
use std::time::Duration;

/// How long one look at the database may take. A refused connection makes the pool retry
/// until its acquire timeout (5 s on the api); this stops waiting sooner and asks the server
/// directly why.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the database looks like to this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbState {
    /// It answers and our migrations have run.
    Ready,
    /// No connection: nothing listens, the host is unknown, the login is refused…
    Unreachable { reason: String },
    /// The server answers but the database in `DATABASE_URL` does not exist.
    Missing { database: String },
    /// The database exists but `api migrate` has not run.
    NotMigrated,
    /// The server answers a connection of our own, but the pool gave none in time (every
    /// one in use) or its statement failed: `reason` says which.
    Busy { reason: String },
}

impl DbState {
    /// The error code `/readyz` answers with (`ready` for [`DbState::Ready`]).
    pub fn code(&self) -> &'static str {
        match self {
            DbState::Ready => "ready",
            DbState::Unreachable { .. } | DbState::Busy { .. } => "unavailable",
            DbState::Missing { .. } => "database_missing",
            DbState::NotMigrated => "not_migrated",
        }
    }

    /// One line: what is wrong and what fixes it. Never holds a secret (sqlx's errors do not
    /// carry the password).
    pub fn message(&self) -> String {
        match self {
            DbState::Ready => "the database is ready".into(),
            DbState::Unreachable { reason } => format!(
                "the database cannot be reached ({reason}): check DATABASE_URL and that PostgreSQL is running"
            ),
            DbState::Missing { database } => format!(
                "the database \"{database}\" does not exist: create it (`createdb {database}`, or `CREATE DATABASE \"{database}\"` in psql) and run `api migrate`, or fix DATABASE_URL"
            ),
            DbState::NotMigrated => {
                "the database has no authsync schema yet: run `api migrate`".into()
            }
            DbState::Busy { reason } => format!(
                "the database answers, but this process could not use it ({reason}): if this lasts, see the connection counts in /metrics"
            ),
        }
    }
}

/// Looks at the database through `pool` (bounded by [`CHECK_TIMEOUT`], twice at most).
pub async fn check(pool: &sqlx::PgPool) -> DbState {
    let looked = tokio::time::timeout(CHECK_TIMEOUT, crate::store::migrated(pool)).await;
    match looked {
        Ok(Ok(true)) => DbState::Ready,
        Ok(Ok(false)) => DbState::NotMigrated,
        Ok(Err(e)) => diagnose(pool, Some(e)).await,
        Err(_) => diagnose(pool, None).await,
    }
}

/// Why the pool got no answer. When it could not connect at all, one connection of our own,
/// whose error names the cause (the pool retries refused connections until its deadline and
/// then only says it timed out).
async fn diagnose(pool: &sqlx::PgPool, seen: Option<sqlx::Error>) -> DbState {
    let options = pool.connect_options();
    let database = options.get_database().unwrap_or("postgres").to_owned();
    if let Some(state) = seen.as_ref().and_then(|e| classify(e, &database)) {
        return state;
    }
    if pool.size() > 0 {
        // The pool has connections, so the server was there: they are busy. Asking it
        // directly would open one more than the process' budget.
        let reason = seen.map_or_else(
            || "no connection of its pool was free within 2 s".to_owned(),
            |e| short(&e),
        );
        return DbState::Busy { reason };
    }
    // The pool has none: one connection of our own (the pool's budget is unused) says why.
    let connected = tokio::time::timeout(CHECK_TIMEOUT, options.connect()).await;
    match connected {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            // Reachable: the pool's error (or its wait) was about something else.
            let reason = seen.map_or_else(
                || "no connection of its pool was free within 2 s".to_owned(),
                |e| short(&e),
            );
            DbState::Busy { reason }
        }
        Ok(Err(e)) => {
            classify(&e, &database).unwrap_or_else(|| DbState::Unreachable { reason: short(&e) })
        }
        Err(_) => DbState::Unreachable {
            reason: "no answer within 2 s".into(),
        },
    }
}

/// A missing database is PostgreSQL's `3D000` (invalid_catalog_name); a failure to connect
/// (no server, TLS, a refused login `28…`, a connection error `08…`, a server starting or
/// out of connections) is "unreachable"; anything else is not about reaching it (`None`).
fn classify(e: &sqlx::Error, database: &str) -> Option<DbState> {
    let unreachable = || DbState::Unreachable { reason: short(e) };
    match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("3D000") => Some(DbState::Missing {
                database: database.to_owned(),
            }),
            Some(c) if c.starts_with("28") || c.starts_with("08") => Some(unreachable()),
            Some("57P03" | "53300") => Some(unreachable()),
            _ => None,
        },
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => Some(unreachable()),
        _ => None,
    }
}

/// The error's own words, on one line.
fn short(e: &sqlx::Error) -> String {
    let text = match e {
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_names_its_fix_on_one_line() {
        for (state, code, fix) in [
            (DbState::NotMigrated, "not_migrated", "run `api migrate`"),
            (
                DbState::Missing {
                    database: "authsync".into(),
                },
                "database_missing",
                "createdb authsync",
            ),
            (
                DbState::Unreachable {
                    reason: "Connection refused (os error 111)".into(),
                },
                "unavailable",
                "check DATABASE_URL",
            ),
        ] {
            assert_eq!(state.code(), code);
            let message = state.message();
            assert!(message.contains(fix), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }
}
