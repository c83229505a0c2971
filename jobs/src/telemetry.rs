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
    let rows: Vec<(String, String, i64, Option<f64>)> = crate::db::query_as(
        "SELECT job_type, \
           CASE WHEN status = 'Failed' AND attempts >= max_attempts THEN 'dead' \
                WHEN status = 'Failed' THEN 'retrying' ELSE lower(status) END AS state, \
           count(*), \
           extract(epoch from now() - min(run_at) FILTER (WHERE status IN ('Pending', 'Failed') AND run_at <= now()))::float8 \
         FROM apalis.jobs WHERE status <> 'Done' GROUP BY 1, 2",
    )
    .fetch_all(crate::db::on(pool))
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

/// Counts and times one HTTP request served by this process. `route` is the route's template
/// (`/v1/jobs/{id}`, never the concrete path) or `unmatched`, so the label stays bounded.
pub fn record_http_request(method: &str, route: &str, status: u16, elapsed: std::time::Duration) {
    const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    let method = METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other");
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!("authsync_http_requests_total", &labels).increment(1);
    metrics::histogram!("authsync_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
}

/// Sets the gauges of one connection pool: connections open, idle and allowed. (sqlx does not
/// say how many tasks wait for a connection; a full pool with no idle ones is that sign.)
pub fn record_pool_gauges(name: &'static str, pool: &sqlx::PgPool) {
    let idle = pool.num_idle() as f64;
    let size = f64::from(pool.size());
    metrics::gauge!("authsync_db_pool_connections", "pool" => name).set(size);
    metrics::gauge!("authsync_db_pool_idle_connections", "pool" => name).set(idle);
    metrics::gauge!("authsync_db_pool_in_use_connections", "pool" => name)
        .set((size - idle).max(0.0));
    metrics::gauge!("authsync_db_pool_max_connections", "pool" => name)
        .set(f64::from(pool.options().get_max_connections()));
}

/// The process' own figures (resident memory, CPU seconds, open and allowed file descriptors,
/// threads, start time), collected by `metrics-process` at scrape time.
fn record_process_metrics() {
    static COLLECTOR: std::sync::OnceLock<metrics_process::Collector> = std::sync::OnceLock::new();
    COLLECTOR
        .get_or_init(|| {
            let c = metrics_process::Collector::default();
            c.describe();
            c
        })
        .collect();
}

/// The Prometheus text of this process: queue gauges refreshed from `pool` first (a database
/// hiccup only leaves them as they were), then the gauges of each named pool and the process'.
pub async fn render_metrics(
    pool: &sqlx::PgPool,
    pools: &[(&'static str, &sqlx::PgPool)],
) -> String {
    if let Err(e) = record_queue_gauges(pool).await {
        tracing::warn!(error = %e, "queue gauges unavailable for this scrape");
    }
    for (name, p) in pools {
        record_pool_gauges(name, p);
    }
    record_process_metrics();
    metrics().render()
}
