//! A binary of its own: these tests read the process-wide metrics recorder (pool gauges
//! named `main`) that every in-process api writes, so no other test may share their process.

mod metrics;
mod readiness;
