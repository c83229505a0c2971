//! What `bench wait-drained` reads besides the jobs table: each worker process' own count of
//! the jobs it ran and of its pool's connections (from its `/metrics`, `WORKER_METRICS_PORT`),
//! and how many server backends the benchmark database has. `apalis.jobs.lock_by` cannot say
//! which process ran a job: a job's result clears it.

use anyhow::{Context, Result};
use sqlx::PgPool;

/// `--metrics-ports 4101,4102`: the ports of the workers being measured.
pub fn ports(list: Option<&str>) -> Result<Vec<u16>> {
    list.unwrap_or("")
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .parse()
                .with_context(|| format!("bad metrics port `{p}`"))
        })
        .collect()
}

/// Sum of the samples of `metric` (label filter `with`, e.g. `outcome="succeeded"`) in one
/// worker's Prometheus text.
fn sum(text: &str, metric: &str, with: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with('{'))
        .filter(|l| l.contains(with))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One worker's (jobs succeeded, jobs not succeeded, open pool connections).
pub async fn worker(port: u16) -> Result<(u64, u64, u64)> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .with_context(|| format!("worker metrics on port {port}"))?
        .text()
        .await?;
    let all = sum(&text, "authsync_jobs_total", "");
    let ok = sum(&text, "authsync_jobs_total", "outcome=\"succeeded\"");
    let conns = sum(&text, "authsync_db_pool_connections", "");
    Ok((ok as u64, (all - ok) as u64, conns as u64))
}

/// Backends connected to this database now, other than this one.
pub async fn backends(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_labelled_samples_of_one_metric() {
        let text = "# TYPE authsync_jobs_total counter\n\
            authsync_jobs_total{queue=\"a\",outcome=\"succeeded\"} 7\n\
            authsync_jobs_total{queue=\"b\",outcome=\"succeeded\"} 3\n\
            authsync_jobs_total{queue=\"b\",outcome=\"retrying\"} 1\n\
            authsync_jobs_total_other{outcome=\"succeeded\"} 100\n";
        assert_eq!(super::sum(text, "authsync_jobs_total", ""), 11.0);
        assert_eq!(
            super::sum(text, "authsync_jobs_total", "outcome=\"succeeded\""),
            10.0
        );
    }
}
