//! `GET /metrics`: Prometheus text from the metrics recorder, with the queue gauges refreshed
//! from the database at scrape time.

use crate::startup::AppState;
use poem::{IntoResponse, Response};

pub async fn metrics(state: &AppState) -> Response {
    jobs::telemetry::render_metrics(&state.pool)
        .await
        .into_response()
        .with_content_type("text/plain; version=0.0.4")
        .into_response()
}
