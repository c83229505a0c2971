//! One tracing set-up for both binaries: `RUST_LOG` filters, `LOG_FORMAT=json` for production.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber. Safe to call more than once (later calls do nothing),
/// which tests rely on.
pub fn init_telemetry(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    // No colour codes when the output is a file or a pipe.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(ansi);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// The process' Prometheus recorder (installed on first use; one per process).
pub fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
            .expect("valid buckets")
            .install_recorder()
            .expect("no other metrics recorder is installed")
    })
}

/// Sets the queue gauges from `apalis.jobs`: depth by queue and state, and the age of the
/// oldest due job by queue. Called when metrics are scraped.
pub async fn record_queue_gauges(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    let rows: Vec<(String, String, i64, Option<f64>)> = sqlx::query_as(
        "SELECT job_type, \
           CASE WHEN status = 'Failed' AND attempts >= max_attempts THEN 'dead' \
                WHEN status = 'Failed' THEN 'retrying' ELSE lower(status) END AS state, \
           count(*), \
           extract(epoch from now() - min(run_at) FILTER (WHERE status IN ('Pending', 'Failed') AND run_at <= now()))::float8 \
         FROM apalis.jobs WHERE status <> 'Done' GROUP BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    // States that emptied since the last scrape must read 0, not their old value.
    for queue in crate::queue::registry().queues() {
        for state in ["pending", "queued", "running", "retrying", "dead", "killed"] {
            metrics::gauge!("authsync_queue_depth", "queue" => queue, "state" => state).set(0.0);
        }
    }
    let mut oldest: std::collections::HashMap<String, f64> = Default::default();
    for (queue, state, n, age) in rows {
        metrics::gauge!("authsync_queue_depth", "queue" => queue.clone(), "state" => state)
            .set(n as f64);
        if let Some(a) = age {
            let e = oldest.entry(queue).or_insert(0.0);
            *e = e.max(a);
        }
    }
    for queue in crate::queue::registry().queues() {
        metrics::gauge!("authsync_queue_oldest_pending_seconds", "queue" => queue)
            .set(oldest.get(queue).copied().unwrap_or(0.0));
    }
    Ok(())
}

/// The Prometheus text of this process, with the queue gauges refreshed first (a database
/// hiccup only leaves the gauges as they were).
pub async fn render_metrics(pool: &sqlx::PgPool) -> String {
    if let Err(e) = record_queue_gauges(pool).await {
        tracing::warn!(error = %e, "queue gauges unavailable for this scrape");
    }
    metrics().render()
}
