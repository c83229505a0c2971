//! Trends for the console's charts: per time bucket of the last hour, day or week, the events
//! received, processed and failed, the jobs retried, and how long events took from receipt to
//! processed (median and 95th percentile, computed by Postgres). Auth as in `admin`.

use super::admin::db;
use super::rfc3339;
use crate::auth::Operator;
use crate::error::{ApiError, Code};
use crate::startup::AppState;
use jobs::store;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{param, ApiResponse, Object, OpenApi};
use std::collections::HashMap;

/// The windows: name, bucket length in seconds, number of buckets.
pub(crate) const WINDOWS: &[(&str, i32, i32)] =
    &[("1h", 60, 60), ("24h", 30 * 60, 48), ("7d", 6 * 3600, 28)];

#[derive(Object)]
pub struct StatsBucket {
    /// The bucket's start; buckets are contiguous and the last one holds now.
    at: String,
    /// Events received in the bucket.
    received: i64,
    /// Of those, processed by now.
    processed: i64,
    /// Of those, failed (a job failed for good) or rejected.
    failed: i64,
    /// Jobs whose latest run, ending in the bucket, was a retry.
    retried: i64,
    /// Receipt to processed, in milliseconds, over the bucket's processed events: the median
    /// and the 95th percentile (null without any).
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
}

#[derive(Object)]
pub struct Stats {
    /// `1h`, `24h` or `7d`.
    window: String,
    /// The length of each bucket.
    bucket_seconds: i32,
    /// Oldest first.
    buckets: Vec<StatsBucket>,
}

#[derive(ApiResponse)]
pub enum StatsResponse {
    #[oai(status = 200)]
    Ok(Json<Stats>),
}

#[derive(Default)]
pub struct StatsApi;

#[OpenApi(tag = "crate::openapi::Tag::Operator")]
impl StatsApi {
    /// Intake and processing over time
    ///
    /// `window=1h` (60 buckets of a minute), `24h` (default; 48 of 30 minutes) or `7d` (28 of
    /// 6 hours); another window is 400 `invalid_query`.
    #[oai(path = "/admin/api/stats", method = "get")]
    async fn stats(
        &self,
        _operator: Operator,
        state: Data<&AppState>,
        /// `1h`, `24h` or `7d`.
        window: param::Query<Option<String>>,
    ) -> Result<StatsResponse, ApiError> {
        stats(&state, window.0.as_deref()).await
    }
}

async fn stats(state: &AppState, window: Option<&str>) -> Result<StatsResponse, ApiError> {
    let wanted = window.unwrap_or("24h");
    let Some(&(name, step, count)) = WINDOWS.iter().find(|(n, ..)| *n == wanted) else {
        return Err(ApiError::BadRequest(
            Code::InvalidQuery,
            format!("window `{wanted}` is not one of 1h, 24h, 7d"),
        ));
    };
    let buckets = store::webhook_events::stats(&state.pool, step, count)
        .await
        .map_err(db)?;
    let since = buckets
        .first()
        .map(|b| b.at)
        .unwrap_or_else(chrono::Utc::now);
    // A job retried in the window was created at most a day before it (12 attempts, backoff
    // capped at 10 minutes); replays create new jobs.
    let created_after = since - chrono::Duration::days(1);
    let retries: HashMap<_, i64> =
        store::queue_jobs::retries(&state.pool, step, since, created_after)
            .await
            .map_err(db)?
            .into_iter()
            .collect();
    let buckets = buckets
        .into_iter()
        .map(|b| StatsBucket {
            at: rfc3339(&b.at),
            received: b.received,
            processed: b.processed,
            failed: b.failed,
            retried: retries.get(&b.at).copied().unwrap_or(0),
            p50_ms: b.p50_ms,
            p95_ms: b.p95_ms,
        })
        .collect();
    Ok(StatsResponse::Ok(Json(Stats {
        window: name.to_owned(),
        bucket_seconds: step,
        buckets,
    })))
}
