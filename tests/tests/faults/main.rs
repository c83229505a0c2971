//! The tests that start processes and break things: worker and api processes killed and
//! restarted, Postgres and PgBouncer, headless browsers, systemd units.

mod admin_page;
mod cli;
mod concurrency;
mod console_page;
mod convergence;
mod cors_page;
mod crash;
mod deploy_units;
mod docs_page;
mod pooler;
mod postgres_restart;
mod quick_start;
mod scale_out;
mod setup_page;
mod startup_checks;
