//! Logs behind a switch: silent unless `TEST_LOG=1`. Then the test process traces to the test
//! writer (captured per test, shown for failures or with `--nocapture`), filtered by
//! `RUST_LOG`, and the processes a test starts inherit the same filter.

use std::sync::Once;

/// The filter when `TEST_LOG=1` and `RUST_LOG` is unset (the binaries' own default).
const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Whether `TEST_LOG` asks for logs.
pub fn enabled() -> bool {
    std::env::var("TEST_LOG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Installs the test process' subscriber once, when `TEST_LOG` is on; else does nothing.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if enabled() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(child_filter())
                .with_test_writer()
                .try_init();
        }
    });
}

/// `RUST_LOG` for a child process: the test's own filter with `TEST_LOG=1`, else `off`.
pub fn child_filter() -> String {
    if enabled() {
        std::env::var("RUST_LOG").unwrap_or_else(|_| DEFAULT_FILTER.to_owned())
    } else {
        "off".to_owned()
    }
}
