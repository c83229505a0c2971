//! `GET /metrics`: Prometheus text from the metrics recorder, with the queue gauges refreshed
//! from the database and the pool and process gauges read at scrape time; and the middleware
//! that counts and times every request by route template and status.

use crate::startup::AppState;
use poem::{Endpoint, IntoResponse, PathPattern, Request, Response, Result};
use std::sync::Arc;
use std::time::Instant;

pub async fn metrics(state: &AppState) -> Response {
    let pools = [("main", &state.pool), ("intake", state.intake.pool())];
    jobs::telemetry::render_metrics(&state.pool, &pools)
        .await
        .into_response()
        .with_content_type("text/plain; version=0.0.4")
        .into_response()
}

/// Records `authsync_http_requests_total` and `authsync_http_request_duration_seconds`.
pub async fn record_request<E: Endpoint>(ep: Arc<E>, req: Request) -> Result<Response> {
    let started = Instant::now();
    let method = req.method().clone();
    let resp = match ep.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    let route = resp
        .data::<PathPattern>()
        .map_or_else(|| "unmatched".to_owned(), |p| template(&p.0));
    jobs::telemetry::record_http_request(
        method.as_str(),
        &route,
        resp.status().as_u16(),
        started.elapsed(),
    );
    Ok(resp)
}

/// poem's pattern (`/v1/jobs/:id`) in the OpenAPI spelling (`/v1/jobs/{id}`).
fn template(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| match seg.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => seg.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn patterns_become_openapi_templates() {
        for (pattern, want) in [
            ("/v1/jobs/:id", "/v1/jobs/{id}"),
            ("/admin/api/events/:svix_id/replay", "/admin/api/events/{svix_id}/replay"),
            ("/healthz", "/healthz"),
            ("/v1/jobs/{id}", "/v1/jobs/{id}"),
        ] {
            assert_eq!(super::template(pattern), want);
        }
    }
}
