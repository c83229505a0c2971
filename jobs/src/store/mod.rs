//! Every statement on one of our tables, one file per table, as small named functions that
//! run on the caller's connection (inside its transaction, through [`crate::db::tx`]) or pool
//! ([`crate::db::on`]) and return `FromRow` structs. The rules the statements serve stay in
//! the domain modules ([`crate::users`], [`crate::tenancy`], [`crate::intake`], the handlers).
//!
//! Static statements are checked against the schema at build time (`sqlx::query!` and
//! friends, with the offline data committed in `jobs/.sqlx`; see the README, "Changing a
//! query"). Statements whose text is composed at run time (an audit entry written by the
//! change's own statement, the intake's unnest batch) are checked at run time and say so.

pub mod audit;
pub mod held_deletions;
pub mod memberships;
pub mod organizations;
pub mod queue_jobs;
pub mod sent_emails;
pub mod sync_jobs;
pub mod user_activity;
pub mod users;
pub mod webhook_events;

/// Whether the migrations have run: our event log and the job queue exist.
pub async fn migrated(pool: &sqlx::PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT to_regclass('public.webhook_events') IS NOT NULL
                  AND to_regclass('apalis.jobs') IS NOT NULL AS "migrated!""#
    )
    .fetch_one(crate::db::on(pool))
    .await
}
