//! One tracing set-up for both binaries: `RUST_LOG` filters, `LOG_FORMAT=json` for production.
//! Also the Prometheus recorder and the gauges both binaries export, and [`PoolWatch`], which
//! tells readiness checks when a pool has been saturated for long.

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
    use crate::queue::{Predicate, Status};
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let failed = Status::Failed;
        format!(
            "SELECT job_type, \
               CASE WHEN {retrying} THEN 'retrying' WHEN status = '{failed}' THEN 'dead' \
                    ELSE lower(status) END AS state, \
               count(*), \
               extract(epoch from now() - min(run_at) FILTER (WHERE {runnable} AND run_at <= now()))::float8 \
             FROM apalis.jobs WHERE NOT {done} GROUP BY 1, 2",
            retrying = Predicate::Retrying,
            // Due and runnable: a dead job (failed, no attempts left) is not waiting.
            runnable = Predicate::Runnable,
            done = Predicate::Done,
        )
    });
    let rows: Vec<(String, String, i64, Option<f64>)> = crate::db::query_as(SQL.as_str())
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

/// How long a scrape waits for the queue gauges' query.
const QUEUE_GAUGES_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The Prometheus text of this process: queue gauges refreshed from `pool` first (a database
/// hiccup only leaves them as they were), then the gauges of each named pool and the process'.
pub async fn render_metrics(
    pool: &sqlx::PgPool,
    pools: &[(&'static str, &sqlx::PgPool)],
) -> String {
    // A saturated pool must not hang the scrape that reports it: the queue gauges keep their
    // last values instead.
    match tokio::time::timeout(QUEUE_GAUGES_WAIT, record_queue_gauges(pool)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "queue gauges unavailable for this scrape"),
        Err(_) => tracing::warn!("queue gauges unavailable for this scrape: no connection in time"),
    }
    for (name, p) in pools {
        record_pool_gauges(name, p);
    }
    record_process_metrics();
    metrics().render()
}

/// How often [`PoolWatch`] looks at its pool.
const SATURATION_SAMPLE: std::time::Duration = std::time::Duration::from_millis(250);

/// Watches one pool for saturation: every connection open and in use, none idle, at every
/// look (four a second). A busy but healthy pool hands a released connection to the next
/// waiter or parks it idle often enough to break that run; a pool whose connections are all
/// held by stuck statements or long transactions does not, and every other request or job
/// then waits up to its acquire timeout. The run's length is exported as the gauge
/// `authsync_db_pool_saturated_seconds{pool}` (0 while not saturated, and at a run's first
/// look) and read by the
/// readiness checks.
#[derive(Clone)]
pub struct PoolWatch {
    since: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl std::fmt::Debug for PoolWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolWatch")
    }
}

impl PoolWatch {
    /// Starts watching `pool` (inside the runtime); the task ends when the last clone of the
    /// returned watch is dropped.
    pub fn spawn(name: &'static str, pool: sqlx::PgPool) -> Self {
        // The gauge exists from the start (a scrape before the first sample shows 0), in the
        // process' recorder even when the watch starts before anything else installed it.
        metrics();
        metrics::gauge!("authsync_db_pool_saturated_seconds", "pool" => name).set(0.0);
        let since = std::sync::Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
        let weak = std::sync::Arc::downgrade(&since);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SATURATION_SAMPLE);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(since) = weak.upgrade() else {
                    return;
                };
                let full = pool.size() >= pool.options().get_max_connections()
                    && pool.num_idle() == 0
                    && !pool.is_closed();
                let mut since = since.lock().expect("pool watch lock");
                // One full look is a moment, not a run (a worker starting its queues fills its
                // pool for an instant): the gauge counts from the run's first look once a
                // second look confirms it.
                let secs;
                (*since, secs) = match (*since, full) {
                    (_, false) => (None, 0.0),
                    (None, true) => (Some(std::time::Instant::now()), 0.0),
                    (Some(s), true) => (Some(s), s.elapsed().as_secs_f64()),
                };
                metrics::gauge!("authsync_db_pool_saturated_seconds", "pool" => name).set(secs);
            }
        });
        Self { since }
    }

    /// How long the pool has been saturated without a break (zero when it is not).
    pub fn saturated_for(&self) -> std::time::Duration {
        self.since
            .lock()
            .expect("pool watch lock")
            .map_or(std::time::Duration::ZERO, |s| s.elapsed())
    }
}

/// Readiness threshold: a pool saturated longer than this makes `/readyz` answer
/// `503 pool_saturated` (api and worker).
pub const POOL_SATURATED_AFTER: std::time::Duration = std::time::Duration::from_secs(10);
