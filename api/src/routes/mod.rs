//! HTTP routes. Each handler verifies, delegates to `jobs`, and maps the outcome.

pub mod admin;
pub mod admin_reconcile;
pub mod csrf;
pub mod health;
pub mod me;
pub mod metrics;
pub mod redact;
pub mod setup;
pub mod sync;
pub mod webhooks;
