//! A binary of its own: these tests read the process-wide metrics recorder (pool gauges
//! named `main`) that every in-process api writes, so no other test may share their process.

mod metrics;
mod readiness;

/// Held by each test of this binary for its whole run: the recorder's gauges are shared, so
/// they take turns (one api's pool of 2 would otherwise show in another's `main` gauges).
static RECORDER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
