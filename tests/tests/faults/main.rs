//! The tests that start processes and break things: worker and api processes killed and
//! restarted, Postgres and PgBouncer, headless browsers, systemd units.

mod admin_page;
mod concurrency;
mod console_page;
mod convergence;
mod cors_page;
mod crash;
mod deploy_units;
mod pooler;
mod postgres_restart;
mod scale_out;
mod setup_page;
