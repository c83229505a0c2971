//! HTTP routes. Each handler verifies, delegates to `jobs`, and maps the outcome.

pub mod admin;
pub mod health;
pub mod me;
pub mod metrics;
pub mod setup;
pub mod sync;
pub mod webhooks;
