//! [`tx`]`(conn)`: the executor for a statement inside a transaction of ours. The query
//! macros (`sqlx::query!` and friends) build statements that ask to be prepared and cached,
//! and their mapped form offers no `.persistent()`: behind a transaction pooler this executor
//! sends them unnamed instead, as [`super::query`] does for runtime-built statements. In
//! direct mode it is the connection itself.

use super::autocommit::Unnamed;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use sqlx::postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Either, Execute, Executor, PgConnection, Postgres, SqlStr};

/// See the module docs.
#[derive(Debug)]
pub struct InTx<'c>(&'c mut PgConnection);

/// Runs one statement on `conn` (a transaction's connection), unnamed in pooler mode.
pub fn tx(conn: &mut PgConnection) -> InTx<'_> {
    InTx(conn)
}

impl<'c> Executor<'c> for InTx<'c> {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if super::pooler() {
            self.0.fetch_many(Unnamed(query))
        } else {
            self.0.fetch_many(query)
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if super::pooler() {
            self.0.fetch_optional(Unnamed(query))
        } else {
            self.0.fetch_optional(query)
        }
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        self.0.prepare_with(sql, parameters)
    }

    fn describe<'e>(
        self,
        sql: SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.0.describe(sql)
    }
}
