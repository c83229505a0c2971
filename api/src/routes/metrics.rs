//! `GET /metrics`: Prometheus text from the metrics recorder, with the queue gauges refreshed
//! from the database and the pool and process gauges read at scrape time; and the middleware
//! that counts and times every request by route template and status.

use crate::startup::AppState;
use poem::web::Data;
use poem::{Endpoint, IntoResponse, PathPattern, Request, Response, Result};
use poem_openapi::payload::PlainText;
use poem_openapi::{ApiResponse, OpenApi};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

#[derive(ApiResponse)]
pub enum MetricsResponse {
    /// Prometheus text exposition format.
    #[oai(status = 200, content_type = "text/plain; version=0.0.4")]
    Ok(PlainText<String>),
}

#[derive(Default)]
pub struct MetricsApi;

#[OpenApi]
impl MetricsApi {
    /// Prometheus metrics
    #[oai(path = "/metrics", method = "get", tag = "crate::openapi::Tag::Health")]
    async fn metrics(&self, state: Data<&AppState>) -> MetricsResponse {
        let pools = [("main", &state.pool), ("intake", state.intake.pool())];
        let text = jobs::telemetry::render_metrics(&state.pool, &pools).await;
        MetricsResponse::Ok(PlainText(text))
    }
}

/// The label of each route: poem-openapi registers `/v1/jobs/{id}` as `/v1/jobs/:param0`, so
/// the OpenAPI document's paths are matched by shape to name their parameters again.
#[derive(Clone, Default)]
pub struct RouteTemplates(Arc<HashMap<String, String>>);

impl RouteTemplates {
    /// From the `paths` of an OpenAPI document (JSON).
    pub fn from_spec(spec: &str) -> Self {
        let spec: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        let paths = spec["paths"].as_object().into_iter().flat_map(|p| p.keys());
        Self(Arc::new(paths.map(|t| (shape(t), t.to_owned())).collect()))
    }

    /// `unmatched` when no route matched (a bounded label, never the concrete path).
    fn label(&self, pattern: Option<&str>) -> String {
        match pattern {
            None | Some("") => "unmatched".to_owned(),
            Some(p) => self.0.get(&shape(p)).cloned().unwrap_or_else(|| {
                p.split('/')
                    .map(|seg| match seg.strip_prefix(':') {
                        Some(name) => format!("{{{name}}}"),
                        None => seg.to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join("/")
            }),
        }
    }
}

/// A path with every parameter segment (`:x` or `{x}`) replaced by `{}`.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg.starts_with(':') || seg.starts_with('{') {
            true => "{}",
            false => seg,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Records `authsync_http_requests_total` and `authsync_http_request_duration_seconds`.
pub async fn record_request<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    templates: RouteTemplates,
) -> Result<Response> {
    let started = Instant::now();
    let method = req.method().clone();
    let resp = match ep.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    let route = templates.label(resp.data::<PathPattern>().map(|p| &*p.0));
    jobs::telemetry::record_http_request(
        method.as_str(),
        &route,
        resp.status().as_u16(),
        started.elapsed(),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::RouteTemplates;

    #[test]
    fn patterns_are_labelled_with_the_documented_templates() {
        let t = RouteTemplates::from_spec(
            r#"{"paths": {"/v1/jobs/{id}": {}, "/admin/api/events/{svix_id}/replay": {}}}"#,
        );
        for (pattern, want) in [
            (Some("/v1/jobs/:param0"), "/v1/jobs/{id}"),
            (
                Some("/admin/api/events/:param0/replay"),
                "/admin/api/events/{svix_id}/replay",
            ),
            (Some("/healthz"), "/healthz"),
            (Some("/undocumented/:name"), "/undocumented/{name}"),
            (Some(""), "unmatched"),
            (None, "unmatched"),
        ] {
            assert_eq!(t.label(pattern), want, "{pattern:?}");
        }
    }
}
